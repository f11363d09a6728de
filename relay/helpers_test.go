package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/store"
)

const (
	testSecret = "s3cret-Webhook-Value-42"
	testToken  = "admin-Token-Value-77"
	msgBody    = `{"tip":"msg","msg_data":{"msg_id":1234567,"from_me":0,"phone":"79001234567","state":"received"}}`
)

// fakeIngester records what reached it and answers through fn (nil: accepted).
type fakeIngester struct {
	fn func(ctx context.Context, ev event.Event) (bool, error)

	mu     sync.Mutex
	events []event.Event
}

func (f *fakeIngester) Ingest(ctx context.Context, ev event.Event) (bool, error) {
	f.mu.Lock()
	f.events = append(f.events, ev)
	f.mu.Unlock()
	if f.fn == nil {
		return false, nil
	}
	return f.fn(ctx, ev)
}

func (f *fakeIngester) received() []event.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event.Event(nil), f.events...)
}

// fakeAdmin answers through its function fields.
type fakeAdmin struct {
	list   func(ctx context.Context, f store.ListFilter) ([]event.Delivery, error)
	replay func(ctx context.Context, r store.ReplayRequest) (int, error)
	stats  func(ctx context.Context) ([]store.TargetStats, error)
}

func (f *fakeAdmin) List(ctx context.Context, lf store.ListFilter) ([]event.Delivery, error) {
	if f.list == nil {
		return nil, nil
	}
	return f.list(ctx, lf)
}

func (f *fakeAdmin) Replay(ctx context.Context, r store.ReplayRequest) (int, error) {
	if f.replay == nil {
		return 0, nil
	}
	return f.replay(ctx, r)
}

func (f *fakeAdmin) TargetStats(ctx context.Context) ([]store.TargetStats, error) {
	if f.stats == nil {
		return nil, nil
	}
	return f.stats(ctx)
}

// QueueStats is TargetStats without what the real stores leave out of it.
func (f *fakeAdmin) QueueStats(ctx context.Context) ([]store.TargetStats, error) {
	st, err := f.TargetStats(ctx)
	out := make([]store.TargetStats, 0, len(st))
	for _, s := range st {
		if s.Pending > 0 || s.Dead > 0 {
			out = append(out, store.TargetStats{Target: s.Target, Pending: s.Pending, Dead: s.Dead, OldestPending: s.OldestPending})
		}
	}
	return out, err
}

// syncBuffer is a log sink safe to read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines parses the JSON log lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

func (b *syncBuffer) find(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range b.lines(t) {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type harness struct {
	srv  *relay.Server
	http *httptest.Server
	ing  *fakeIngester
	logs *syncBuffer
}

// newHarness builds a Server (secret set, admin disabled) behind a real
// httptest server; mutate adjusts the options first.
func newHarness(t *testing.T, mutate func(o *relay.Options)) *harness {
	t.Helper()
	logs := &syncBuffer{}
	logger := logrus.New()
	logger.SetOutput(logs)
	logger.SetLevel(logrus.DebugLevel)
	logger.SetFormatter(&logrus.JSONFormatter{})
	ing := &fakeIngester{}
	opts := relay.Options{
		Listen:        "127.0.0.1:0",
		WebhookPath:   "/webhook",
		WebhookSecret: testSecret,
		MaxBodyBytes:  1024,
		Ingester:      ing,
		Logger:        logger,
		Now:           func() time.Time { return fixedNow },
	}
	if mutate != nil {
		mutate(&opts)
	}
	srv, err := relay.New(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &harness{srv: srv, http: ts, ing: ing, logs: logs}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (h *harness) do(t *testing.T, method, path string, header http.Header, body io.Reader) response {
	t.Helper()
	return doRequest(t, h.http.URL, method, path, header, body)
}

func doRequest(t *testing.T, base, method, path string, header http.Header, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	require.NoError(t, err)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (h *harness) post(t *testing.T, path, body string) response {
	t.Helper()
	return h.do(t, http.MethodPost, path, http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func newDiscardLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
