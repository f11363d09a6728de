package reconcile

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// Values of the polls_total outcome label.
const (
	outcomeOK        = "ok"
	outcomeError     = "error"
	outcomeNotLeader = "skipped_not_leader"
)

// metricVecs are the reconcilers' metrics, labelled by channel: one set per
// registry, shared by the reconciler of every channel.
type metricVecs struct {
	polls        *prometheus.CounterVec
	gapsFilled   *prometheus.CounterVec
	overflows    *prometheus.CounterVec
	apiErrors    *prometheus.CounterVec
	baseline     *prometheus.CounterVec
	lastSuccess  *prometheus.GaugeVec
	gapsDetected *prometheus.CounterVec
	gapsOpen     *prometheus.GaugeVec
}

// metrics are one channel's.
type metrics struct {
	polls        *prometheus.CounterVec // by outcome
	gapsFilled   *prometheus.CounterVec // by kind
	overflows    prometheus.Counter
	apiErrors    *prometheus.CounterVec // by reason
	baseline     prometheus.Counter
	lastSuccess  prometheus.Gauge
	gapsDetected *prometheus.CounterVec // by reason
	gapsOpen     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metricVecs, error) {
	m := &metricVecs{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_polls_total",
			Help: "Reconciliation passes by channel and outcome (ok, error, skipped_not_leader).",
		}, []string{"channel", "outcome"}),
		gapsFilled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_gaps_filled_total",
			Help: "Events the webhooks missed that the reconciler ingested, by channel and kind.",
		}, []string{"channel", "kind"}),
		overflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_window_overflows_total",
			Help: "Polls whose full page overlapped nothing known, so older messages may have been missed.",
		}, []string{"channel"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_api_errors_total",
			Help: "Failed WAMM API calls of the reconciler, by channel and reason.",
		}, []string{"channel", "reason"}),
		baseline: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_baseline_total",
			Help: "Messages older than the channel's first poll recorded as seen without delivery.",
		}, []string{"channel"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wamm_relay_reconcile_last_success_timestamp_seconds",
			Help: "Unix time of the channel's last successful reconciliation pass.",
		}, []string{"channel"}),
		gapsDetected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_gaps_detected_total",
			Help: "Gaps the reconciler found and cannot recover (see /api/v1/gaps), by channel and reason.",
		}, []string{"channel", "reason"}),
		gapsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wamm_relay_reconcile_gaps_open",
			Help: "Gap records of the channel not yet marked resolved by an operator.",
		}, []string{"channel"}),
	}
	if reg == nil {
		return m, nil
	}
	// A second channel's reconciler finds the vectors registered by the
	// first and shares them.
	var errs [8]error
	m.polls, errs[0] = register(reg, m.polls)
	m.gapsFilled, errs[1] = register(reg, m.gapsFilled)
	m.overflows, errs[2] = register(reg, m.overflows)
	m.apiErrors, errs[3] = register(reg, m.apiErrors)
	m.baseline, errs[4] = register(reg, m.baseline)
	m.lastSuccess, errs[5] = register(reg, m.lastSuccess)
	m.gapsDetected, errs[6] = register(reg, m.gapsDetected)
	m.gapsOpen, errs[7] = register(reg, m.gapsOpen)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector of the same kind already
// registered under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metricVecs) forChannel(channel string) *metrics {
	l := prometheus.Labels{"channel": channel}
	out := &metrics{
		polls:        m.polls.MustCurryWith(l),
		gapsFilled:   m.gapsFilled.MustCurryWith(l),
		overflows:    m.overflows.With(l),
		apiErrors:    m.apiErrors.MustCurryWith(l),
		baseline:     m.baseline.With(l),
		lastSuccess:  m.lastSuccess.With(l),
		gapsDetected: m.gapsDetected.MustCurryWith(l),
		gapsOpen:     m.gapsOpen.With(l),
	}
	for _, o := range []string{outcomeOK, outcomeError, outcomeNotLeader} {
		out.polls.WithLabelValues(o)
	}
	for _, k := range []event.Kind{event.KindMsg, event.KindMsgState} {
		out.gapsFilled.WithLabelValues(string(k))
	}
	for _, r := range []string{store.GapWindow, store.GapChat} {
		out.gapsDetected.WithLabelValues(r)
	}
	return out
}
