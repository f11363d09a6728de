package reconcile

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/tracing"
)

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func byName(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// A recovered event's reconcile.ingest span is the root of the event's
// trace, where its delivery attempts will be; it and the pass that found the
// event link to each other.
func TestRecoveredEventInItsTrace(t *testing.T) {
	tests := []struct {
		name   string
		settle func(t *testing.T, r *Reconciler) Report
		step   string
	}{
		{"recovered by the next pass", once, stepPoll},
		{"recovered by a promote step", promote, stepPromote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			p, err := tracing.NewWithProcessor(tracing.Options{SampleRatio: 1}, rec)
			require.NoError(t, err)
			f := newFixture(t, false)
			f.opts.Tracer = p.Tracer("reconcile")
			f.acct.add(apiMsg("1234567", 0, "79001234567", "received"))
			r := f.new(t)

			once(t, r) // finds the message, waits for its grace period
			require.Len(t, byName(rec.Ended(), "reconcile.pass"), 1)
			require.Empty(t, byName(rec.Ended(), "reconcile.ingest"))
			f.clock.Advance(20 * time.Second)
			require.Equal(t, 1, tt.settle(t, r).EnqueuedMsgs)

			key := event.MsgKey("1234567")
			ingests := byName(rec.Ended(), "reconcile.ingest")
			require.Len(t, ingests, 1)
			ing := ingests[0]
			require.Equal(t, tracing.EventTraceID(key), ing.SpanContext().TraceID())
			require.Equal(t, tracing.IngestSpanID(key), ing.SpanContext().SpanID(), "the root every attempt is a child of")
			a := spanAttrs(ing)
			require.Equal(t, string(key), a["relay.event_key"].AsString())
			require.Equal(t, "reconcile", a["relay.source"].AsString())
			require.False(t, a["relay.duplicate"].AsBool())

			passes := byName(rec.Ended(), "reconcile.pass")
			require.Len(t, passes, 2)
			pass := passes[1]
			require.NotEqual(t, tracing.EventTraceID(key), pass.SpanContext().TraceID(), "a pass has a trace of its own")
			pa := spanAttrs(pass)
			require.Equal(t, tt.step, pa["relay.reconcile_step"].AsString())
			require.Equal(t, int64(1), pa["relay.enqueued_msgs"].AsInt64())
			require.Len(t, ing.Links(), 1)
			require.Equal(t, pass.SpanContext().SpanID(), ing.Links()[0].SpanContext.SpanID())
			require.Len(t, pass.Links(), 1)
			require.Equal(t, tracing.IngestSpanID(key), pass.Links()[0].SpanContext.SpanID())
		})
	}
}

func TestPassSpanCounts(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p, err := tracing.NewWithProcessor(tracing.Options{SampleRatio: 1}, rec)
	require.NoError(t, err)
	f := newFixture(t, false)
	f.opts.Tracer = p.Tracer("reconcile")
	f.acct.add(apiMsg("7", 0, "79001234567", "received"), apiMsg("8", 1, "79001234567", "sent"))
	once(t, f.new(t))

	passes := byName(rec.Ended(), "reconcile.pass")
	require.Len(t, passes, 1)
	a := spanAttrs(passes[0])
	require.Equal(t, int64(2), a["relay.polled"].AsInt64())
	require.Equal(t, int64(2), a["relay.in_grace"].AsInt64())
	require.False(t, a["relay.not_leader"].AsBool())
}
