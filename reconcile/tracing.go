package reconcile

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/tracing"
)

// Steps of the reconcile.pass span: a poll of the API, or the promotion of
// waiting candidates whose grace period ended.
const (
	stepPoll    = "poll"
	stepPromote = "promote"
)

// startPassSpan starts the span of one pass, a trace of its own: a pass
// concerns many events, each linked to it.
func (r *Reconciler) startPassSpan(ctx context.Context, step string) (context.Context, trace.Span) {
	if !r.opts.Tracer.Enabled() {
		return ctx, trace.SpanFromContext(context.Background())
	}
	return r.opts.Tracer.Start(ctx, "reconcile.pass",
		trace.WithAttributes(attribute.String("relay.reconcile_step", step)))
}

// endPassSpan records the pass's counts and ends its span.
func endPassSpan(span trace.Span, rep *Report, pe *passError) {
	if span.IsRecording() {
		span.SetAttributes(
			attribute.Bool("relay.not_leader", rep.NotLeader),
			attribute.Int("relay.polled", rep.Polled),
			attribute.Int("relay.recovered", rep.Recovered),
			attribute.Int("relay.known", rep.Known),
			attribute.Int("relay.in_grace", rep.InGrace),
			attribute.Int("relay.arrived_in_grace", rep.ArrivedInGrace),
			attribute.Int("relay.enqueued_msgs", rep.EnqueuedMsgs),
			attribute.Int("relay.enqueued_states", rep.EnqueuedStates),
			attribute.Int("relay.duplicates", rep.Duplicates),
			attribute.Int("relay.baseline", rep.Baseline),
			attribute.Bool("relay.overflow", rep.Overflow),
		)
		if pe != nil {
			span.SetAttributes(attribute.String("relay.reason", pe.reason))
			span.SetStatus(codes.Error, pe.err.Error())
		}
	}
	span.End()
}

// traceIngest records the reconcile.ingest span of one recovered event, in
// the event's trace (its root when this ingest stored the event), linked to
// the pass that found it; the pass links back to the event.
func (r *Reconciler) traceIngest(ctx context.Context, start time.Time, ev event.Event, dup bool, err error) {
	if !r.opts.Tracer.Enabled() {
		return
	}
	pass := trace.SpanFromContext(ctx)
	span := r.opts.Tracer.IngestSpan(ctx, "reconcile.ingest", ev.Key, err == nil && !dup,
		trace.WithTimestamp(start),
		trace.WithLinks(trace.Link{SpanContext: pass.SpanContext()}))
	pass.AddLink(tracing.EventLink(ev.Key))
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("relay.event_key", string(ev.Key)),
			attribute.String("relay.kind", string(ev.Kind)),
			attribute.String("relay.source", string(ev.Source)),
			attribute.Bool("relay.duplicate", dup),
		)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}
