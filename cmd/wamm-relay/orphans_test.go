package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// removedTargetStore is seedStore with "analytics" removed from the config
// and one more event (msg:4) that only analytics had.
func removedTargetStore(t *testing.T) (seededStore, int64) {
	t.Helper()
	s := seedStore(t)
	st := openTestStore(t, s.path)
	ev := event.Event{Key: event.MsgKey("4"), Kind: event.KindMsg, Source: event.SourceWebhook, MsgID: "4",
		State: "received", Body: []byte(`{}`), ReceivedAt: time.Now()}
	require.NoError(t, st.Ingest(context.Background(), ev, []string{"analytics"}))
	ds, err := st.List(context.Background(), store.ListFilter{Target: "analytics", Limit: 1})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	s.config = writeFile(t, "relay.toml", `
[store]
driver = "sqlite"
dsn = "`+s.path+`"
[[targets]]
name = "crm"
url = "http://127.0.0.1:9/crm"
`)
	return s, ds[0].ID
}

func deliveryOf(t *testing.T, path string, id int64) event.Delivery {
	t.Helper()
	st := openTestStore(t, path)
	defer st.Close()
	ds, err := st.List(context.Background(), store.ListFilter{Limit: 1000})
	require.NoError(t, err)
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	require.FailNow(t, "no delivery", "id %d", id)
	return event.Delivery{}
}

func TestDeliveriesPurge(t *testing.T) {
	s, msg4 := removedTargetStore(t)

	// Without --yes: how many, and nothing changes.
	var stdout, stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"deliveries", "purge", "-config", s.config, "--target", "analytics"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "would mark 3 pending deliveries")
	require.Equal(t, event.StatusPending, deliveryOf(t, s.path, msg4).Status)

	out := cli(t, "deliveries", "purge", "-config", s.config, "--target", "analytics", "--yes")
	require.Contains(t, out, "marked 3 pending deliveries of analytics dead")
	for _, id := range []int64{msg4, s.ids["analytics msg:2"], s.ids["analytics msg:3"]} {
		d := deliveryOf(t, s.path, id)
		require.Equal(t, event.StatusDead, d.Status)
		require.Equal(t, store.PurgedError, d.LastError)
	}
	require.Equal(t, "http_503", deliveryOf(t, s.path, s.ids["analytics msg:1"]).LastError, "already dead: untouched")
	require.Equal(t, event.StatusPending, deliveryOf(t, s.path, s.ids["crm msg:3"]).Status, "other targets untouched")
}

func TestDeliveriesReassign(t *testing.T) {
	s, msg4 := removedTargetStore(t)
	out := cli(t, "deliveries", "reassign", "-config", s.config, "--from", "analytics", "--to", "crm")
	require.Contains(t, out, "moved 1 pending deliveries from analytics to crm")
	require.Contains(t, out, "2 still pending on analytics")
	d := deliveryOf(t, s.path, msg4)
	require.Equal(t, "crm", d.Target)
	require.Equal(t, event.StatusPending, d.Status)
	require.Equal(t, "analytics", deliveryOf(t, s.path, s.ids["analytics msg:3"]).Target, "crm has msg:3 already")
}

func TestOrphanVerbsRefuse(t *testing.T) {
	s, msg4 := removedTargetStore(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"purge a configured target", []string{"purge", "--target", "crm", "--yes"}, "still configured"},
		{"purge without a target", []string{"purge", "--yes"}, "--target is required"},
		{"reassign from a configured target", []string{"reassign", "--from", "crm", "--to", "crm2"}, "not a configured target"},
		{"reassign to an unknown target", []string{"reassign", "--from", "analytics", "--to", "nope"}, "not a configured target"},
		{"reassign to itself", []string{"reassign", "--from", "crm", "--to", "crm"}, "two different targets"},
		{"reassign a configured source", []string{"reassign", "--from", "crm", "--to", "crm", "--force"}, "two different targets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"deliveries", tc.args[0], "-config", s.config}, tc.args[1:]...)
			require.Equal(t, 2, run(args, &stdout, &stderr), stderr.String())
			require.Contains(t, stderr.String(), tc.want)
		})
	}
	require.Equal(t, event.StatusPending, deliveryOf(t, s.path, msg4).Status)
	require.Equal(t, event.StatusPending, deliveryOf(t, s.path, s.ids["crm msg:3"]).Status)

	// --force lets an operator purge a target that is still configured.
	out := cli(t, "deliveries", "purge", "-config", s.config, "--target", "crm", "--yes", "--force")
	require.Contains(t, out, "marked 1 pending deliveries of crm dead")
}
