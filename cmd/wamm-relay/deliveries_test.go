package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/sqlite"
)

// seededStore is a SQLite store file with deliveries in every status:
//
//	crm:       msg:1 delivered, msg:2 dead (http_500), msg:3 pending
//	analytics: msg:1 dead (http_503), msg:2 and msg:3 pending
type seededStore struct {
	path   string
	config string
	ids    map[string]int64 // "target msg:N" -> delivery id
}

const cliOwner = "cli-test"

func openTestStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: path, Logger: log})
	require.NoError(t, err)
	return st
}

func seedStore(t *testing.T) seededStore {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	st := openTestStore(t, path)
	defer func() { require.NoError(t, st.Close()) }()

	received := time.Now().Add(-time.Minute)
	for i := 1; i <= 3; i++ {
		body := fmt.Sprintf(`{"tip":"msg","msg_data":{"msg_id":%d,"state":"received"}}`, i)
		ev := event.Event{
			Key: event.MsgKey(fmt.Sprint(i)), Kind: event.KindMsg, Source: event.SourceWebhook,
			MsgID: fmt.Sprint(i), State: "received", Body: []byte(body), ReceivedAt: received.Add(time.Duration(i) * time.Second),
		}
		require.NoError(t, st.Ingest(ctx, ev, []string{"crm", "analytics"}))
	}

	s := seededStore{path: path, ids: map[string]int64{}}
	claim := func(target string, limit int) []event.Delivery {
		ds, err := st.Claim(ctx, store.ClaimRequest{Target: target, Owner: cliOwner, Limit: limit, Lease: time.Minute, Now: time.Now()})
		require.NoError(t, err)
		for _, d := range ds {
			s.ids[target+" "+string(d.EventKey)] = d.ID
		}
		return ds
	}
	record := func(d event.Delivery, res event.Result, code int) {
		out := event.Outcome{Result: res, StatusCode: code, At: time.Now()}
		if res != event.ResultDelivered {
			out.Error = fmt.Sprintf("http_%d", code)
		}
		require.NoError(t, st.Record(ctx, d.ID, cliOwner, out))
	}
	crm := claim("crm", 3)
	require.Len(t, crm, 3)
	record(crm[0], event.ResultDelivered, 200)
	record(crm[1], event.ResultDead, 500)
	require.NoError(t, st.Release(ctx, cliOwner, []int64{crm[2].ID}))
	ana := claim("analytics", 1)
	require.Len(t, ana, 1)
	record(ana[0], event.ResultDead, 503)
	// The remaining analytics deliveries were never claimed; learn their ids.
	all, err := st.List(ctx, store.ListFilter{Target: "analytics"})
	require.NoError(t, err)
	for _, d := range all {
		s.ids["analytics "+string(d.EventKey)] = d.ID
	}
	require.Len(t, s.ids, 6)

	s.config = writeFile(t, "relay.toml", `
[store]
driver = "sqlite"
dsn = "`+path+`"
[log]
level = "debug"
[[targets]]
name = "crm"
url = "http://127.0.0.1:9/crm"
[[targets]]
name = "analytics"
url = "http://127.0.0.1:9/analytics"
`)
	return s
}

// cli runs one command and requires exit code 0.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	require.Equal(t, 0, code, "wamm-relay %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), out.String(), errOut.String())
	require.Empty(t, errOut.String(), "a successful CLI verb is quiet on stderr")
	return out.String()
}

// tableRow is one parsed line of `deliveries list`.
type tableRow struct {
	id                                 int64
	target, status, attempts, key, src string
	created, lastError                 string
}

func parseTable(t *testing.T, out string) []tableRow {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.NotEmpty(t, lines)
	require.Equal(t, []string{"ID", "TARGET", "STATUS", "ATTEMPTS", "EVENT", "SOURCE", "CREATED", "LAST", "ERROR"},
		strings.Fields(lines[0]), "header")
	var rows []tableRow
	for _, l := range lines[1:] {
		if l == "(no deliveries)" {
			continue
		}
		f := strings.Fields(l)
		require.Len(t, f, 8, "row %q", l)
		var r tableRow
		_, err := fmt.Sscan(f[0], &r.id)
		require.NoError(t, err, l)
		r.target, r.status, r.attempts, r.key, r.src, r.created, r.lastError = f[1], f[2], f[3], f[4], f[5], f[6], f[7]
		_, err = time.Parse(time.RFC3339, r.created)
		require.NoError(t, err, "created column of %q", l)
		rows = append(rows, r)
	}
	return rows
}

func rowSummary(rows []tableRow) []string {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, strings.Join([]string{r.target, r.key, r.status, r.attempts, r.lastError}, " "))
	}
	return out
}

func TestDeliveriesList(t *testing.T) {
	s := seedStore(t)
	tests := []struct {
		name string
		args []string
		want []string // target key status attempts last_error, newest first
	}{
		{"everything", nil, []string{
			"analytics msg:3 pending 0 -", "crm msg:3 pending 0 -",
			"analytics msg:2 pending 0 -", "crm msg:2 dead 1 http_500",
			"analytics msg:1 dead 1 http_503", "crm msg:1 delivered 1 -",
		}},
		{"dead", []string{"--status", "dead"}, []string{"crm msg:2 dead 1 http_500", "analytics msg:1 dead 1 http_503"}},
		{"delivered", []string{"--status=delivered"}, []string{"crm msg:1 delivered 1 -"}},
		{"one target", []string{"--target", "crm"}, []string{"crm msg:3 pending 0 -", "crm msg:2 dead 1 http_500", "crm msg:1 delivered 1 -"}},
		{"target and status", []string{"--target", "analytics", "--status", "pending"}, []string{"analytics msg:3 pending 0 -", "analytics msg:2 pending 0 -"}},
		{"limit", []string{"--limit", "2"}, []string{"analytics msg:3 pending 0 -", "crm msg:3 pending 0 -"}},
		{"nothing matches", []string{"--target", "nope"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := cli(t, append([]string{"deliveries", "list", "-config", s.config}, tt.args...)...)
			rows := parseTable(t, out)
			require.Equal(t, tt.want, rowSummary(rows), out)
			for _, r := range rows {
				require.Equal(t, s.ids[r.target+" "+r.key], r.id, "id of %s %s", r.target, r.key)
				require.Equal(t, "webhook", r.src)
			}
			if len(tt.want) == 0 {
				require.Contains(t, out, "(no deliveries)")
			}
		})
	}
}

func TestDeliveriesListJSON(t *testing.T) {
	s := seedStore(t)
	out := cli(t, "deliveries", "list", "--json", "--status", "dead", "-config", s.config)
	var got struct {
		Deliveries []map[string]any `json:"deliveries"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Len(t, got.Deliveries, 2)

	crm := got.Deliveries[0]
	require.Equal(t, float64(s.ids["crm msg:2"]), crm["id"])
	require.Equal(t, "crm", crm["target"])
	require.Equal(t, "msg:2", crm["event_key"])
	require.Equal(t, "msg", crm["kind"])
	require.Equal(t, "webhook", crm["source"])
	require.Equal(t, "dead", crm["status"])
	require.Equal(t, float64(1), crm["attempts"])
	require.Equal(t, "http_500", crm["last_error"])
	require.Equal(t, float64(500), crm["last_status_code"])
	require.NotContains(t, crm, "next_attempt_at", "only a pending delivery has a next attempt")
	require.NotContains(t, crm, "body", "bodies are not listed")
	for _, f := range []string{"created_at", "updated_at"} {
		_, err := time.Parse(time.RFC3339Nano, crm[f].(string))
		require.NoError(t, err, f)
	}
	require.Equal(t, "analytics", got.Deliveries[1]["target"])
	require.Equal(t, "http_503", got.Deliveries[1]["last_error"])

	out = cli(t, "deliveries", "list", "--json", "--target", "crm", "--status", "pending", "-config", s.config)
	got.Deliveries = nil
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Len(t, got.Deliveries, 1)
	require.Contains(t, got.Deliveries[0], "next_attempt_at")

	out = cli(t, "deliveries", "list", "--json", "--target", "nope", "-config", s.config)
	require.JSONEq(t, `{"deliveries":[]}`, out)
}

// statuses reads every delivery's status and attempts from the store file.
func statuses(t *testing.T, path string) map[string]string {
	t.Helper()
	st := openTestStore(t, path)
	defer func() { require.NoError(t, st.Close()) }()
	ds, err := st.List(context.Background(), store.ListFilter{})
	require.NoError(t, err)
	out := map[string]string{}
	for _, d := range ds {
		out[d.Target+" "+string(d.EventKey)] = fmt.Sprintf("%s/%d", d.Status, d.Attempts)
	}
	return out
}

func TestDeliveriesReplay(t *testing.T) {
	s := seedStore(t)
	before := map[string]string{
		"crm msg:1": "delivered/1", "crm msg:2": "dead/1", "crm msg:3": "pending/0",
		"analytics msg:1": "dead/1", "analytics msg:2": "pending/0", "analytics msg:3": "pending/0",
	}
	require.Equal(t, before, statuses(t, s.path))

	// By target and status: only that target's dead deliveries move.
	out := cli(t, "deliveries", "replay", "--target", "analytics", "--status", "dead", "-config", s.config)
	require.Contains(t, out, "replayed 1 deliveries")
	want := withStatus(before, "analytics msg:1", "pending/0")
	require.Equal(t, want, statuses(t, s.path))

	// Nothing dead is left at analytics.
	out = cli(t, "deliveries", "replay", "--target", "analytics", "--status", "dead", "-config", s.config)
	require.Contains(t, out, "replayed 0 deliveries")

	// By id: the dead one moves, a pending one is left alone.
	out = cli(t, "deliveries", "replay", "--id", fmt.Sprint(s.ids["crm msg:2"]), "--id", fmt.Sprint(s.ids["crm msg:3"]), "-config", s.config)
	require.Contains(t, out, "replayed 1 deliveries")
	want = withStatus(want, "crm msg:2", "pending/0")
	require.Equal(t, want, statuses(t, s.path))

	// A delivered one can be sent again on purpose (comma-separated ids too).
	out = cli(t, "deliveries", "replay", "--id", fmt.Sprintf("%d,%d", s.ids["crm msg:1"], s.ids["analytics msg:2"]), "-config", s.config)
	require.Contains(t, out, "replayed 1 deliveries")
	want = withStatus(want, "crm msg:1", "pending/0")
	require.Equal(t, want, statuses(t, s.path))

	// The replayed deliveries are due now: a relay claims them at once.
	st := openTestStore(t, s.path)
	defer func() { require.NoError(t, st.Close()) }()
	ds, err := st.Claim(context.Background(), store.ClaimRequest{Target: "crm", Owner: "relay", Limit: 10, Lease: time.Minute, Now: time.Now()})
	require.NoError(t, err)
	require.Len(t, ds, 3)

	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"pending is not replayable", []string{"--target", "crm", "--status", "pending"}, "--status dead"},
		{"ids and target are exclusive", []string{"--id", "1", "--target", "crm", "--status", "dead"}, "not both"},
		{"bad id", []string{"--id", "abc"}, "invalid delivery id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append([]string{"deliveries", "replay", "-config", s.config}, tc.args...), &out, &errOut)
			require.Equal(t, 2, code, errOut.String())
			require.Contains(t, errOut.String(), tc.wantErr)
		})
	}
}

// withStatus returns a copy of m with key set to value.
func withStatus(m map[string]string, key, value string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	out[key] = value
	return out
}
