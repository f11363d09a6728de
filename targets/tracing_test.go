package targets

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

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

// A retried delivery gives two delivery.attempt spans in the event's trace,
// children of its ingest span, and each request carries the traceparent of
// its own attempt's span.
func TestAttemptSpansAndTraceparent(t *testing.T) {
	rec := newRecorder(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	spans := tracetest.NewSpanRecorder()
	p, err := tracing.NewWithProcessor(tracing.Options{SampleRatio: 1}, spans)
	require.NoError(t, err)
	clock := newFakeClock()
	st := newFakeStore(clock.Now)
	h := newHarness(t, st, Options{
		Targets: []Target{testTarget("crm", rec.URL)}, BackoffInitial: time.Second, Tracer: p.Tracer("targets"),
	})
	key := event.MsgKey("77")
	st.add("crm", key, []byte(`{"tip":"msg"}`), event.SourceReconcile)
	ctx := context.Background()

	_, err = h.d.DeliverDue(ctx, "crm")
	require.NoError(t, err)
	clock.Advance(time.Hour)
	_, err = h.d.DeliverDue(ctx, "crm")
	require.NoError(t, err)
	got := []received{rec.next(t, 5*time.Second), rec.next(t, 5*time.Second)}

	ended := spans.Ended()
	require.Len(t, ended, 2)
	want := []struct {
		status int
		result string
		code   string
	}{{503, "retry", "http_503"}, {200, "delivered", ""}}
	for i, s := range ended {
		require.Equal(t, "delivery.attempt", s.Name())
		require.Equal(t, trace.SpanKindClient, s.SpanKind())
		sc := s.SpanContext()
		require.Equal(t, tracing.EventTraceID(key), sc.TraceID(), "in the event's trace")
		require.Equal(t, tracing.IngestSpanID(key), s.Parent().SpanID(), "a child of the ingest span")
		a := spanAttrs(s)
		require.Equal(t, "crm", a["relay.target"].AsString())
		require.Equal(t, int64(i+1), a["relay.attempt"].AsInt64())
		require.Equal(t, int64(want[i].status), a["http.response.status_code"].AsInt64())
		require.Equal(t, want[i].result, a["relay.result"].AsString())
		require.Equal(t, want[i].code, a["relay.error_code"].AsString())
		require.Equal(t, "reconcile", a["relay.source"].AsString())
		if want[i].result == "delivered" {
			require.Equal(t, codes.Unset, s.Status().Code)
		} else {
			require.Equal(t, codes.Error, s.Status().Code)
		}
		require.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", got[i].header.Get("traceparent"),
			"attempt %d sends its own span as the parent", i+1)
	}
}

func TestTraceparentOnlyWhenTracing(t *testing.T) {
	tests := []struct {
		name      string
		ratio     float64
		enabled   bool
		wantSpans int
		wantFlags string // "" when no traceparent is expected
	}{
		{"tracing off: no header, no spans", 0, false, 0, ""},
		// A sampled-out event still tells the target its trace id.
		{"sampled out: header without the sampled flag", 0, true, 0, "00"},
		{"sampled: header with the flag", 1, true, 1, "01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, nil)
			spans := tracetest.NewSpanRecorder()
			var tr *tracing.Tracer
			if tt.enabled {
				p, err := tracing.NewWithProcessor(tracing.Options{SampleRatio: tt.ratio}, spans)
				require.NoError(t, err)
				tr = p.Tracer("targets")
			}
			st := newFakeStore(newFakeClock().Now)
			h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}, Tracer: tr})
			key := event.MsgKey("5")
			st.add("crm", key, []byte(`{}`), event.SourceWebhook)
			_, err := h.d.DeliverDue(context.Background(), "crm")
			require.NoError(t, err)
			got := rec.next(t, 5*time.Second)

			require.Len(t, spans.Ended(), tt.wantSpans)
			tp := got.header.Get("traceparent")
			if tt.wantFlags == "" {
				require.Empty(t, tp)
				require.Empty(t, got.header.Values("tracestate"))
				return
			}
			require.Regexp(t, "^00-"+tracing.EventTraceID(key).String()+"-[0-9a-f]{16}-"+tt.wantFlags+"$", tp)
		})
	}
}
