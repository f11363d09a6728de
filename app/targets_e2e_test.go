package app_test

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store"
)

// countingServer is a target that counts the requests its handler saw.
type countingServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newCountingServer(t *testing.T, tls bool, h http.HandlerFunc) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.hits.Add(1)
		h(w, r)
	}))
	// Failed handshakes are expected here; keep them off the test output.
	cs.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		cs.StartTLS()
	} else {
		cs.Start()
	}
	t.Cleanup(cs.Close)
	return cs
}

func ok200(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusOK)
}

// waitDelivery waits until the only delivery to target satisfies cond.
func waitDelivery(t *testing.T, r *relayUnderTest, target string, what string, cond func(event.Delivery) bool) event.Delivery {
	t.Helper()
	var last event.Delivery
	require.Eventually(t, func() bool {
		ds, err := r.app.Store().List(context.Background(), store.ListFilter{Target: target})
		if err != nil || len(ds) != 1 {
			return false
		}
		last = ds[0]
		return cond(last)
	}, waitLong, 5*time.Millisecond, "target %s: %s; last seen %+v", target, what, last)
	return last
}

func isDead(d event.Delivery) bool      { return d.Status == event.StatusDead }
func isDelivered(d event.Delivery) bool { return d.Status == event.StatusDelivered }

func TestTargetTLSVerifiedByDefault(t *testing.T) {
	ts := newCountingServer(t, true, ok200)
	tc := target("selfsigned", ts.URL)
	tc.MaxAttempts = 3
	r := startRelay(t, testConfig(t, tc))

	code, _ := r.post(t, "/webhook", msgBody(1, "received"))
	require.Equal(t, http.StatusOK, code)

	d := waitDelivery(t, r, "selfsigned", "dead", isDead)
	require.Equal(t, "tls", d.LastError)
	require.Equal(t, 3, d.Attempts)
	require.Zero(t, d.LastStatusCode)
	require.True(t, d.DeliveredAt.IsZero())
	require.Zero(t, ts.hits.Load(), "an unverified server must never see the request")
}

func TestTargetTLSWithCAFile(t *testing.T) {
	ts := newCountingServer(t, true, ok200)
	caFile := filepath.Join(t.TempDir(), "target-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	require.NoError(t, os.WriteFile(caFile, pemBytes, 0o600))

	tc := target("pinned", ts.URL)
	tc.CAFile = caFile
	r := startRelay(t, testConfig(t, tc))

	code, _ := r.post(t, "/webhook", msgBody(2, "received"))
	require.Equal(t, http.StatusOK, code)
	d := waitDelivery(t, r, "pinned", "delivered", isDelivered)
	require.Equal(t, 1, d.Attempts)
	require.EqualValues(t, 1, ts.hits.Load())
}

func TestTargetRedirectIsNotFollowed(t *testing.T) {
	dest := newCountingServer(t, false, ok200)
	moved := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Redirect(w, r, dest.URL+"/new-home", http.StatusFound)
	})
	tc := target("moved", moved.URL)
	tc.MaxAttempts = 2
	r := startRelay(t, testConfig(t, tc))

	code, _ := r.post(t, "/webhook", msgBody(3, "received"))
	require.Equal(t, http.StatusOK, code)
	d := waitDelivery(t, r, "moved", "dead", isDead)
	require.Equal(t, "http_302", d.LastError)
	require.Equal(t, http.StatusFound, d.LastStatusCode)
	require.Equal(t, 2, d.Attempts)
	require.EqualValues(t, 2, moved.hits.Load())
	require.Zero(t, dest.hits.Load(), "the redirect destination must receive nothing")
}

func TestTargetHugeResponseIsNotRead(t *testing.T) {
	const huge = 50 << 20
	written := make(chan int64, 1)
	ts := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 64<<10)
		var n int64
		for n < huge {
			m, err := w.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		written <- n
	})
	r := startRelay(t, testConfig(t, target("chatty", ts.URL)))

	code, _ := r.post(t, "/webhook", msgBody(4, "received"))
	require.Equal(t, http.StatusOK, code)
	d := waitDelivery(t, r, "chatty", "delivered", isDelivered)
	require.Equal(t, 1, d.Attempts)
	select {
	case n := <-written:
		require.Less(t, n, int64(huge), "the relay read the whole 50 MiB answer")
	case <-time.After(waitLong):
		t.Fatal("the target's handler never finished writing: the relay kept the connection open")
	}
}

func TestTargetTimeoutDoesNotAffectOthers(t *testing.T) {
	release := make(chan struct{})
	hanging := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	// Registered after the server's Close, so it runs before it.
	t.Cleanup(func() { close(release) })
	healthy := testutil.NewTarget(t)

	slow := target("hanging", hanging.URL)
	slow.Timeout = config.D(200 * time.Millisecond)
	slow.MaxAttempts = 2
	cfg := testConfig(t, slow, target("healthy", healthy.URL))
	r := startRelay(t, cfg)

	start := time.Now()
	code, _ := r.post(t, "/webhook", msgBody(5, "received"))
	require.Equal(t, http.StatusOK, code)
	healthy.WaitDelivered(t, waitLong, "msg:5")
	require.Less(t, time.Since(start), 2*time.Second, "the healthy target waited for the hanging one")

	d := waitDelivery(t, r, "hanging", "dead", isDead)
	require.Equal(t, "timeout", d.LastError)
	require.Equal(t, 2, d.Attempts)
	require.EqualValues(t, 2, hanging.hits.Load())
	require.Equal(t, map[string]int{"msg:5": 1}, healthy.Delivered())
	require.True(t, strings.Contains(r.logs.String(), `"code":"timeout"`), "the attempt log names the timeout")
}

func TestTargetDenyPrivateNetworks(t *testing.T) {
	guarded := newCountingServer(t, false, ok200)
	allowed := newCountingServer(t, false, ok200)
	// Through the parser, so that [delivery]'s default and a target's
	// explicit false both reach the dispatcher.
	parsed, err := config.ParseWith(strings.NewReader(`
[delivery]
deny_private_networks = true

[[targets]]
name = "guarded"
url = "`+guarded.URL+`/hook"
max_attempts = 5

[[targets]]
name = "allowed"
url = "`+allowed.URL+`/hook"
deny_private_networks = false
`), nil)
	require.NoError(t, err)
	cfg := testConfig(t, parsed.Targets...)
	cfg.Delivery.DenyPrivateNetworks = parsed.Delivery.DenyPrivateNetworks
	r := startRelay(t, cfg)

	code, _ := r.post(t, "/webhook", msgBody(6, "received"))
	require.Equal(t, http.StatusOK, code)

	d := waitDelivery(t, r, "guarded", "dead", isDead)
	require.Equal(t, "private_address: destination 127.0.0.1 is a private address (deny_private_networks)", d.LastError)
	require.Equal(t, 1, d.Attempts, "a policy refusal is dead at once, not retried")
	require.Zero(t, d.LastStatusCode)
	require.Zero(t, guarded.hits.Load(), "the refused target must never see the request")

	waitDelivery(t, r, "allowed", "delivered", isDelivered)
	require.EqualValues(t, 1, allowed.hits.Load())
	require.Contains(t, r.logs.String(), `"code":"private_address"`)
}

func TestTargetDNSFailureIsRecorded(t *testing.T) {
	// .invalid never resolves (RFC 6761).
	tc := target("nowhere", "http://wamm-relay-test.invalid/hook")
	tc.MaxAttempts = 2
	r := startRelay(t, testConfig(t, tc))

	code, _ := r.post(t, "/webhook", msgBody(7, "received"))
	require.Equal(t, http.StatusOK, code)
	d := waitDelivery(t, r, "nowhere", "dead", isDead)
	require.Equal(t, "dns", d.LastError)
	require.Equal(t, 2, d.Attempts, "a lookup failure is retried up to max_attempts")
	require.Zero(t, d.LastStatusCode)
	require.Contains(t, r.logs.String(), `"code":"dns"`)
}
