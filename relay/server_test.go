package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/store"
)

func TestNewValidatesOptions(t *testing.T) {
	valid := func() relay.Options {
		return relay.Options{Listen: ":0", Ingester: &fakeIngester{}, Logger: logrus.New()}
	}
	tests := []struct {
		name    string
		mutate  func(o *relay.Options)
		wantErr string // "" means valid
	}{
		{name: "defaults are enough", mutate: func(*relay.Options) {}},
		{name: "no listen address", mutate: func(o *relay.Options) { o.Listen = "" }, wantErr: "Listen"},
		{name: "no ingester", mutate: func(o *relay.Options) { o.Ingester = nil }, wantErr: "Ingester"},
		{name: "no logger", mutate: func(o *relay.Options) { o.Logger = nil }, wantErr: "Logger"},
		{name: "admin token without admin", mutate: func(o *relay.Options) { o.AdminToken = "t" }, wantErr: "Admin"},
		{name: "relative webhook path", mutate: func(o *relay.Options) { o.WebhookPath = "webhook" }, wantErr: "WebhookPath"},
		{name: "webhook path with trailing slash", mutate: func(o *relay.Options) { o.WebhookPath = "/webhook/" }, wantErr: "WebhookPath"},
		{name: "webhook path is root", mutate: func(o *relay.Options) { o.WebhookPath = "/" }, wantErr: "WebhookPath"},
		{name: "webhook path with a wildcard", mutate: func(o *relay.Options) { o.WebhookPath = "/hooks/:x" }, wantErr: "WebhookPath"},
		{name: "webhook path shadows healthz", mutate: func(o *relay.Options) { o.WebhookPath = "/healthz" }, wantErr: "WebhookPath"},
		{name: "webhook path under the admin API", mutate: func(o *relay.Options) { o.WebhookPath = "/api/v1/hook" }, wantErr: "WebhookPath"},
		{name: "nested webhook path is fine", mutate: func(o *relay.Options) { o.WebhookPath = "/hooks/wamm" }},
		{name: "secret with a slash", mutate: func(o *relay.Options) { o.WebhookSecret = "a/b" }, wantErr: "WebhookSecret"},
		{name: "negative read timeout", mutate: func(o *relay.Options) { o.ReadTimeout = -time.Second }, wantErr: "ReadTimeout"},
		{name: "negative log sample interval", mutate: func(o *relay.Options) { o.LogSampleInterval = -time.Second }, wantErr: "LogSampleInterval"},
		{name: "negative max in flight", mutate: func(o *relay.Options) { o.MaxInFlight = -1 }, wantErr: "MaxInFlight"},
		{name: "negative body limit", mutate: func(o *relay.Options) { o.MaxBodyBytes = -1 }, wantErr: "MaxBodyBytes"},
		{name: "ingest timeout not below write timeout", mutate: func(o *relay.Options) {
			o.IngestTimeout, o.WriteTimeout = 10*time.Second, 10*time.Second
		}, wantErr: "IngestTimeout"},
		{name: "bad trusted proxy", mutate: func(o *relay.Options) { o.TrustedProxies = []string{"10.0.0.0/33"} }, wantErr: "TrustedProxies"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.mutate(&o)
			s, err := relay.New(o)
			if tc.wantErr == "" {
				require.NoError(t, err)
				require.NotNil(t, s)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestHealthzAndReadyz(t *testing.T) {
	var storeErr atomic.Pointer[error]
	h := newHarness(t, func(o *relay.Options) {
		o.Ready = func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("ready check without deadline")
			}
			if p := storeErr.Load(); p != nil {
				return *p
			}
			return nil
		}
	})

	require.Equal(t, 200, h.do(t, http.MethodGet, "/healthz", nil, nil).status)
	require.Equal(t, 200, h.do(t, http.MethodGet, "/readyz", nil, nil).status)

	down := errors.New("connection refused")
	storeErr.Store(&down)
	for range 3 {
		resp := h.do(t, http.MethodGet, "/readyz", nil, nil)
		require.Equal(t, 503, resp.status)
		require.JSONEq(t, `{"ok":false,"error":"store unreachable"}`, resp.body)
	}
	require.Len(t, h.logs.find(t, "readiness failing: store unreachable"), 1, "logged once per change, not per probe")
	require.Equal(t, 200, h.do(t, http.MethodGet, "/healthz", nil, nil).status, "liveness ignores the store")

	storeErr.Store(nil)
	require.Equal(t, 200, h.do(t, http.MethodGet, "/readyz", nil, nil).status)
	require.Len(t, h.logs.find(t, "readiness recovered: store reachable"), 1)

	// A full disk: reachable, but every write fails. Say so.
	full := fmt.Errorf("ping store: write: %w", store.ErrDiskFull)
	storeErr.Store(&full)
	resp := h.do(t, http.MethodGet, "/readyz", nil, nil)
	require.Equal(t, 503, resp.status)
	require.JSONEq(t, `{"ok":false,"error":"store disk full"}`, resp.body)
	require.Len(t, h.logs.find(t, "readiness failing: store disk full"), 1)
	storeErr.Store(nil)
	require.Equal(t, 200, h.do(t, http.MethodGet, "/readyz", nil, nil).status)

	h.srv.SetDraining()
	resp = h.do(t, http.MethodGet, "/readyz", nil, nil)
	require.Equal(t, 503, resp.status)
	require.JSONEq(t, `{"ok":false,"error":"draining"}`, resp.body)
	require.Equal(t, 200, h.do(t, http.MethodGet, "/healthz", nil, nil).status)
}

// startRun runs srv.Run on a real listener and returns its address, the
// cancel of Run's context and Run's result.
func startRun(t *testing.T, srv *relay.Server) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	addr, err := srv.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		done <- srv.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return "http://" + addr.String(), cancel, done
}

func TestRunDrainsInFlightRequestOnCancel(t *testing.T) {
	h := newHarness(t, nil)
	entered := make(chan struct{})
	release := make(chan struct{})
	h.ing.fn = func(context.Context, event.Event) (bool, error) {
		close(entered)
		<-release
		return false, nil
	}
	base, cancel, runDone := startRun(t, h.srv)

	inflight := make(chan response, 1)
	go func() {
		inflight <- doRequest(t, base, http.MethodPost, "/webhook/"+testSecret, nil, strings.NewReader(msgBody))
	}()
	<-entered

	cancel()
	// Readiness goes 503 while the drain waits for the request.
	require.Eventually(t, func() bool {
		rec := httptest.NewRecorder()
		h.srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code == http.StatusServiceUnavailable
	}, 5*time.Second, 5*time.Millisecond)
	select {
	case err := <-runDone:
		t.Fatalf("Run returned (%v) while a request was in flight", err)
	default:
	}

	close(release)
	resp := <-inflight
	require.Equal(t, 200, resp.status)
	require.JSONEq(t, `{"ok":true,"duplicate":false}`, resp.body)
	require.NoError(t, <-runDone)
	_, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.Error(t, err, "the listener is closed after the drain")
}

// With a drain delay the listener stays open after the stop, so a load
// balancer that has not yet seen /readyz fail still gets its webhooks taken.
func TestRunKeepsServingForTheDrainDelay(t *testing.T) {
	// Long enough for the checks below on a loaded machine; Run then ends.
	const delay = 5 * time.Second
	h := newHarness(t, func(o *relay.Options) { o.DrainDelay = delay })
	base, cancel, runDone := startRun(t, h.srv)
	cancel()

	// Over the real listener: /readyz fails, and a webhook is still taken.
	require.Eventually(t, func() bool {
		return doRequest(t, base, http.MethodGet, "/readyz", nil, nil).status == http.StatusServiceUnavailable
	}, 5*time.Second, 5*time.Millisecond)
	resp := doRequest(t, base, http.MethodPost, "/webhook/"+testSecret, nil, strings.NewReader(msgBody))
	require.Equal(t, 200, resp.status, "the listener is open during the drain delay")
	require.JSONEq(t, `{"ok":true,"duplicate":false}`, resp.body)
	select {
	case err := <-runDone:
		t.Fatalf("Run returned (%v) within its drain delay", err)
	default:
	}
	select {
	case err := <-runDone:
		require.NoError(t, err)
	case <-time.After(delay + 10*time.Second):
		t.Fatal("Run did not end after its drain delay")
	}
	_, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.Error(t, err, "the listener is closed after the drain")
}

func TestRunReturnsErrorWhenDrainTimesOut(t *testing.T) {
	h := newHarness(t, func(o *relay.Options) { o.ShutdownTimeout = 50 * time.Millisecond })
	entered := make(chan struct{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h.ing.fn = func(context.Context, event.Event) (bool, error) {
		close(entered)
		<-release
		return false, nil
	}
	addr, err := h.srv.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- h.srv.Run(ctx) }()

	clientDone := make(chan error, 1)
	go func() {
		resp, err := http.Post("http://"+addr.String()+"/webhook/"+testSecret, "application/json", strings.NewReader(msgBody))
		if err == nil {
			resp.Body.Close()
		}
		clientDone <- err
	}()
	<-entered
	cancel()

	err = <-runDone
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "drain http server")
	require.Error(t, <-clientDone, "the request past the bound is cut off")
}

func TestRunTwiceFails(t *testing.T) {
	h := newHarness(t, nil)
	base, cancel, done := startRun(t, h.srv)
	// Serving proves the first Run has started.
	require.Equal(t, 200, doRequest(t, base, http.MethodGet, "/healthz", nil, nil).status)
	require.ErrorContains(t, h.srv.Run(context.Background()), "already run")
	cancel()
	require.NoError(t, <-done)
}

// TestSlowHeadersAreCutOff: a client that never finishes its headers loses
// the connection after ReadHeaderTimeout.
func TestSlowHeadersAreCutOff(t *testing.T) {
	h := newHarness(t, func(o *relay.Options) { o.ReadHeaderTimeout = 100 * time.Millisecond })
	base, _, _ := startRun(t, h.srv)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /webhook HTTP/1.1\r\nHost: relay\r\nContent-Type: appl")
	require.NoError(t, err)

	// Far beyond the header timeout: hitting this deadline means the server
	// kept the connection open.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(conn)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the server did not close the slow connection")
	require.Empty(t, h.ing.received())
}

func TestMetricsRouteNeedsGatherer(t *testing.T) {
	h := newHarness(t, nil)
	require.Equal(t, 404, h.do(t, http.MethodGet, "/metrics", nil, nil).status)
}
