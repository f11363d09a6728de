package relay

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/tracing"
)

const spanIngest = "webhook.ingest"

// traceIngest records the webhook.ingest span of one request, after its
// answer, from start. A parsed event's span is in the event's trace: its root
// when this request stored the event, else a child of that root. A request
// rejected before parsing has no event and gets a trace of its own. The
// request's own traceparent is only linked: the trace id is the event's.
func (s *Server) traceIngest(c *gin.Context, start time.Time, ev *event.Event, ingested, duplicate *bool) {
	opts := []trace.SpanStartOption{trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindServer)}
	if link, ok := tracing.IncomingLink(c.Request.Header); ok {
		opts = append(opts, trace.WithLinks(link))
	}
	var span trace.Span
	if ev.Key == "" {
		_, span = s.opts.Tracer.Start(c.Request.Context(), spanIngest, opts...)
	} else {
		span = s.opts.Tracer.IngestSpan(c.Request.Context(), spanIngest, ev.Key, *ingested && !*duplicate, opts...)
	}
	defer span.End()
	if !span.IsRecording() {
		return
	}
	status := c.Writer.Status()
	span.SetAttributes(
		attribute.String("http.request.method", c.Request.Method),
		attribute.Int("http.response.status_code", status),
		attribute.String("relay.source", string(event.SourceWebhook)),
	)
	if ev.Key != "" {
		span.SetAttributes(
			attribute.String("relay.event_key", string(ev.Key)),
			attribute.String("relay.kind", string(ev.Kind)),
			attribute.Bool("relay.duplicate", *duplicate),
		)
	}
	if status >= http.StatusInternalServerError {
		span.SetStatus(codes.Error, "http "+strconv.Itoa(status))
	}
}
