package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wamm-relay/wamm-relay/store"
)

type metrics struct {
	received *prometheus.CounterVec
	// rejected counts refused requests to the admin API, the dashboard
	// login and /metrics, one per request, however their lines are sampled.
	rejected       *prometheus.CounterVec
	ingestDuration prometheus.Histogram
	// The two series every accepted webhook moves, looked up once.
	receivedAccepted, receivedDuplicate prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_webhooks_received_total",
			Help: "Webhook requests by outcome (accepted, duplicate, rejected) and rejection reason.",
		}, []string{"outcome", "reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_requests_rejected_total",
			Help: "Requests to the admin API, the dashboard login and /metrics refused, by endpoint and reason (unauthorized, forbidden).",
		}, []string{"endpoint", "reason"}),
		ingestDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wamm_relay_ingest_duration_seconds",
			Help: "Time the Ingest call took for a parsed webhook (durable commit, or failure).",
			// 1 ms to ~8 s: the ingest timeout sits at the top.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	// Every series exists from the start, so rate() and alerts see zeros.
	m.receivedAccepted = m.received.WithLabelValues("accepted", "")
	m.receivedDuplicate = m.received.WithLabelValues("duplicate", "")
	for _, r := range []string{reasonBadJSON, reasonNotObject, reasonTooLarge, reasonUnauthorized,
		reasonStoreUnavailable, reasonOverloaded, reasonReadError} {
		m.received.WithLabelValues("rejected", r)
	}
	m.rejected.WithLabelValues(endpointAdmin, reasonUnauthorized)
	m.rejected.WithLabelValues(endpointAdmin, reasonForbidden)
	m.rejected.WithLabelValues(endpointDashboard, reasonUnauthorized)
	m.rejected.WithLabelValues(endpointMetrics, reasonUnauthorized)
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.received, m.rejected, m.ingestDuration} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register relay metrics: %w", err)
		}
	}
	return nil
}

// StatsSource reads per-target pending and dead counts without reading the
// delivered deliveries (store.Store's QueueStats); store backends satisfy
// it.
type StatsSource interface {
	QueueStats(ctx context.Context) ([]store.TargetStats, error)
}

// DiskFullReporter is implemented by stores that can tell that their writes
// fail for want of disk space (the SQLite store); the stats collector then
// exports wamm_relay_store_disk_full.
type DiskFullReporter interface {
	DiskFull() bool
}

// StatsCollector exports the store's per-target delivery counts on every
// scrape: wamm_relay_deliveries_pending, wamm_relay_deliveries_dead and
// wamm_relay_oldest_pending_age_seconds by target, and wamm_relay_store_up.
// Configured targets are always exported (zeros when they have no
// deliveries); when the store cannot be read only store_up (0) is. A src
// that is a DiskFullReporter also gets wamm_relay_store_disk_full, read
// from memory on every scrape whatever the store answers.
type StatsCollector struct {
	src     StatsSource
	targets []string
	timeout time.Duration
	now     func() time.Time

	pending, dead, oldest, up *prometheus.Desc
	diskFull                  *prometheus.Desc
	// orphaned counts, per target the store has pending deliveries for but
	// the configuration no longer names, what nobody will ever deliver
	// unless an operator purges or reassigns it.
	orphaned *prometheus.Desc
}

// NewStatsCollector reads src with the given timeout per scrape; targets are
// the configured names, now (nil means time.Now) ages the oldest pending.
func NewStatsCollector(src StatsSource, targets []string, timeout time.Duration, now func() time.Time) *StatsCollector {
	if now == nil {
		now = time.Now
	}
	if timeout <= 0 {
		timeout = DefaultStatsTimeout
	}
	return &StatsCollector{
		src:     src,
		targets: append([]string(nil), targets...),
		timeout: timeout,
		now:     now,
		pending: prometheus.NewDesc("wamm_relay_deliveries_pending",
			"Deliveries waiting to be sent (or retried), by target.", []string{"target"}, nil),
		dead: prometheus.NewDesc("wamm_relay_deliveries_dead",
			"Deliveries that gave up and wait for a replay, by target.", []string{"target"}, nil),
		oldest: prometheus.NewDesc("wamm_relay_oldest_pending_age_seconds",
			"Age of the oldest pending delivery, by target; 0 when none is pending.", []string{"target"}, nil),
		orphaned: prometheus.NewDesc("wamm_relay_orphaned_pending_deliveries",
			"Pending deliveries of a target no longer configured (nobody delivers them: deliveries purge or reassign), by target.", []string{"target"}, nil),
		up: prometheus.NewDesc("wamm_relay_store_up",
			"1 when the last scrape could read delivery stats from the store, else 0.", nil, nil),
		diskFull: prometheus.NewDesc("wamm_relay_store_disk_full",
			"1 while the store's writes fail for want of disk space (webhooks answer 503), else 0.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.dead
	ch <- c.oldest
	ch <- c.up
	ch <- c.orphaned
	ch <- c.diskFull
}

// Collect implements prometheus.Collector.
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if r, ok := c.src.(DiskFullReporter); ok {
		full := 0.0
		if r.DiskFull() {
			full = 1
		}
		ch <- prometheus.MustNewConstMetric(c.diskFull, prometheus.GaugeValue, full)
	}
	stats, err := c.src.QueueStats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	now := c.now()
	for _, r := range mergeTargets(c.targets, stats) {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(r.Pending), r.Target)
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(r.Dead), r.Target)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldestAge(now, r.OldestPending), r.Target)
		if !r.configured {
			ch <- prometheus.MustNewConstMetric(c.orphaned, prometheus.GaugeValue, float64(r.Pending), r.Target)
		}
	}
}
