package tracing

import (
	"context"
	"crypto/sha256"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/wamm-relay/wamm-relay/event"
)

func newTestTracer(t *testing.T, ratio float64) (*Tracer, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	p, err := NewWithProcessor(Options{SampleRatio: ratio}, rec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p.Tracer("test"), rec
}

func TestDerivedIDs(t *testing.T) {
	key := event.MsgKey("42")
	sum := sha256.Sum256([]byte("wamm-relay trace:msg:42"))
	tid := EventTraceID(key)
	require.Equal(t, sum[:16], tid[:], "the documented derivation")
	require.Equal(t, EventTraceID(key), EventTraceID(event.MsgKey("42")), "deterministic")
	require.NotEqual(t, EventTraceID(key), EventTraceID(event.MsgKey("43")))
	require.NotEqual(t, IngestSpanID(key), IngestSpanID(event.MsgKey("43")))
	sc := IngestSpanContext(key)
	require.True(t, sc.IsValid())
	require.True(t, sc.IsRemote())
	require.Equal(t, IngestSpanID(key), sc.SpanID())
}

func TestIngestSpanIdentity(t *testing.T) {
	key := event.StateKey("7", "viewed")
	tests := []struct {
		name   string
		stored bool
		// wantRoot: the span is the trace's root with the derived span id;
		// otherwise it is a child of that root.
		wantRoot bool
	}{
		{"the ingest that stored the event is the root", true, true},
		{"a duplicate is a child of the root", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, rec := newTestTracer(t, 1)
			// A span already in the context must not become the parent.
			ctx, outer := tr.Start(context.Background(), "outer")
			start := time.Now().Add(-time.Second)
			tr.IngestSpan(ctx, "ingest", key, tt.stored, trace.WithTimestamp(start)).End()
			outer.End()

			spans := rec.Ended()
			require.Len(t, spans, 2)
			s := spans[0]
			require.Equal(t, "ingest", s.Name())
			require.Equal(t, EventTraceID(key), s.SpanContext().TraceID())
			require.WithinDuration(t, start, s.StartTime(), time.Millisecond)
			if tt.wantRoot {
				require.Equal(t, IngestSpanID(key), s.SpanContext().SpanID())
				require.False(t, s.Parent().IsValid())
			} else {
				require.NotEqual(t, IngestSpanID(key), s.SpanContext().SpanID())
				require.Equal(t, IngestSpanID(key), s.Parent().SpanID())
			}
		})
	}
}

func TestStartInEventAndInject(t *testing.T) {
	tr, rec := newTestTracer(t, 1)
	key := event.MsgKey("9")
	ctx, span := tr.StartInEvent(context.Background(), "attempt", key)
	h := http.Header{}
	Inject(ctx, h)
	span.End()

	got := rec.Ended()
	require.Len(t, got, 1)
	require.Equal(t, IngestSpanID(key), got[0].Parent().SpanID())
	sc := got[0].SpanContext()
	require.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", h.Get("traceparent"))

	link, ok := IncomingLink(h)
	require.True(t, ok)
	require.Equal(t, sc.TraceID(), link.SpanContext.TraceID())
	_, ok = IncomingLink(http.Header{"Traceparent": {"garbage"}})
	require.False(t, ok)
}

// Sampling follows the trace id, so an event's ingest and its attempts
// (made perhaps by another instance) are kept or dropped together, and a
// sampled-out attempt still sends a traceparent.
func TestSamplingIsPerEvent(t *testing.T) {
	tr, rec := newTestTracer(t, 0.5)
	var kept, dropped int
	for i := range 200 {
		key := event.MsgKey(string(rune('a'+i%26)) + time.Duration(i).String())
		root := tr.IngestSpan(context.Background(), "ingest", key, true)
		ctx, child := tr.StartInEvent(context.Background(), "attempt", key)
		require.Equal(t, root.SpanContext().IsSampled(), child.SpanContext().IsSampled(), "key %s", key)
		h := http.Header{}
		Inject(ctx, h)
		require.NotEmpty(t, h.Get("traceparent"))
		if root.SpanContext().IsSampled() {
			kept++
		} else {
			dropped++
		}
		root.End()
		child.End()
	}
	require.Positive(t, kept)
	require.Positive(t, dropped)
	require.Len(t, rec.Ended(), 2*kept)
}

func TestNilIsOff(t *testing.T) {
	p, err := New(context.Background(), Options{Enabled: false, Endpoint: "http://127.0.0.1:1"})
	require.NoError(t, err)
	require.Nil(t, p)
	tr := p.Tracer("x")
	require.False(t, tr.Enabled())
	ctx, span := tr.StartInEvent(context.Background(), "attempt", event.MsgKey("1"))
	require.False(t, span.IsRecording())
	h := http.Header{}
	Inject(ctx, h)
	require.Empty(t, h, "no traceparent when tracing is off")
	require.False(t, tr.IngestSpan(ctx, "ingest", event.MsgKey("1"), true).IsRecording())
	require.NoError(t, p.Shutdown(context.Background()))
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{Enabled: true, SampleRatio: 1.5},
		{Enabled: true, SampleRatio: -0.1},
		{Enabled: true, SampleRatio: 1, Endpoint: "collector:4318"},
	} {
		_, err := New(context.Background(), o)
		require.Error(t, err, "%+v", o)
	}
}
