package targets

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/wamm-relay/wamm-relay/event"
)

// codeReleased marks an attempt cut off by shutdown: released, not charged.
const codeReleased = "released"

// startAttemptSpan starts the attempt's delivery.attempt span as a child of
// the event's ingest span, whichever instance ingested it; its context
// carries the traceparent the sender passes on. Without a tracer it returns
// ctx and a span that records nothing.
func (p *pool) startAttemptSpan(ctx context.Context, dl event.Delivery, n int) (context.Context, trace.Span) {
	tr := p.d.opts.Tracer
	if !tr.Enabled() {
		return ctx, trace.SpanFromContext(context.Background())
	}
	ctx, span := tr.StartInEvent(ctx, "delivery.attempt", dl.EventKey, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("relay.target", p.target.Name),
			attribute.String("relay.event_key", string(dl.EventKey)),
			attribute.String("relay.kind", string(dl.Kind)),
			attribute.String("relay.source", string(dl.Source)),
			attribute.Int64("relay.delivery_id", dl.ID),
			attribute.Int("relay.attempt", n),
		)
	}
	return ctx, span
}

// endAttemptSpan records what the attempt decided (out is nil for an
// attempt released by shutdown) and ends the span. The error detail carries
// no URL, which may hold a credential.
func endAttemptSpan(span trace.Span, out *event.Outcome, code string, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if out == nil {
		span.SetAttributes(attribute.String("relay.result", codeReleased), attribute.String("relay.error_code", code))
	} else {
		if out.Result != event.ResultDelivered {
			span.SetAttributes(attribute.String("relay.error_code", code))
		}
		span.SetAttributes(attribute.String("relay.result", string(out.Result)))
		if out.StatusCode != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", out.StatusCode))
		}
	}
	switch {
	case err != nil:
		span.SetStatus(codes.Error, errorDetail(err))
	case out != nil && out.Result != event.ResultDelivered:
		span.SetStatus(codes.Error, code)
	}
	span.End()
}
