package app_test

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/tracing"
)

// exportedSpan is what the fake collector keeps of one span.
type exportedSpan struct {
	name, service           string
	traceID, spanID, parent string
}

// fakeCollector is an OTLP/HTTP collector: it decodes every export request
// and keeps the spans.
type fakeCollector struct {
	*httptest.Server

	mu       sync.Mutex
	requests int
	apiKeys  []string
	spans    []exportedSpan
}

func newFakeCollector(t *testing.T) *fakeCollector {
	t.Helper()
	c := &fakeCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.requests++
		c.apiKeys = append(c.apiKeys, r.Header.Get("X-Api-Key"))
		for _, rs := range req.GetResourceSpans() {
			var service string
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					c.spans = append(c.spans, exportedSpan{
						name: s.GetName(), service: service,
						traceID: hex.EncodeToString(s.GetTraceId()),
						spanID:  hex.EncodeToString(s.GetSpanId()),
						parent:  hex.EncodeToString(s.GetParentSpanId()),
					})
				}
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *fakeCollector) snapshot() (int, []string, []exportedSpan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests, append([]string(nil), c.apiKeys...), append([]exportedSpan(nil), c.spans...)
}

// inTrace returns the spans of one trace, by name.
func inTrace(spans []exportedSpan, traceID string) map[string][]exportedSpan {
	out := map[string][]exportedSpan{}
	for _, s := range spans {
		if s.traceID == traceID {
			out[s.name] = append(out[s.name], s)
		}
	}
	return out
}

func tracingConfig(c *fakeCollector) config.Tracing {
	return config.Tracing{
		Enabled: true, Endpoint: c.URL, SampleRatio: 1, ServiceName: "relay-under-test",
		Headers: map[string]string{"X-Api-Key": "collector-key"},
	}
}

// traceIDOf is the trace id of a W3C traceparent.
func traceIDOf(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 {
		return ""
	}
	return parts[1]
}

// A webhook whose first delivery attempt fails: the relay exports, by the
// time it has shut down, one trace holding the ingest span and both attempt
// spans, and each request to the target carried that trace's traceparent.
func TestTracingExportsOneTracePerEvent(t *testing.T) {
	col := newFakeCollector(t)
	tgt := testutil.NewTarget(t)
	var calls sync.Map
	tgt.Respond(func(r *http.Request, _ []byte) int {
		if _, seen := calls.LoadOrStore(r.Header.Get("webhook-id"), true); !seen {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	cfg := testConfig(t, target("crm", tgt.URL))
	cfg.Tracing = tracingConfig(col)
	r := startRelay(t, cfg)

	code, _ := r.post(t, "/webhook", msgBody(501, "received"))
	require.Equal(t, http.StatusOK, code)
	code, body := r.post(t, "/webhook", msgBody(501, "received"))
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"duplicate":true`)
	key := event.MsgKey("501")
	tgt.WaitDelivered(t, waitLong, string(key))
	waitAllDelivered(t, r, 1)

	reqs := tgt.Requests()
	require.Len(t, reqs, 2)
	traceID := tracing.EventTraceID(key).String()
	for _, req := range reqs {
		require.Equal(t, traceID, traceIDOf(req.Header.Get("traceparent")), "every attempt carries the event's trace")
	}

	// Shutdown flushes what the batch processor still holds.
	require.NoError(t, r.stop())
	require.NoError(t, r.app.Close())
	n, keys, spans := col.snapshot()
	require.Positive(t, n, "the exporter sent to the collector")
	for _, k := range keys {
		require.Equal(t, "collector-key", k, "tracing.headers go with every export")
	}
	tr := inTrace(spans, traceID)
	require.Len(t, tr["webhook.ingest"], 2, "the first ingest and the duplicate")
	root := tracing.IngestSpanID(key).String()
	var roots int
	for _, s := range tr["webhook.ingest"] {
		require.Equal(t, "relay-under-test", s.service)
		if s.spanID == root {
			roots++
			require.Empty(t, s.parent, "the ingest that stored the event is the root")
		} else {
			require.Equal(t, root, s.parent, "the duplicate hangs under the root")
		}
	}
	require.Equal(t, 1, roots)
	attempts := tr["delivery.attempt"]
	require.Len(t, attempts, 2, "one span per attempt")
	sent := map[string]bool{}
	for _, req := range reqs {
		sent[strings.Split(req.Header.Get("traceparent"), "-")[2]] = true
	}
	for _, s := range attempts {
		require.Equal(t, root, s.parent)
		require.True(t, sent[s.spanID], "the target saw the attempt's own span as its parent")
	}
}

func TestTracingOffSendsNoTraceparent(t *testing.T) {
	tgt := testutil.NewTarget(t)
	r := startRelay(t, testConfig(t, target("crm", tgt.URL)))
	code, _ := r.post(t, "/webhook", msgBody(502, "received"))
	require.Equal(t, http.StatusOK, code)
	tgt.WaitDelivered(t, waitLong, "msg:502")
	for _, req := range tgt.Requests() {
		require.Empty(t, req.Header.Values("traceparent"))
		require.Empty(t, req.Header.Values("tracestate"))
	}
}

// An event the webhooks missed: the reconciler's ingest is the root of the
// event's trace and the delivery attempt is under it.
func TestTracingReconciledEventSharesItsTrace(t *testing.T) {
	col := newFakeCollector(t)
	tgt := testutil.NewTarget(t)
	env := startRcEnv(t, rcOptions{
		targets: []config.Target{target("crm", tgt.URL, "msg")},
		config:  func(c *config.Config) { c.Tracing = tracingConfig(col) },
	})
	env.waitFirstPass(t)
	m := env.missed(rcChats[2], "lost in transit")
	key := event.MsgKey(m.ID)
	tgt.WaitDelivered(t, waitLong, string(key))
	reqs := tgt.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "reconcile", reqs[0].Header.Get("X-Wamm-Relay-Source"))
	traceID := tracing.EventTraceID(key).String()
	require.Equal(t, traceID, traceIDOf(reqs[0].Header.Get("traceparent")))

	waitAllDelivered(t, env.relay, 1)
	require.NoError(t, env.relay.stop())
	require.NoError(t, env.relay.app.Close())
	_, _, spans := col.snapshot()
	tr := inTrace(spans, traceID)
	root := tracing.IngestSpanID(key).String()
	require.Len(t, tr["reconcile.ingest"], 1)
	require.Equal(t, root, tr["reconcile.ingest"][0].spanID)
	require.Len(t, tr["delivery.attempt"], 1)
	require.Equal(t, root, tr["delivery.attempt"][0].parent)
	require.Empty(t, tr["webhook.ingest"], "the webhook was dropped")
	var passes int
	for _, s := range spans {
		if s.name == "reconcile.pass" {
			passes++
		}
	}
	require.Positive(t, passes)
}

// A collector that hangs at shutdown costs at most the flush bound and a
// warning; the relay still stops cleanly.
func TestTracingHungCollectorDoesNotFailTheStop(t *testing.T) {
	release := make(chan struct{})
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); col.Close() })
	tgt := testutil.NewTarget(t)
	cfg := testConfig(t, target("crm", tgt.URL))
	cfg.Tracing = config.Tracing{Enabled: true, Endpoint: col.URL, SampleRatio: 1, ServiceName: "wamm-relay"}
	r := startRelay(t, cfg)
	code, _ := r.post(t, "/webhook", msgBody(503, "received"))
	require.Equal(t, http.StatusOK, code)
	tgt.WaitDelivered(t, waitLong, "msg:503")

	require.NoError(t, r.stop())
	start := time.Now()
	require.NoError(t, r.app.Close(), "a tracing flush failure is logged, not returned")
	require.Less(t, time.Since(start), 9*time.Second, "the flush is bounded")
	require.Contains(t, r.logs.String(), "spans still buffered at shutdown were not all exported")
}
