package relay_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/tracing"
)

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestWebhookIngestSpan(t *testing.T) {
	key := event.MsgKey("1234567")
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name    string
		ingest  func(ctx context.Context, ev event.Event) (bool, error)
		body    string
		header  http.Header
		status  int
		inEvent bool // in the event's trace
		root    bool // the event's root span, with the derived id
		dup     bool
		failed  bool
	}{
		{name: "first time: the root of the event's trace", body: msgBody, status: 200, inEvent: true, root: true},
		{
			name:   "duplicate: a child of the root",
			ingest: func(context.Context, event.Event) (bool, error) { return true, nil },
			body:   msgBody, status: 200, inEvent: true, dup: true,
		},
		{
			name:   "store unavailable: a failed child of the root",
			ingest: func(context.Context, event.Event) (bool, error) { return false, errors.New("disk full") },
			body:   msgBody, status: 503, inEvent: true, failed: true,
		},
		{name: "not JSON: no event, a trace of its own", body: `{`, status: 400},
		{
			name: "a client traceparent is a link, not the parent",
			body: msgBody, status: 200, inEvent: true, root: true,
			header: http.Header{"Traceparent": {"00-" + clientTrace + "-00f067aa0ba902b7-01"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			p, err := tracing.NewWithProcessor(tracing.Options{SampleRatio: 1}, rec)
			require.NoError(t, err)
			h := newHarness(t, func(o *relay.Options) { o.Tracer = p.Tracer("relay") })
			h.ing.fn = tt.ingest

			resp := h.do(t, http.MethodPost, "/webhook/"+testSecret, tt.header, strings.NewReader(tt.body))
			require.Equal(t, tt.status, resp.status)

			spans := rec.Ended()
			require.Len(t, spans, 1)
			s := spans[0]
			require.Equal(t, "webhook.ingest", s.Name())
			require.Equal(t, trace.SpanKindServer, s.SpanKind())
			a := attrs(s)
			require.Equal(t, int64(tt.status), a["http.response.status_code"].AsInt64())
			require.Equal(t, "webhook", a["relay.source"].AsString())
			sc := s.SpanContext()
			require.Equal(t, tt.inEvent, sc.TraceID() == tracing.EventTraceID(key))
			if tt.inEvent {
				require.Equal(t, string(key), a["relay.event_key"].AsString())
				require.Equal(t, "msg", a["relay.kind"].AsString())
				require.Equal(t, tt.dup, a["relay.duplicate"].AsBool())
			}
			if tt.root {
				require.Equal(t, tracing.IngestSpanID(key), sc.SpanID())
				require.False(t, s.Parent().IsValid())
			} else if tt.inEvent {
				require.Equal(t, tracing.IngestSpanID(key), s.Parent().SpanID())
				require.NotEqual(t, tracing.IngestSpanID(key), sc.SpanID())
			}
			if tt.failed {
				require.Equal(t, codes.Error, s.Status().Code)
			} else {
				require.NotEqual(t, codes.Error, s.Status().Code)
			}
			if tt.header != nil {
				require.Len(t, s.Links(), 1)
				require.Equal(t, clientTrace, s.Links()[0].SpanContext.TraceID().String())
			} else {
				require.Empty(t, s.Links())
			}
		})
	}
}
