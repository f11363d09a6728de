package reconcile

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wamm-relay/wamm-relay/event"
)

// Values of the polls_total outcome label.
const (
	outcomeOK        = "ok"
	outcomeError     = "error"
	outcomeNotLeader = "skipped_not_leader"
)

type metrics struct {
	polls       *prometheus.CounterVec
	gapsFilled  *prometheus.CounterVec
	overflows   prometheus.Counter
	apiErrors   *prometheus.CounterVec
	baseline    prometheus.Counter
	lastSuccess prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_polls_total",
			Help: "Reconciliation passes by outcome (ok, error, skipped_not_leader).",
		}, []string{"outcome"}),
		gapsFilled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_gaps_filled_total",
			Help: "Events the webhooks missed that the reconciler ingested, by kind.",
		}, []string{"kind"}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_window_overflows_total",
			Help: "Polls whose full page overlapped nothing known, so older messages may have been missed.",
		}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_api_errors_total",
			Help: "Failed WAMM API calls of the reconciler, by reason.",
		}, []string{"reason"}),
		baseline: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wamm_relay_reconcile_baseline_total",
			Help: "Messages recorded as seen without delivery on the first run against an empty store.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wamm_relay_reconcile_last_success_timestamp_seconds",
			Help: "Unix time of the last successful reconciliation pass.",
		}),
	}
	for _, o := range []string{outcomeOK, outcomeError, outcomeNotLeader} {
		m.polls.WithLabelValues(o)
	}
	for _, k := range []event.Kind{event.KindMsg, event.KindMsgState} {
		m.gapsFilled.WithLabelValues(string(k))
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.polls, m.gapsFilled, m.overflows, m.apiErrors, m.baseline, m.lastSuccess} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}
