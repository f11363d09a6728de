package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store"
)

const (
	opsAdminToken = "admin-token-0123456789abcdef"
	opsSecret     = "hook-secret-0123456789"
)

// scrape fetches /metrics and parses the Prometheus text format.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// series returns the one series of family name whose labels are exactly
// labels (given as name, value pairs), failing the test otherwise.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "metric %s is not exposed", name)
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	var found []*dto.Metric
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) == len(want) && fmt.Sprint(got) == fmt.Sprint(want) {
			found = append(found, m)
		}
	}
	require.Len(t, found, 1, "series %s%v", name, want)
	return found[0]
}

func counter(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	require.Equal(t, dto.MetricType_COUNTER, fams[name].GetType(), name)
	return series(t, fams, name, labels...).GetCounter().GetValue()
}

func gauge(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	require.Equal(t, dto.MetricType_GAUGE, fams[name].GetType(), name)
	return series(t, fams, name, labels...).GetGauge().GetValue()
}

func histogramCount(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) uint64 {
	t.Helper()
	require.Equal(t, dto.MetricType_HISTOGRAM, fams[name].GetType(), name)
	return series(t, fams, name, labels...).GetHistogram().GetSampleCount()
}

// adminDelivery is the admin API's JSON shape of a delivery (the fields the
// test reads).
type adminDelivery struct {
	ID        int64      `json:"id"`
	Target    string     `json:"target"`
	EventKey  string     `json:"event_key"`
	Status    string     `json:"status"`
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error"`
	CreatedAt *time.Time `json:"created_at"`
}

type adminList struct {
	Deliveries   []adminDelivery `json:"deliveries"`
	NextBeforeID int64           `json:"next_before_id"`
}

type adminTarget struct {
	Name        string     `json:"name"`
	Configured  bool       `json:"configured"`
	Pending     int        `json:"pending"`
	Delivered   int        `json:"delivered"`
	Dead        int        `json:"dead"`
	LastError   string     `json:"last_error"`
	LastErrorAt *time.Time `json:"last_error_at"`
}

// admin sends one admin API request with the given bearer token ("" sends
// no Authorization header) and returns the status and body.
func (r *relayUnderTest) admin(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func (r *relayUnderTest) listDeliveries(t *testing.T, query url.Values) adminList {
	t.Helper()
	code, body := r.admin(t, http.MethodGet, "/api/v1/deliveries?"+query.Encode(), opsAdminToken, "")
	require.Equal(t, http.StatusOK, code, string(body))
	var l adminList
	require.NoError(t, json.Unmarshal(body, &l), string(body))
	return l
}

func (r *relayUnderTest) replay(t *testing.T, body string) int {
	t.Helper()
	code, resp := r.admin(t, http.MethodPost, "/api/v1/deliveries/replay", opsAdminToken, body)
	require.Equal(t, http.StatusOK, code, string(resp))
	var out struct {
		Replayed int `json:"replayed"`
	}
	require.NoError(t, json.Unmarshal(resp, &out), string(resp))
	return out.Replayed
}

func (r *relayUnderTest) targetStats(t *testing.T) map[string]adminTarget {
	t.Helper()
	code, body := r.admin(t, http.MethodGet, "/api/v1/targets", opsAdminToken, "")
	require.Equal(t, http.StatusOK, code, string(body))
	var out struct {
		Targets []adminTarget `json:"targets"`
	}
	require.NoError(t, json.Unmarshal(body, &out), string(body))
	byName := map[string]adminTarget{}
	var names []string
	for _, tg := range out.Targets {
		byName[tg.Name] = tg
		names = append(names, tg.Name)
	}
	require.Equal(t, []string{"good", "bad"}, names, "configured targets, in configured order")
	return byName
}

func ids(ds []adminDelivery) []int64 {
	out := make([]int64, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// waitStatus waits until the store holds exactly want deliveries of target
// in status.
func waitStatus(t *testing.T, r *relayUnderTest, target string, status event.Status, want int) {
	t.Helper()
	require.Eventually(t, func() bool {
		ds, err := r.app.Store().List(context.Background(), store.ListFilter{Target: target, Status: status, Limit: 1000})
		return err == nil && len(ds) == want
	}, waitLong, 5*time.Millisecond, "want %d %s deliveries to %s", want, status, target)
}

// TestOperationsEndToEnd drives a scripted mix of webhooks through a real
// relay, then checks every operational surface against exact numbers: the
// /metrics counters and gauges, the admin list with filters and paging, the
// target stats, and replay (by target and status, and by ids) after the
// failing target recovers.
func TestOperationsEndToEnd(t *testing.T) {
	const (
		failMode = iota
		gatedMode
	)
	var mode atomic.Int32 // failMode: 500; gatedMode: 200 once gate is closed
	gate := make(chan struct{})
	bad := testutil.NewTarget(t)
	bad.Respond(func(r *http.Request, _ []byte) int {
		if mode.Load() == failMode {
			return http.StatusInternalServerError
		}
		select {
		case <-gate:
		case <-r.Context().Done():
		}
		return http.StatusOK
	})
	good := testutil.NewTarget(t)
	badCfg := target("bad", bad.URL)
	badCfg.MaxAttempts = 2
	cfg := testConfig(t, target("good", good.URL), badCfg)
	cfg.Server.AdminToken = opsAdminToken
	cfg.Server.WebhookSecret = opsSecret
	cfg.Server.MaxBodyBytes = 2048
	r := startRelay(t, cfg)
	hook := "/webhook/" + opsSecret

	// Before any traffic every fixed series is already exported at zero, so
	// rate() and alerts work from the first scrape.
	m := scrape(t, r.base)
	for _, s := range []struct {
		name   string
		labels []string
	}{
		{"wamm_relay_webhooks_received_total", []string{"outcome", "accepted", "reason", ""}},
		{"wamm_relay_webhooks_received_total", []string{"outcome", "duplicate", "reason", ""}},
		{"wamm_relay_webhooks_received_total", []string{"outcome", "rejected", "reason", "unauthorized"}},
		{"wamm_relay_events_enqueued_total", []string{"source", "webhook"}},
		{"wamm_relay_events_enqueued_total", []string{"source", "reconcile"}},
		{"wamm_relay_dedup_lru_lookups_total", []string{"result", "hit"}},
		{"wamm_relay_dedup_lru_lookups_total", []string{"result", "miss"}},
		{"wamm_relay_deliveries_total", []string{"target", "bad", "outcome", "delivered"}},
		{"wamm_relay_deliveries_total", []string{"target", "bad", "outcome", "retried"}},
		{"wamm_relay_deliveries_total", []string{"target", "bad", "outcome", "dead"}},
	} {
		require.Zero(t, counter(t, m, s.name, s.labels...), "%s%v", s.name, s.labels)
	}
	require.Zero(t, gauge(t, m, "wamm_relay_deliveries_pending", "target", "good"))
	require.Zero(t, gauge(t, m, "wamm_relay_deliveries_dead", "target", "bad"))
	require.Zero(t, histogramCount(t, m, "wamm_relay_delivery_latency_seconds", "target", "good"))

	// N=5 accepted, M=3 duplicates, K=5 rejected.
	const accepted = 5
	var keys []string
	for i := 1; i <= accepted; i++ {
		code, resp := r.post(t, hook, msgBody(i, "received"))
		require.Equal(t, http.StatusOK, code, resp)
		require.JSONEq(t, `{"ok":true,"duplicate":false}`, resp)
		keys = append(keys, fmt.Sprintf("msg:%d", i))
	}
	for _, body := range []string{msgBody(1, "received"), msgBody(1, "received"), msgBody("2", "received")} {
		code, resp := r.post(t, hook, body)
		require.Equal(t, http.StatusOK, code, resp)
		require.JSONEq(t, `{"ok":true,"duplicate":true}`, resp)
	}
	rejections := []struct {
		name, path, body string
		want             int
	}{
		{"malformed JSON", hook, `{"tip":"msg",`, http.StatusBadRequest},
		{"JSON array", hook, `[1,2]`, http.StatusBadRequest},
		{"no secret", "/webhook", msgBody(6, "received"), http.StatusUnauthorized},
		{"wrong secret", "/webhook/not-the-secret", msgBody(6, "received"), http.StatusUnauthorized},
		{"too large", hook, `{"tip":"raw","pad":"` + strings.Repeat("x", 4096) + `"}`, http.StatusRequestEntityTooLarge},
	}
	for _, rj := range rejections {
		code, resp := r.post(t, rj.path, rj.body)
		require.Equal(t, rj.want, code, "%s: %s", rj.name, resp)
	}

	// good gets everything at once; bad fails twice per delivery and gives up.
	good.WaitDelivered(t, waitLong, keys...)
	waitStatus(t, r, "good", event.StatusDelivered, accepted)
	waitStatus(t, r, "bad", event.StatusDead, accepted)
	require.Len(t, bad.Requests(), 2*accepted, "max_attempts=2: two attempts per delivery, no more")

	m = scrape(t, r.base)
	const recv = "wamm_relay_webhooks_received_total"
	require.Equal(t, 5.0, counter(t, m, recv, "outcome", "accepted", "reason", ""))
	require.Equal(t, 3.0, counter(t, m, recv, "outcome", "duplicate", "reason", ""))
	for reason, want := range map[string]float64{
		"bad_json": 1, "not_object": 1, "unauthorized": 2, "too_large": 1,
		"store_unavailable": 0, "overloaded": 0, "read_error": 0,
	} {
		require.Equal(t, want, counter(t, m, recv, "outcome", "rejected", "reason", reason), reason)
	}
	require.Len(t, m[recv].GetMetric(), 9, "accepted, duplicate and seven rejection reasons")
	require.Equal(t, 5.0, counter(t, m, "wamm_relay_events_enqueued_total", "source", "webhook"))
	require.Equal(t, 0.0, counter(t, m, "wamm_relay_events_enqueued_total", "source", "reconcile"))
	require.Equal(t, 5.0, counter(t, m, "wamm_relay_dedup_lru_lookups_total", "result", "miss"))
	require.Equal(t, 3.0, counter(t, m, "wamm_relay_dedup_lru_lookups_total", "result", "hit"))

	const dl = "wamm_relay_deliveries_total"
	require.Equal(t, 5.0, counter(t, m, dl, "target", "good", "outcome", "delivered"))
	require.Equal(t, 0.0, counter(t, m, dl, "target", "good", "outcome", "retried"))
	require.Equal(t, 0.0, counter(t, m, dl, "target", "good", "outcome", "dead"))
	require.Equal(t, 0.0, counter(t, m, dl, "target", "bad", "outcome", "delivered"))
	require.Equal(t, 5.0, counter(t, m, dl, "target", "bad", "outcome", "retried"))
	require.Equal(t, 5.0, counter(t, m, dl, "target", "bad", "outcome", "dead"))
	require.Equal(t, uint64(5), histogramCount(t, m, "wamm_relay_delivery_latency_seconds", "target", "good"))
	require.Equal(t, uint64(0), histogramCount(t, m, "wamm_relay_delivery_latency_seconds", "target", "bad"))
	require.Equal(t, uint64(5), histogramCount(t, m, "wamm_relay_delivery_request_duration_seconds", "target", "good"))
	require.Equal(t, uint64(10), histogramCount(t, m, "wamm_relay_delivery_request_duration_seconds", "target", "bad"))
	require.Equal(t, 5.0, counter(t, m, "wamm_relay_delivery_attempts_total", "target", "good", "code", "http_200"))
	require.Equal(t, 10.0, counter(t, m, "wamm_relay_delivery_attempts_total", "target", "bad", "code", "http_500"))
	require.Equal(t, 0.0, gauge(t, m, "wamm_relay_deliveries_in_flight", "target", "bad"))
	require.Equal(t, uint64(8), histogramCount(t, m, "wamm_relay_ingest_duration_seconds"),
		"every parsed webhook (accepted or duplicate) is timed")
	for _, tg := range []string{"good", "bad"} {
		require.Equal(t, 0.0, gauge(t, m, "wamm_relay_deliveries_pending", "target", tg), tg)
		require.Equal(t, 0.0, gauge(t, m, "wamm_relay_oldest_pending_age_seconds", "target", tg), tg)
	}
	require.Equal(t, 0.0, gauge(t, m, "wamm_relay_deliveries_dead", "target", "good"))
	require.Equal(t, 5.0, gauge(t, m, "wamm_relay_deliveries_dead", "target", "bad"))
	require.Equal(t, 1.0, gauge(t, m, "wamm_relay_store_up"))

	t.Run("admin API requires the bearer token", func(t *testing.T) {
		for _, tc := range []struct{ name, method, path, token, body string }{
			{"list without a token", http.MethodGet, "/api/v1/deliveries", "", ""},
			{"list with a wrong token", http.MethodGet, "/api/v1/deliveries", "wrong-token-0123456789abcdef", ""},
			{"targets without a token", http.MethodGet, "/api/v1/targets", "", ""},
			{"replay with a wrong token", http.MethodPost, "/api/v1/deliveries/replay", opsAdminToken + "x", `{"target":"bad","status":"dead"}`},
		} {
			code, body := r.admin(t, tc.method, tc.path, tc.token, tc.body)
			require.Equal(t, http.StatusUnauthorized, code, tc.name)
			require.NotContains(t, string(body), opsAdminToken, tc.name)
		}
		waitStatus(t, r, "bad", event.StatusDead, accepted) // the rejected replay changed nothing
		require.NotContains(t, r.logs.String(), opsAdminToken, "the admin token must never be logged")
		require.NotContains(t, r.logs.String(), opsSecret, "the webhook secret must never be logged")
	})

	t.Run("list filters and pages", func(t *testing.T) {
		all := r.listDeliveries(t, url.Values{})
		require.Len(t, all.Deliveries, 2*accepted)
		require.Zero(t, all.NextBeforeID)
		require.True(t, sort.SliceIsSorted(all.Deliveries, func(i, j int) bool { return all.Deliveries[i].ID > all.Deliveries[j].ID }),
			"newest first")

		delivered := r.listDeliveries(t, url.Values{"status": {"delivered"}})
		require.Len(t, delivered.Deliveries, accepted)
		for _, d := range delivered.Deliveries {
			require.Equal(t, "good", d.Target)
			require.Equal(t, 1, d.Attempts)
			require.Empty(t, d.LastError)
		}
		require.Empty(t, r.listDeliveries(t, url.Values{"status": {"pending"}}).Deliveries)
		require.Empty(t, r.listDeliveries(t, url.Values{"status": {"dead"}, "target": {"good"}}).Deliveries)

		// Page through bad's dead deliveries two at a time.
		var paged []adminDelivery
		q := url.Values{"status": {"dead"}, "target": {"bad"}, "limit": {"2"}}
		for pages := 0; ; pages++ {
			require.Less(t, pages, 5, "paging must end")
			l := r.listDeliveries(t, q)
			require.LessOrEqual(t, len(l.Deliveries), 2)
			paged = append(paged, l.Deliveries...)
			if l.NextBeforeID == 0 {
				require.Equal(t, 2, pages, "pages of 2, 2 and 1")
				break
			}
			require.Equal(t, l.Deliveries[len(l.Deliveries)-1].ID, l.NextBeforeID)
			q.Set("before_id", fmt.Sprint(l.NextBeforeID))
		}
		require.Len(t, paged, accepted)
		seenKeys := map[string]bool{}
		for i, d := range paged {
			require.Equal(t, "bad", d.Target)
			require.Equal(t, "dead", d.Status)
			require.Equal(t, 2, d.Attempts)
			require.Equal(t, "http_500", d.LastError)
			require.NotNil(t, d.CreatedAt)
			if i > 0 {
				require.Less(t, d.ID, paged[i-1].ID, "pages continue newest first without overlap")
			}
			seenKeys[d.EventKey] = true
		}
		require.Len(t, seenKeys, accepted)

		for _, bad := range []string{"status=lost", "limit=0", "limit=x", "before_id=-1"} {
			code, body := r.admin(t, http.MethodGet, "/api/v1/deliveries?"+bad, opsAdminToken, "")
			require.Equal(t, http.StatusBadRequest, code, "%s: %s", bad, body)
		}
	})

	t.Run("targets show counts and the last error", func(t *testing.T) {
		stats := r.targetStats(t)
		require.Equal(t, adminTarget{Name: "good", Configured: true, Delivered: accepted}, stats["good"])
		b := stats["bad"]
		require.True(t, b.Configured)
		require.Equal(t, 0, b.Pending)
		require.Equal(t, 0, b.Delivered)
		require.Equal(t, accepted, b.Dead)
		require.Equal(t, "http_500", b.LastError)
		require.NotNil(t, b.LastErrorAt)
		require.WithinDuration(t, time.Now(), *b.LastErrorAt, time.Minute)
	})

	t.Run("replay by ids, then by target and status, after the target recovers", func(t *testing.T) {
		dead := r.listDeliveries(t, url.Values{"status": {"dead"}, "target": {"bad"}}).Deliveries
		require.Len(t, dead, accepted)
		mode.Store(gatedMode) // healthy, but holds each request until the gate opens

		// Replay two by id: they are pending again (held in flight at the gate).
		picked := ids(dead[:2])
		require.Equal(t, 2, r.replay(t, fmt.Sprintf(`{"ids":[%d,%d]}`, picked[0], picked[1])))
		pending := r.listDeliveries(t, url.Values{"status": {"pending"}, "target": {"bad"}}).Deliveries
		require.ElementsMatch(t, picked, ids(pending))
		for _, d := range pending {
			require.Equal(t, 0, d.Attempts, "a replay resets the attempt count")
		}
		require.Len(t, r.listDeliveries(t, url.Values{"status": {"dead"}, "target": {"bad"}}).Deliveries, accepted-2)
		close(gate)
		bad.WaitDelivered(t, waitLong, dead[0].EventKey, dead[1].EventKey)
		waitStatus(t, r, "bad", event.StatusDelivered, 2)
		require.ElementsMatch(t, picked, ids(r.listDeliveries(t, url.Values{"status": {"delivered"}, "target": {"bad"}}).Deliveries))

		// Replaying the rest by target and status moves all of them.
		require.Equal(t, accepted-2, r.replay(t, `{"target":"bad","status":"dead"}`))
		bad.WaitDelivered(t, waitLong, keys...)
		waitStatus(t, r, "bad", event.StatusDelivered, accepted)
		require.Empty(t, r.listDeliveries(t, url.Values{"status": {"dead"}}).Deliveries)
		require.Equal(t, 0, r.replay(t, `{"target":"bad","status":"dead"}`), "nothing dead is left")
		for _, d := range r.listDeliveries(t, url.Values{"target": {"bad"}}).Deliveries {
			require.Equal(t, "delivered", d.Status)
			require.Equal(t, 1, d.Attempts, "the replayed attempt is the first since the replay")
		}
		for _, k := range keys {
			require.Equal(t, 1, bad.Delivered()[k], k)
			require.Equal(t, 1, good.Delivered()[k], "replaying bad never resends to good: %s", k)
		}

		code, body := r.admin(t, http.MethodPost, "/api/v1/deliveries/replay", opsAdminToken, `{"target":"nope","status":"dead"}`)
		require.Equal(t, http.StatusBadRequest, code, string(body))
		code, body = r.admin(t, http.MethodPost, "/api/v1/deliveries/replay", opsAdminToken, `{"target":"bad","status":"pending"}`)
		require.Equal(t, http.StatusBadRequest, code, string(body))

		stats := r.targetStats(t)
		require.Equal(t, accepted, stats["bad"].Delivered)
		require.Zero(t, stats["bad"].Dead)
		require.Zero(t, stats["bad"].Pending)

		m := scrape(t, r.base)
		require.Equal(t, 5.0, counter(t, m, dl, "target", "bad", "outcome", "delivered"))
		require.Equal(t, 5.0, counter(t, m, dl, "target", "bad", "outcome", "retried"))
		require.Equal(t, 5.0, counter(t, m, dl, "target", "bad", "outcome", "dead"))
		require.Equal(t, 5.0, counter(t, m, dl, "target", "good", "outcome", "delivered"))
		require.Equal(t, uint64(5), histogramCount(t, m, "wamm_relay_delivery_latency_seconds", "target", "bad"))
		require.Equal(t, 0.0, gauge(t, m, "wamm_relay_deliveries_dead", "target", "bad"))
		require.Equal(t, 0.0, gauge(t, m, "wamm_relay_deliveries_pending", "target", "bad"))
		require.Equal(t, 5.0, counter(t, m, "wamm_relay_events_enqueued_total", "source", "webhook"),
			"a replay enqueues no new event")
	})
}
