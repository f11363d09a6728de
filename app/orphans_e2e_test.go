package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/sqlite"
)

func TestRemovedTargetsPendingDeliveriesAreReported(t *testing.T) {
	sink := testutil.NewTarget(t)
	cfg := testConfig(t, target("kept", sink.URL))
	cfg.Server.AdminToken = opsAdminToken

	// A store left by a relay that also delivered to "gone" and "old".
	log := logrus.New()
	log.SetOutput(&strings.Builder{})
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: cfg.Store.DSN, Logger: log})
	require.NoError(t, err)
	for i, targets := range [][]string{{"gone", "old"}, {"gone"}, {"gone"}} {
		ev := event.Event{Key: event.Key("raw:" + string(rune('a'+i))), Kind: event.KindRaw, Source: event.SourceWebhook,
			Body: []byte(`{}`), ReceivedAt: time.Now()}
		require.NoError(t, st.Ingest(context.Background(), ev, targets))
	}
	n, err := st.PurgePending(context.Background(), store.PurgeRequest{Target: "old"})
	require.NoError(t, err)
	require.Equal(t, 1, n, "old has only a dead delivery: not an orphan")
	require.NoError(t, st.Close())

	r := startRelay(t, cfg)

	// One warning line for gone with its count, none for old or kept.
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		if strings.Contains(m["msg"].(string), "not configured but has pending deliveries") {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 1, r.logs.String())
	require.Equal(t, "gone", lines[0]["target"])
	require.Equal(t, 3.0, lines[0]["pending"])
	require.Equal(t, "warning", lines[0]["level"])

	m := scrape(t, r.base)
	require.Equal(t, 3.0, gauge(t, m, "wamm_relay_orphaned_pending_deliveries", "target", "gone"))
	require.Zero(t, gauge(t, m, "wamm_relay_orphaned_pending_deliveries", "target", "old"), "old has only dead deliveries")
	require.Len(t, m["wamm_relay_orphaned_pending_deliveries"].GetMetric(), 2, "kept is configured: never an orphan")

	code, body := r.admin(t, http.MethodGet, "/api/v1/targets", opsAdminToken, "")
	require.Equal(t, http.StatusOK, code)
	var out struct {
		Targets []adminTarget `json:"targets"`
	}
	require.NoError(t, json.Unmarshal(body, &out), string(body))
	byName := map[string]adminTarget{}
	for _, tg := range out.Targets {
		byName[tg.Name] = tg
	}
	require.False(t, byName["gone"].Configured)
	require.Equal(t, 3, byName["gone"].Pending)
	require.True(t, byName["kept"].Configured)

	// Reassigned to the configured target, they are delivered and the gauge drops.
	moved, err := r.app.Store().ReassignPending(context.Background(), store.ReassignRequest{From: "gone", To: "kept"})
	require.NoError(t, err)
	require.Equal(t, 3, moved)
	sink.WaitDelivered(t, waitLong, "raw:a", "raw:b", "raw:c")
	// Nothing of gone is left pending or dead: its series goes away.
	require.Eventually(t, func() bool {
		for _, s := range scrape(t, r.base)["wamm_relay_orphaned_pending_deliveries"].GetMetric() {
			if s.GetLabel()[0].GetValue() == "gone" {
				return false
			}
		}
		return true
	}, waitLong, 10*time.Millisecond)
}
