package targets

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

const testSecret = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz" // "signing-secret-for-tests"

func TestRequestCarriesHeadersAndExactBody(t *testing.T) {
	rec := newRecorder(t, status(http.StatusNoContent))
	st := newFakeStore(time.Now)
	tg := testTarget("crm", rec.URL+"/hooks/wamm")
	tg.Headers = map[string]string{"Authorization": "Bearer crm-token", "X-Tenant": "acme"}
	tg.SigningSecret = testSecret
	h := newHarness(t, st, Options{Targets: []Target{tg}, Workers: 3, UserAgent: "wamm-relay/1.2.3"})

	// Odd spacing, escapes, non-ASCII and a trailing newline: relayed as is.
	body := []byte("{\"tip\":\"msg\",  \"msg_data\":{\"msg_id\":42,\"msg_text\":\"Привет \\u00e9\"}}\n")
	id := st.add("crm", event.MsgKey("42"), body, event.SourceReconcile)

	before := time.Now().Unix()
	n, err := h.d.DeliverDue(context.Background(), "crm")
	require.NoError(t, err)
	require.Equal(t, 1, n)

	got := rec.next(t, 5*time.Second)
	require.Equal(t, http.MethodPost, got.method)
	require.Equal(t, body, got.body)
	require.Equal(t, "application/json", got.header.Get("Content-Type"))
	require.Equal(t, "msg:42", got.header.Get("webhook-id"))
	ts, err := strconv.ParseInt(got.header.Get("webhook-timestamp"), 10, 64)
	require.NoError(t, err)
	require.InDelta(t, before, ts, 5)
	require.Equal(t, "reconcile", got.header.Get("X-Wamm-Relay-Source"))
	require.Equal(t, "1", got.header.Get("X-Wamm-Relay-Attempt"))
	require.Equal(t, "wamm-relay/1.2.3", got.header.Get("User-Agent"))
	require.Equal(t, "Bearer crm-token", got.header.Get("Authorization"))
	require.Equal(t, "acme", got.header.Get("X-Tenant"))

	wh, err := standardwebhooks.NewWebhook(testSecret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(got.body, got.header))

	recs := st.recorded()
	require.Len(t, recs, 1)
	require.Equal(t, id, recs[0].ID)
	require.Equal(t, event.ResultDelivered, recs[0].Out.Result)
	require.Equal(t, http.StatusNoContent, recs[0].Out.StatusCode)
	require.Empty(t, recs[0].Out.Error)

	claims := st.claimRequests()
	require.Len(t, claims, 1)
	require.Equal(t, store.ClaimRequest{
		Target: "crm", Owner: "test-owner", Limit: 3, Lease: 5*time.Second + DefaultLeaseSlack, Now: claims[0].Now,
	}, claims[0])

	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_deliveries_total", map[string]string{"target": "crm", "outcome": "delivered"}))
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_delivery_attempts_total", map[string]string{"target": "crm", "code": "http_204"}))
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_delivery_latency_seconds", map[string]string{"target": "crm"}))
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_delivery_request_duration_seconds", map[string]string{"target": "crm"}))
	require.Equal(t, 0.0, metric(t, h.reg, "wamm_relay_deliveries_in_flight", map[string]string{"target": "crm"}))
	require.Equal(t, 1, h.logs.count(`"msg":"delivery.attempted"`))
	require.Equal(t, 1, h.logs.entries("debug", "delivery.attempted"))
	line := h.logs.entry("delivery.attempted")
	require.Equal(t, "crm", line["target"])
	require.Equal(t, "msg:42", line["event_key"])
	require.EqualValues(t, id, line["delivery_id"])
	require.EqualValues(t, 1, line["attempt"])
	require.EqualValues(t, 204, line["status"])
	require.Equal(t, "http_204", line["code"])
	require.NotEmpty(t, line["duration"])
	require.NotContains(t, line, "next_retry")
}

func TestUnsignedTargetGetsNoSignature(t *testing.T) {
	rec := newRecorder(t, nil)
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}})
	st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	_, err := h.d.DeliverDue(context.Background(), "crm")
	require.NoError(t, err)
	got := rec.next(t, 5*time.Second)
	require.Empty(t, got.header.Values("webhook-signature"))
	require.Equal(t, "webhook", got.header.Get("X-Wamm-Relay-Source"))
	require.Equal(t, DefaultUserAgent, got.header.Get("User-Agent"))
	require.Equal(t, "default", got.header.Get("X-Wamm-Channel"))

	st.add("crm", event.ChannelKey("sales", event.MsgKey("2")), []byte(`{}`), event.SourceWebhook)
	_, err = h.d.DeliverDue(context.Background(), "crm")
	require.NoError(t, err)
	got = rec.next(t, 5*time.Second)
	require.Equal(t, "sales", got.header.Get("X-Wamm-Channel"))
	require.Equal(t, "sales:msg:2", got.header.Get("webhook-id"))
}

func TestRetryIsSignedAfreshWithANewTimestamp(t *testing.T) {
	rec := newRecorder(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	clock := newFakeClock()
	st := newFakeStore(clock.Now)
	tg := testTarget("crm", rec.URL)
	tg.SigningSecret = testSecret
	h := newHarness(t, st, Options{Targets: []Target{tg}, BackoffInitial: 2 * time.Second})
	id := st.add("crm", event.StateKey("42", "delivered"), []byte(`{"tip":"msg_state"}`), event.SourceWebhook)
	ctx := context.Background()

	n, err := h.d.DeliverDue(ctx, "crm")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	first := rec.next(t, 5*time.Second)

	recs := st.recorded()
	require.Len(t, recs, 1)
	require.Equal(t, event.ResultRetry, recs[0].Out.Result)
	require.Equal(t, "http_500", recs[0].Out.Error)
	require.Equal(t, clock.Now().Add(2*time.Second), recs[0].Out.NextAttemptAt)

	// Not due yet.
	n, err = h.d.DeliverDue(ctx, "crm")
	require.NoError(t, err)
	require.Zero(t, n)

	clock.Advance(2 * time.Second)
	n, err = h.d.DeliverDue(ctx, "crm")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	second := rec.next(t, 5*time.Second)

	require.Equal(t, "1", first.header.Get("X-Wamm-Relay-Attempt"))
	require.Equal(t, "2", second.header.Get("X-Wamm-Relay-Attempt"))
	require.Equal(t, strconv.FormatInt(clock.Now().Add(-2*time.Second).Unix(), 10), first.header.Get("webhook-timestamp"))
	require.Equal(t, strconv.FormatInt(clock.Now().Unix(), 10), second.header.Get("webhook-timestamp"))
	require.NotEqual(t, first.header.Get("webhook-signature"), second.header.Get("webhook-signature"))
	wh, err := standardwebhooks.NewWebhook(testSecret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(first.body, first.header))
	require.NoError(t, wh.Verify(second.body, second.header))

	row := st.row(id)
	require.Equal(t, event.StatusDelivered, row.d.Status)
	require.Equal(t, 2, row.d.Attempts)
	require.Equal(t, 1, h.logs.entries("warning", "delivery.attempted"))
	require.Equal(t, 1, h.logs.count(`"next_retry"`))
	line := h.logs.entry("delivery.attempted")
	require.Equal(t, "http_500", line["code"])
	require.Equal(t, clock.Now().UTC().Format(time.RFC3339Nano), line["next_retry"])
}

func TestRetryAfterDelaysTheNextAttempt(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter func(now time.Time) string
		wantDelay  time.Duration
	}{
		{"429 with seconds", 429, func(time.Time) string { return "120" }, 120 * time.Second},
		{"503 with an HTTP date", 503, func(now time.Time) string { return now.Add(10 * time.Minute).UTC().Format(http.TimeFormat) }, 10 * time.Minute},
		{"503 asking for more than backoff_max gets the cap", 503, func(time.Time) string { return "86400" }, time.Hour},
		{"500 Retry-After is not honoured", 500, func(time.Time) string { return "120" }, time.Second},
		{"429 shorter than backoff keeps backoff", 429, func(time.Time) string { return "0" }, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			rec := newRecorder(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", tt.retryAfter(clock.Now()))
				w.WriteHeader(tt.status)
			})
			st := newFakeStore(clock.Now)
			h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}, BackoffMax: time.Hour})
			st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

			_, err := h.d.DeliverDue(context.Background(), "crm")
			require.NoError(t, err)
			recs := st.recorded()
			require.Len(t, recs, 1)
			require.Equal(t, event.ResultRetry, recs[0].Out.Result)
			require.Equal(t, tt.wantDelay, recs[0].Out.NextAttemptAt.Sub(recs[0].Out.At))
		})
	}
}

func TestGoneIsDeadAtOnce(t *testing.T) {
	rec := newRecorder(t, status(http.StatusGone))
	clock := newFakeClock()
	st := newFakeStore(clock.Now)
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}})
	id := st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	_, err := h.d.DeliverDue(context.Background(), "crm")
	require.NoError(t, err)
	clock.Advance(24 * time.Hour)
	n, err := h.d.DeliverDue(context.Background(), "crm")
	require.NoError(t, err)
	require.Zero(t, n)

	require.EqualValues(t, 1, rec.calls.Load())
	recs := st.recorded()
	require.Len(t, recs, 1)
	require.Equal(t, event.Outcome{Result: event.ResultDead, StatusCode: 410, Error: "http_410", At: recs[0].Out.At}, recs[0].Out)
	require.Equal(t, event.StatusDead, st.row(id).d.Status)
	require.Equal(t, 1, h.logs.entries("error", "delivery.attempted"))
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_deliveries_total", map[string]string{"target": "crm", "outcome": "dead"}))
}

func TestRedirectIsNotFollowed(t *testing.T) {
	elsewhere := newRecorder(t, nil)
	rec := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL, http.StatusFound)
	})
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}})
	st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	_, err := h.d.DeliverDue(context.Background(), "crm")
	require.NoError(t, err)

	recs := st.recorded()
	require.Len(t, recs, 1)
	require.Equal(t, event.ResultRetry, recs[0].Out.Result)
	require.Equal(t, "http_302", recs[0].Out.Error)
	require.Equal(t, http.StatusFound, recs[0].Out.StatusCode)
	require.Zero(t, elsewhere.calls.Load())
}

func TestDeadAfterMaxAttempts(t *testing.T) {
	rec := newRecorder(t, status(http.StatusServiceUnavailable))
	clock := newFakeClock()
	st := newFakeStore(clock.Now)
	tg := testTarget("crm", rec.URL)
	tg.MaxAttempts = 3
	h := newHarness(t, st, Options{Targets: []Target{tg}})
	id := st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	for range 4 {
		_, err := h.d.DeliverDue(context.Background(), "crm")
		require.NoError(t, err)
		clock.Advance(3 * time.Hour)
	}

	require.EqualValues(t, 3, rec.calls.Load())
	var results []event.Result
	for _, r := range st.recorded() {
		results = append(results, r.Out.Result)
		require.Equal(t, "http_503", r.Out.Error)
	}
	require.Equal(t, []event.Result{event.ResultRetry, event.ResultRetry, event.ResultDead}, results)
	require.Equal(t, event.StatusDead, st.row(id).d.Status)
	require.Equal(t, 2.0, metric(t, h.reg, "wamm_relay_deliveries_total", map[string]string{"target": "crm", "outcome": "retried"}))
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_deliveries_total", map[string]string{"target": "crm", "outcome": "dead"}))
	require.Equal(t, 3.0, metric(t, h.reg, "wamm_relay_delivery_attempts_total", map[string]string{"target": "crm", "code": "http_503"}))
}

func TestTransportFailures(t *testing.T) {
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refusedURL := "http://" + l.Addr().String() + "/hook?token=url-secret"
	require.NoError(t, l.Close())

	hanging := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		// The server notices a client hanging up only once the body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done() // until the client gives up
	}))
	t.Cleanup(hanging.Close)

	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(tlsSrv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600))

	tests := []struct {
		name       string
		target     Target
		wantResult event.Result
		wantCode   string
	}{
		{"connection refused", Target{URL: refusedURL}, event.ResultRetry, CodeConnectionRefused},
		{"timeout", Target{URL: hanging.URL, Timeout: 200 * time.Millisecond}, event.ResultRetry, CodeTimeout},
		{"unknown certificate authority", Target{URL: tlsSrv.URL}, event.ResultRetry, CodeTLS},
		{"ca_file trusts the private CA", Target{URL: tlsSrv.URL, CAFile: caFile}, event.ResultDelivered, "http_202"},
		{"tls to a plain http server", Target{URL: "https://" + hanging.Listener.Addr().String()}, event.ResultRetry, CodeTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := testTarget("t", tt.target.URL)
			if tt.target.Timeout > 0 {
				tg.Timeout = tt.target.Timeout
			}
			tg.CAFile = tt.target.CAFile
			st := newFakeStore(time.Now)
			h := newHarness(t, st, Options{Targets: []Target{tg}})
			st.add("t", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

			_, err := h.d.DeliverDue(context.Background(), "t")
			require.NoError(t, err)
			recs := st.recorded()
			require.Len(t, recs, 1)
			require.Equal(t, tt.wantResult, recs[0].Out.Result)
			if tt.wantResult == event.ResultDelivered {
				require.Empty(t, recs[0].Out.Error)
			} else {
				require.Equal(t, tt.wantCode, recs[0].Out.Error)
				require.Zero(t, recs[0].Out.StatusCode)
			}
			require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_delivery_attempts_total", map[string]string{"target": "t", "code": tt.wantCode}))
			require.NotContains(t, h.logs.String(), "url-secret")
		})
	}
}

func TestFailingTargetRetriesWhileHealthyTargetDelivers(t *testing.T) {
	succeeded := make(chan struct{})
	flaky := newRecorder(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 3 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
		close(succeeded)
	})
	healthy := newRecorder(t, nil)
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{
		Targets:        []Target{testTarget("flaky", flaky.URL), testTarget("healthy", healthy.URL)},
		BackoffInitial: 200 * time.Millisecond,
		IdlePoll:       time.Hour, // only wake, retry timers and freed slots move the loops
	})
	h.run(t)
	flakyID := st.add("flaky", event.MsgKey("7"), []byte(`{"n":7}`), event.SourceWebhook)
	healthyID := st.add("healthy", event.MsgKey("7"), []byte(`{"n":7}`), event.SourceWebhook)

	// The healthy copy arrives while the flaky one is still backing off
	// (its success needs at least 200+400+800ms of backoff).
	got := healthy.next(t, 5*time.Second)
	require.Equal(t, []byte(`{"n":7}`), got.body)
	select {
	case <-succeeded:
		t.Fatal("the flaky target succeeded before the healthy one received its copy")
	default:
	}

	select {
	case <-succeeded:
	case <-time.After(15 * time.Second):
		t.Fatal("the flaky target never got the delivery")
	}
	require.Eventually(t, func() bool {
		return st.row(flakyID).d.Status == event.StatusDelivered && st.row(healthyID).d.Status == event.StatusDelivered
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 4, st.row(flakyID).d.Attempts)
	require.Equal(t, 1, st.row(healthyID).d.Attempts)
}

func TestHangingTargetDoesNotDelayOthers(t *testing.T) {
	release := make(chan struct{})
	hanging := newRecorder(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	healthy := newRecorder(t, nil)
	st := newFakeStore(time.Now)
	hang := testTarget("hanging", hanging.URL)
	hang.Timeout = time.Minute
	h := newHarness(t, st, Options{
		Targets:      []Target{hang, testTarget("healthy", healthy.URL)},
		Workers:      2,
		IdlePoll:     time.Hour,
		DrainTimeout: 50 * time.Millisecond,
	})
	stop := h.run(t)
	for i := range 5 {
		key := event.MsgKey(strconv.Itoa(i))
		st.add("hanging", key, []byte(`{}`), event.SourceWebhook)
		st.add("healthy", key, []byte(`{}`), event.SourceWebhook)
	}

	for range 5 {
		healthy.next(t, 5*time.Second)
	}
	require.Eventually(t, func() bool {
		return metric(t, h.reg, "wamm_relay_deliveries_total", map[string]string{"target": "healthy", "outcome": "delivered"}) == 5
	}, 5*time.Second, 10*time.Millisecond)
	// The hanging target holds exactly its two worker slots.
	require.Eventually(t, func() bool { return hanging.calls.Load() == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 2.0, metric(t, h.reg, "wamm_relay_deliveries_in_flight", map[string]string{"target": "hanging"}))

	stop(10 * time.Second)
	close(release)
	require.Len(t, st.releasedIDs(), 2)
}

func TestWakeTriggersImmediateDelivery(t *testing.T) {
	rec := newRecorder(t, nil)
	st := newFakeStore(time.Now)
	idle := make(chan struct{}, 1)
	st.onNextDue = func() {
		select {
		case idle <- struct{}{}:
		default:
		}
	}
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}, IdlePoll: time.Hour})
	h.run(t)

	// The loop found nothing and went idle, with an hour to the next poll.
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop never went idle")
	}
	st.add("crm", event.MsgKey("1"), []byte(`{"woken":true}`), event.SourceWebhook)
	got := rec.next(t, 5*time.Second)
	require.Equal(t, []byte(`{"woken":true}`), got.body)
}

func TestShutdownReleasesWorkInFlight(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	rec := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before the server closes
	st := newFakeStore(time.Now)
	tg := testTarget("crm", rec.URL)
	tg.Timeout = time.Minute
	h := newHarness(t, st, Options{Targets: []Target{tg}, DrainTimeout: 100 * time.Millisecond})
	stop := h.run(t)
	id := st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)
	<-entered

	began := time.Now()
	stop(10 * time.Second)
	require.Less(t, time.Since(began), 5*time.Second, "the drain must not wait for the target's timeout")

	require.Equal(t, []int64{id}, st.releasedIDs())
	require.Empty(t, st.recorded())
	row := st.row(id)
	require.Equal(t, event.StatusPending, row.d.Status)
	require.Zero(t, row.d.Attempts)
	require.Empty(t, row.owner)
	require.Equal(t, 1, h.logs.count(`"msg":"delivery.released"`))
	require.Zero(t, h.logs.count(`"msg":"delivery.attempted"`))
}

func TestShutdownLetsAttemptsFinishWithinDrainTimeout(t *testing.T) {
	entered := make(chan struct{}, 1)
	proceed := make(chan struct{})
	rec := newRecorder(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-proceed
		w.WriteHeader(http.StatusOK)
	})
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}, DrainTimeout: time.Minute})
	stop := h.run(t)
	id := st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)
	<-entered

	stopped := make(chan struct{})
	go func() {
		stop(30 * time.Second)
		close(stopped)
	}()
	// Run waits for the attempt in flight ...
	select {
	case <-stopped:
		t.Fatal("Run returned before the attempt in flight finished")
	case <-time.After(100 * time.Millisecond):
	}
	// ... which completes and is recorded, although Run's context is done.
	close(proceed)
	<-stopped
	require.Empty(t, st.releasedIDs())
	require.Equal(t, event.StatusDelivered, st.row(id).d.Status)
}

func TestClaimedButUnstartedIsReleased(t *testing.T) {
	rec := newRecorder(t, nil)
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}})
	id := st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	// Shutdown has begun (soft is done) between the claim and the attempt.
	soft, cancel := context.WithCancel(context.Background())
	p := h.d.byName["crm"]
	var wg sync.WaitGroup
	st.claimErr = func() error { cancel(); return nil }
	n, _, err := p.claimAndStart(soft, context.Background(), &wg)
	wg.Wait()
	require.NoError(t, err)
	require.Equal(t, 1, n)

	require.Zero(t, rec.calls.Load())
	require.Empty(t, st.recorded())
	require.Equal(t, []int64{id}, st.releasedIDs())
	require.Zero(t, st.row(id).d.Attempts)
	require.Len(t, p.sem, 0, "the worker slot is returned")
}

func TestStoreErrorsAreLoggedOncePerStreak(t *testing.T) {
	rec := newRecorder(t, nil)
	st := newFakeStore(time.Now)
	var mu sync.Mutex
	failures := 4
	st.claimErr = func() error {
		mu.Lock()
		defer mu.Unlock()
		if failures == 0 {
			return nil
		}
		failures--
		return errors.New("database is locked")
	}
	st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}})
	h.run(t)

	rec.next(t, 10*time.Second)
	// The attempt may reach the target before the loop logs its recovery.
	require.Eventually(t, func() bool { return h.logs.count("store recovered after 4 errors") == 1 },
		5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, h.logs.count("store unavailable"))
	require.Equal(t, 1, h.logs.count("database is locked"))
}

func TestRecordFailureLeavesTheLeaseToExpire(t *testing.T) {
	rec := newRecorder(t, nil)
	clock := newFakeClock()
	st := newFakeStore(clock.Now)
	var mu sync.Mutex
	failNext := true
	st.recordErr = func(int64) error {
		mu.Lock()
		defer mu.Unlock()
		if failNext {
			failNext = false
			return errors.New("disk I/O error")
		}
		return nil
	}
	tg := testTarget("crm", rec.URL)
	h := newHarness(t, st, Options{Targets: []Target{tg}})
	id := st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)
	ctx := context.Background()

	n, err := h.d.DeliverDue(ctx, "crm")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, st.recorded())
	require.Equal(t, 1, h.logs.count("record outcome failed"))

	// Still leased: nobody may take it before the lease expires.
	n, err = h.d.DeliverDue(ctx, "crm")
	require.NoError(t, err)
	require.Zero(t, n)

	clock.Advance(tg.Timeout + DefaultLeaseSlack)
	n, err = h.d.DeliverDue(ctx, "crm")
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// At least once: the target saw it twice, both as attempt 1 because the
	// first attempt was never recorded.
	require.Equal(t, "1", rec.next(t, time.Second).header.Get("X-Wamm-Relay-Attempt"))
	require.Equal(t, "1", rec.next(t, time.Second).header.Get("X-Wamm-Relay-Attempt"))
	require.Equal(t, event.StatusDelivered, st.row(id).d.Status)
}

func TestSecretsNeverLogged(t *testing.T) {
	const (
		headerValue = "Bearer hdr-value-TOPSECRET"
		secretKey   = "c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz"
	)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + l.Addr().String() + "/?token=url-TOPSECRET"
	require.NoError(t, l.Close())

	ok := newRecorder(t, nil)
	failing := newRecorder(t, status(http.StatusInternalServerError))
	gone := newRecorder(t, status(http.StatusGone))
	var targets []Target
	for _, tg := range []Target{
		testTarget("ok", ok.URL), testTarget("failing", failing.URL),
		testTarget("gone", gone.URL), testTarget("refused", refused),
	} {
		tg.Headers = map[string]string{"Authorization": headerValue}
		tg.SigningSecret = "whsec_" + secretKey
		targets = append(targets, tg)
	}
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: targets})
	for _, tg := range targets {
		st.add(tg.Name, event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)
		_, err := h.d.DeliverDue(context.Background(), tg.Name)
		require.NoError(t, err)
	}

	logs := h.logs.String()
	require.Equal(t, 4, h.logs.count(`"msg":"delivery.attempted"`))
	require.Contains(t, logs, "connection refused")
	for _, secret := range []string{"TOPSECRET", secretKey, "signing-secret-for-tests"} {
		require.NotContains(t, logs, secret)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	log, _ := newTestLogger()
	valid := func() Options {
		return Options{
			Targets: []Target{testTarget("crm", "http://crm.example/")},
			Store:   newFakeStore(time.Now), Owner: "o", Logger: log,
		}
	}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"no store", func(o *Options) { o.Store = nil }, "Options.Store"},
		{"no logger", func(o *Options) { o.Logger = nil }, "Options.Logger"},
		{"no owner", func(o *Options) { o.Owner = "" }, "Options.Owner"},
		{"negative workers", func(o *Options) { o.Workers = -1 }, "Options.Workers"},
		{"max below initial", func(o *Options) { o.BackoffInitial, o.BackoffMax = time.Minute, time.Second }, "Options.BackoffMax"},
		{"negative drain", func(o *Options) { o.DrainTimeout = -time.Second }, "Options.DrainTimeout"},
		{"bad target", func(o *Options) { o.Targets[0].URL = "" }, `target "crm": url`},
		{"missing ca file", func(o *Options) { o.Targets[0].CAFile = "/nonexistent/ca.pem" }, `target "crm": ca_file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.mutate(&o)
			_, err := New(o)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}

	t.Run("defaults", func(t *testing.T) {
		d, err := New(valid())
		require.NoError(t, err)
		require.Equal(t, DefaultWorkers, cap(d.byName["crm"].sem))
		require.Equal(t, 5*time.Second+DefaultLeaseSlack, d.byName["crm"].lease)
		require.Equal(t, []string{"crm"}, d.Table().Names())
	})

	t.Run("ca file without certificates", func(t *testing.T) {
		o := valid()
		o.Targets[0].CAFile = filepath.Join(t.TempDir(), "empty.pem")
		require.NoError(t, os.WriteFile(o.Targets[0].CAFile, []byte("not a pem"), 0o600))
		_, err := New(o)
		require.ErrorContains(t, err, "no PEM certificate found")
	})
}

func TestRunTwiceIsRefused(t *testing.T) {
	st := newFakeStore(time.Now)
	idle := make(chan struct{}, 1)
	st.onNextDue = func() {
		select {
		case idle <- struct{}{}:
		default:
		}
	}
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", "http://127.0.0.1:1/")}})
	h.run(t)
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop never went idle")
	}
	require.ErrorContains(t, h.d.Run(context.Background()), "already running")
}

// A full disk is the one store failure that ends with the same write
// succeeding: the outcome is kept and written once there is space, so the
// delivery the target already took is not sent again at the lease's end.
func TestRecordOnFullDiskIsRetried(t *testing.T) {
	rec := newRecorder(t, nil)
	clock := newFakeClock()
	st := newFakeStore(clock.Now)
	var mu sync.Mutex
	full := 3
	st.recordErr = func(int64) error {
		mu.Lock()
		defer mu.Unlock()
		if full == 0 {
			return nil
		}
		full--
		return fmt.Errorf("record attempt: %w", store.ErrDiskFull)
	}
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", rec.URL)}})
	id := st.add("crm", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	n, err := h.d.DeliverDue(context.Background(), "crm")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Len(t, st.recorded(), 1, "recorded on the fourth try")
	require.Equal(t, event.StatusDelivered, st.row(id).d.Status)
	require.Equal(t, 1, h.logs.count("the store's disk is full"), "one line per outcome, not per try")
	require.Equal(t, 1, h.logs.count("outcome recorded once the store had space again"))
	require.Zero(t, h.logs.count("record outcome failed"))

	clock.Advance(time.Hour)
	n, err = h.d.DeliverDue(context.Background(), "crm")
	require.NoError(t, err)
	require.Zero(t, n, "nothing to send again")
	rec.next(t, time.Second)
	require.Empty(t, rec.got, "the target saw it once")
}
