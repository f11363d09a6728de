package relay_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/store"
)

func TestMetricsAfterRequests(t *testing.T) {
	var statsDown atomic.Bool
	admin := &fakeAdmin{stats: func(context.Context) ([]store.TargetStats, error) {
		if statsDown.Load() {
			return nil, errors.New("db gone")
		}
		return []store.TargetStats{
			{Target: "crm", Pending: 4, Dead: 2, OldestPending: fixedNow.Add(-30 * time.Second)},
			{Target: "removed", Pending: 7},
		}, nil
	}}
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(o *relay.Options) {
		o.Registerer, o.Gatherer = reg, reg
		o.Admin = admin
		o.Targets = []string{"crm", "erp"}
	})
	var dup atomic.Bool
	h.ing.fn = func(context.Context, event.Event) (bool, error) { return dup.Load(), nil }

	require.Equal(t, 200, h.post(t, "/webhook/"+testSecret, msgBody).status)
	require.Equal(t, 200, h.post(t, "/webhook/"+testSecret, `{"tip":"msg","msg_data":{"msg_id":2}}`).status)
	dup.Store(true)
	require.Equal(t, 200, h.post(t, "/webhook/"+testSecret, msgBody).status)
	require.Equal(t, 400, h.post(t, "/webhook/"+testSecret, `nope`).status)
	require.Equal(t, 400, h.post(t, "/webhook/"+testSecret, `[1]`).status)
	require.Equal(t, 401, h.post(t, "/webhook/wrong", msgBody).status)
	h.ing.fn = func(context.Context, event.Event) (bool, error) { return false, errors.New("locked") }
	require.Equal(t, 503, h.post(t, "/webhook/"+testSecret, msgBody).status)

	resp := h.do(t, http.MethodGet, "/metrics", nil, nil)
	require.Equal(t, 200, resp.status)
	for _, line := range []string{
		`wamm_relay_webhooks_received_total{outcome="accepted",reason=""} 2`,
		`wamm_relay_webhooks_received_total{outcome="duplicate",reason=""} 1`,
		`wamm_relay_webhooks_received_total{outcome="rejected",reason="bad_json"} 1`,
		`wamm_relay_webhooks_received_total{outcome="rejected",reason="not_object"} 1`,
		`wamm_relay_webhooks_received_total{outcome="rejected",reason="unauthorized"} 1`,
		`wamm_relay_webhooks_received_total{outcome="rejected",reason="store_unavailable"} 1`,
		`wamm_relay_webhooks_received_total{outcome="rejected",reason="too_large"} 0`,
		`wamm_relay_webhooks_received_total{outcome="rejected",reason="overloaded"} 0`,
		`wamm_relay_ingest_duration_seconds_count 4`,
		`wamm_relay_deliveries_pending{target="crm"} 4`,
		`wamm_relay_deliveries_pending{target="erp"} 0`,
		`wamm_relay_deliveries_dead{target="crm"} 2`,
		`wamm_relay_deliveries_dead{target="erp"} 0`,
		`wamm_relay_oldest_pending_age_seconds{target="crm"} 30`,
		`wamm_relay_oldest_pending_age_seconds{target="erp"} 0`,
		`wamm_relay_store_up 1`,
		`wamm_relay_orphaned_pending_deliveries{target="removed"} 7`,
	} {
		require.Contains(t, resp.body, line+"\n")
	}
	require.NotContains(t, resp.body, `wamm_relay_orphaned_pending_deliveries{target="crm"}`, "configured targets are not orphans")

	statsDown.Store(true)
	resp = h.do(t, http.MethodGet, "/metrics", nil, nil)
	require.Equal(t, 200, resp.status, "a store outage must not fail the scrape")
	require.Contains(t, resp.body, "wamm_relay_store_up 0\n")
	require.NotContains(t, resp.body, "wamm_relay_deliveries_pending{")
}

func TestStatsCollectorBoundsTheStoreCall(t *testing.T) {
	src := &fakeAdmin{stats: func(ctx context.Context) ([]store.TargetStats, error) {
		<-ctx.Done() // a store that hangs
		return nil, ctx.Err()
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(relay.NewStatsCollector(src, []string{"crm"}, 20*time.Millisecond, nil))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 1)
	require.Equal(t, "wamm_relay_store_up", mfs[0].GetName())
	require.Zero(t, mfs[0].GetMetric()[0].GetGauge().GetValue())
}

// diskFullAdmin is a store that reports a full disk, as the SQLite one does.
type diskFullAdmin struct {
	*fakeAdmin
	full atomic.Bool
}

func (a *diskFullAdmin) DiskFull() bool { return a.full.Load() }

func TestStoreDiskFullGauge(t *testing.T) {
	gauge := func(t *testing.T, reg *prometheus.Registry) (float64, bool) {
		t.Helper()
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "wamm_relay_store_disk_full" {
				return mf.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	src := &diskFullAdmin{fakeAdmin: &fakeAdmin{}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(relay.NewStatsCollector(src, []string{"crm"}, time.Second, nil))
	v, ok := gauge(t, reg)
	require.True(t, ok)
	require.Zero(t, v)
	src.full.Store(true)
	v, _ = gauge(t, reg)
	require.Equal(t, 1.0, v)

	// A store that cannot tell exports no such series.
	reg = prometheus.NewRegistry()
	reg.MustRegister(relay.NewStatsCollector(&fakeAdmin{}, []string{"crm"}, time.Second, nil))
	_, ok = gauge(t, reg)
	require.False(t, ok)
}

func TestNewFailsOnDoubleRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	newHarness(t, func(o *relay.Options) { o.Registerer = reg })
	_, err := relay.New(relay.Options{Listen: ":0", Ingester: &fakeIngester{}, Logger: newDiscardLogger(), Registerer: reg})
	require.ErrorContains(t, err, "register relay metrics")
}
