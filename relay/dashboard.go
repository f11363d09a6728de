package relay

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func toDeliveryJSON(d event.Delivery) deliveryJSON {
	return deliveryJSON{
		ID:             d.ID,
		Target:         d.Target,
		EventKey:       d.EventKey,
		Kind:           d.Kind,
		Source:         string(d.Source),
		Status:         string(d.Status),
		Attempts:       d.Attempts,
		NextAttemptAt:  optTime(d.NextAttemptAt),
		CreatedAt:      optTime(d.CreatedAt),
		UpdatedAt:      optTime(d.UpdatedAt),
		DeliveredAt:    optTime(d.DeliveredAt),
		LastError:      d.LastError,
		LastStatusCode: d.LastStatusCode,
		Channel:        d.Channel,
		Chat:           d.Chat,
		MsgID:          d.MsgID,
	}
}

type deliveryDetailJSON struct {
	deliveryJSON
	// Body is the event's body as text (webhook bodies are JSON).
	Body string `json:"body"`
	// AttemptsLog lists the failed attempts; absent when the store keeps
	// no attempt log.
	AttemptsLog *[]attemptJSON `json:"attempts_log,omitempty"`
}

type attemptJSON struct {
	Attempt    int        `json:"attempt"`
	At         *time.Time `json:"at"`
	StatusCode int        `json:"status_code"`
	Error      string     `json:"error"`
}

// handleGetDelivery serves GET /api/v1/deliveries/{id}: the delivery with
// its event's body and, where the store keeps them, its failed attempts.
func (s *Server) handleGetDelivery(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		c.JSON(http.StatusBadRequest, errorBody("invalid id: must be a positive integer"))
		return
	}
	ds, err := s.opts.Admin.List(c.Request.Context(), store.ListFilter{ID: id, Limit: 1})
	if err != nil {
		s.adminStoreError(c, "read delivery", err)
		return
	}
	if len(ds) == 0 {
		c.JSON(http.StatusNotFound, errorBody("no delivery with this id"))
		return
	}
	out := deliveryDetailJSON{deliveryJSON: toDeliveryJSON(ds[0]), Body: string(ds[0].Body)}
	if al, ok := s.opts.Admin.(store.AttemptLog); ok {
		as, err := al.Attempts(c.Request.Context(), id)
		if err != nil {
			s.adminStoreError(c, "read attempts", err)
			return
		}
		log := make([]attemptJSON, 0, len(as))
		for _, a := range as {
			log = append(log, attemptJSON{Attempt: a.Attempt, At: optTime(a.At), StatusCode: a.StatusCode, Error: a.Error})
		}
		out.AttemptsLog = &log
	}
	c.JSON(http.StatusOK, out)
}

// rateWindow turns a counter into a rate over about the last minute: it
// keeps the counter's readings, taken when the overview is asked for (the
// dashboard polls it every few seconds), and compares the newest with the
// oldest one still inside the window.
type rateWindow struct {
	mu      sync.Mutex
	window  time.Duration
	samples []rateSample
}

type rateSample struct {
	at time.Time
	v  float64
}

// observe records v at now and returns the rate per second and the span it
// was measured over (zero before a second reading).
func (w *rateWindow) observe(now time.Time, v float64) (float64, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.samples); n == 0 || now.Sub(w.samples[n-1].at) >= time.Second {
		w.samples = append(w.samples, rateSample{now, v})
	}
	// Keep the newest reading older than the window, as the window's start.
	for len(w.samples) > 2 && now.Sub(w.samples[1].at) >= w.window {
		w.samples = w.samples[1:]
	}
	first := w.samples[0]
	span := now.Sub(first.at)
	if span <= 0 {
		return 0, 0
	}
	return (v - first.v) / span.Seconds(), span
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return 0
	}
	return m.Counter.GetValue()
}

type overviewTarget struct {
	Name                    string  `json:"name"`
	Configured              bool    `json:"configured"`
	Pending                 int     `json:"pending"`
	Dead                    int     `json:"dead"`
	OldestPendingAgeSeconds float64 `json:"oldest_pending_age_seconds"`
}

type overviewJSON struct {
	Ingest struct {
		AcceptedTotal     float64 `json:"accepted_total"`
		DuplicateTotal    float64 `json:"duplicate_total"`
		RejectedTotal     float64 `json:"rejected_total"`
		AcceptedPerSecond float64 `json:"accepted_per_second"`
		WindowSeconds     float64 `json:"window_seconds"`
	} `json:"ingest"`
	Pending int              `json:"pending"`
	Dead    int              `json:"dead"`
	Targets []overviewTarget `json:"targets"`
	At      time.Time        `json:"at"`
}

// handleOverview serves GET /api/v1/overview: this instance's webhook
// counters with the accepted rate over about the last minute, and the
// store's pending and dead counts (QueueStats: cheap, read from the
// pending and dead deliveries alone).
func (s *Server) handleOverview(c *gin.Context) {
	stats, err := s.opts.Admin.QueueStats(c.Request.Context())
	if err != nil {
		s.adminStoreError(c, "read queue stats", err)
		return
	}
	now := s.opts.Now()
	var out overviewJSON
	out.At = now.UTC()
	accepted := counterValue(s.metrics.receivedAccepted)
	out.Ingest.AcceptedTotal = accepted
	out.Ingest.DuplicateTotal = counterValue(s.metrics.receivedDuplicate)
	for _, r := range []string{reasonBadJSON, reasonNotObject, reasonTooLarge, reasonUnauthorized,
		reasonStoreUnavailable, reasonOverloaded, reasonReadError} {
		out.Ingest.RejectedTotal += counterValue(s.metrics.received.WithLabelValues("rejected", r))
	}
	rate, span := s.ingestRate.observe(now, accepted)
	out.Ingest.AcceptedPerSecond, out.Ingest.WindowSeconds = rate, span.Seconds()
	out.Targets = []overviewTarget{}
	for _, r := range mergeTargets(s.opts.Targets, stats) {
		out.Pending += r.Pending
		out.Dead += r.Dead
		out.Targets = append(out.Targets, overviewTarget{
			Name: r.Target, Configured: r.configured, Pending: r.Pending, Dead: r.Dead,
			OldestPendingAgeSeconds: oldestAge(now, r.OldestPending),
		})
	}
	c.JSON(http.StatusOK, out)
}
