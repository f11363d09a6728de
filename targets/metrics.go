package targets

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	deliveries      *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	requestDuration *prometheus.HistogramVec
	attempts        *prometheus.CounterVec
	inFlight        *prometheus.GaugeVec
	paused          *prometheus.GaugeVec
	breakerOpen     *prometheus.GaugeVec
	breakerTrips    *prometheus.CounterVec
	rateLimited     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, names []string) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_deliveries_total",
			Help: "Delivery attempts by what they decided: delivered, retried or dead.",
		}, []string{"target", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wamm_relay_delivery_latency_seconds",
			Help: "Time from enqueueing a delivery to the target's 2xx, retries included.",
			Buckets: []float64{
				0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
				300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600,
			},
		}, []string{"target"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wamm_relay_delivery_request_duration_seconds",
			Help:    "Duration of one HTTP attempt against a target.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"target"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_delivery_attempts_total",
			Help: "Delivery attempts by short result code (http_<status>, timeout, connection_refused, ...).",
		}, []string{"target", "code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wamm_relay_deliveries_in_flight",
			Help: "Attempts currently waiting on the target.",
		}, []string{"target"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wamm_relay_target_paused",
			Help: "1 while an operator has paused the target (its deliveries wait, nothing is lost).",
		}, []string{"target"}),
		breakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wamm_relay_target_breaker_open",
			Help: "1 while the target's circuit breaker is open or half-open (no attempts but one probe).",
		}, []string{"target"}),
		breakerTrips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_target_breaker_trips_total",
			Help: "Times the target's circuit breaker opened after consecutive failures or a failed probe.",
		}, []string{"target"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_target_rate_limited_total",
			Help: "Claim rounds the target's rate limit held back (due deliveries waited for a token).",
		}, []string{"target"}),
	}
	// Start every target's series at zero so rates and alerts work before
	// the first event.
	for _, n := range names {
		for _, o := range []string{outcomeDelivered, outcomeRetried, outcomeDead} {
			m.deliveries.WithLabelValues(n, o)
		}
		m.inFlight.WithLabelValues(n)
		m.paused.WithLabelValues(n)
		m.breakerOpen.WithLabelValues(n)
		m.breakerTrips.WithLabelValues(n)
		m.rateLimited.WithLabelValues(n)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.deliveries, m.latency, m.requestDuration, m.attempts, m.inFlight,
		m.paused, m.breakerOpen, m.breakerTrips, m.rateLimited} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register delivery metrics: %w", err)
		}
	}
	return m, nil
}

// Values of the outcome label.
const (
	outcomeDelivered = "delivered"
	outcomeRetried   = "retried"
	outcomeDead      = "dead"
)
