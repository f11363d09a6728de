package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/logx"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/wamm"
)

// Rejection reasons, the reason label of wamm_relay_webhooks_received_total.
const (
	reasonBadJSON          = "bad_json"
	reasonNotObject        = "not_object"
	reasonTooLarge         = "too_large"
	reasonUnauthorized     = "unauthorized"
	reasonStoreUnavailable = "store_unavailable"
	reasonOverloaded       = "overloaded"
	// reasonReadError: the body could not be read (client gone, read timeout).
	reasonReadError = "read_error"
)

type ingestResponse struct {
	OK        bool `json:"ok"`
	Duplicate bool `json:"duplicate"`
}

// handleWebhook checks the secret, the size and the load, parses the body
// and answers 200 only after Ingest returned.
func (s *Server) handleWebhook(c *gin.Context) {
	receivedAt := s.opts.Now()
	// The request's log fields, built only when a line is written: on the
	// accepted path, at the default level, nothing is.
	var (
		bodyBytes = -1
		ev        event.Event
		// ingested: Ingest returned without error (stored or duplicate).
		ingested, duplicate bool
	)
	if s.opts.Tracer.Enabled() {
		// Deferred so that every answer, rejections included, is traced.
		defer s.traceIngest(c, time.Now(), &ev, &ingested, &duplicate)
	}
	log := func() logrus.FieldLogger {
		fields := logrus.Fields{"client_ip": c.ClientIP()}
		if bodyBytes >= 0 {
			fields["bytes"] = bodyBytes
		}
		if ev.Key != "" {
			fields["event_key"], fields["kind"] = ev.Key, ev.Kind
		}
		return s.log.WithFields(fields)
	}

	channel, ok := s.webhookChannel(c)
	if !ok {
		c.JSON(http.StatusNotFound, errorBody("not found"))
		return
	}
	if !s.webhookAuthorized(c, channel) {
		s.reject(c, log, http.StatusUnauthorized, reasonUnauthorized, "missing or wrong webhook secret", nil)
		return
	}
	if c.Request.ContentLength > s.opts.MaxBodyBytes {
		bodyBytes = int(c.Request.ContentLength)
		s.reject(c, log, http.StatusRequestEntityTooLarge, reasonTooLarge, "body larger than the limit", nil)
		return
	}
	// The slot covers reading the body too: a slow upload holds resources.
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		c.Header("Retry-After", "1")
		s.reject(c, log, http.StatusServiceUnavailable, reasonOverloaded, "too many requests in flight", nil)
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.opts.MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.reject(c, log, http.StatusRequestEntityTooLarge, reasonTooLarge, "body larger than the limit", nil)
			return
		}
		s.reject(c, log, http.StatusBadRequest, reasonReadError, "cannot read body", err)
		return
	}
	bodyBytes = len(body)

	ev, err = wamm.ParseWebhook(body, receivedAt)
	if err != nil {
		if errors.Is(err, wamm.ErrNotObject) {
			s.reject(c, log, http.StatusBadRequest, reasonNotObject, "body is not a JSON object", nil)
			return
		}
		s.reject(c, log, http.StatusBadRequest, reasonBadJSON, "body is not valid JSON", nil)
		return
	}
	if channel != event.DefaultChannel {
		ev.ScopeTo(channel)
	}

	ctx, cancel := context.WithTimeout(c.Request.Context(), s.opts.IngestTimeout)
	start := time.Now()
	duplicate, err = s.opts.Ingester.Ingest(ctx, ev)
	cancel()
	s.metrics.ingestDuration.Observe(time.Since(start).Seconds())
	if errors.Is(err, store.ErrDuplicate) {
		duplicate, err = true, nil
	}
	if err != nil {
		s.reject(c, log, http.StatusServiceUnavailable, reasonStoreUnavailable, "store unavailable", err)
		return
	}
	ingested = true

	if duplicate {
		s.metrics.receivedDuplicate.Inc()
	} else {
		s.metrics.receivedAccepted.Inc()
	}
	if logx.DebugEnabled(s.log) {
		log().WithFields(logrus.Fields{
			"duplicate":   duplicate,
			"duration_ms": float64(time.Since(start).Microseconds()) / 1000,
		}).Debug("event.received")
	}
	c.JSON(http.StatusOK, ingestResponse{OK: true, Duplicate: duplicate})
}

// webhookChannel tells which channel a request's path names:
// {path} and {path}/<secret> are the default channel's, {path}/{channel}
// and {path}/{channel}/<secret> a named one's ({path}/default the default
// channel's). ok is false for a path that names no channel.
func (s *Server) webhookChannel(c *gin.Context) (string, bool) {
	seg, hasSeg := c.Params.Get("seg")
	_, hasSecret := c.Params.Get("secret")
	switch {
	case !hasSeg:
		return event.DefaultChannel, true
	case seg == event.DefaultChannel:
		return event.DefaultChannel, true
	}
	if _, ok := s.channelSecrets[seg]; ok {
		return seg, true
	}
	// The default channel's secret, as the path suffix.
	return event.DefaultChannel, !hasSecret && s.opts.WebhookSecret != ""
}

// webhookAuthorized accepts the channel's secret as the path suffix or,
// without a suffix, as ?secret=. A channel without a secret accepts any
// request on its path.
func (s *Server) webhookAuthorized(c *gin.Context, channel string) bool {
	want := s.opts.WebhookSecret
	if channel != event.DefaultChannel {
		want = s.channelSecrets[channel]
	}
	got, inPath := c.Params.Get("secret")
	if seg, ok := c.Params.Get("seg"); ok && !inPath && channel == event.DefaultChannel && seg != event.DefaultChannel {
		got, inPath = seg, true
	}
	if want == "" {
		// A secret in the path of a channel that has none is a mistyped URL.
		return !inPath
	}
	if !inPath {
		got = c.Query("secret")
	}
	return equalSecret(got, want)
}

// reject answers a webhook with an error, counts it and logs the reason:
// warn for what an operator should act on, info for a client's mistake.
// The count is exact; the line is sampled per reason, since anyone who can
// reach the listener can send rejected requests as fast as they like.
func (s *Server) reject(c *gin.Context, entry func() logrus.FieldLogger, status int, reason, msg string, err error) {
	s.metrics.received.WithLabelValues("rejected", reason).Inc()
	level := logrus.InfoLevel
	switch reason {
	case reasonStoreUnavailable, reasonOverloaded, reasonTooLarge, reasonUnauthorized:
		level = logrus.WarnLevel
	}
	s.sampler.Log(fmt.Sprintf("webhook %d %s", status, reason), level, "webhook rejected", func() logrus.FieldLogger {
		log := entry().WithFields(logrus.Fields{"status": status, "reason": reason})
		if err != nil {
			log = log.WithError(errors.New(s.redactLiteral(err.Error())))
		}
		return log
	})
	c.JSON(status, errorBody(msg))
}
