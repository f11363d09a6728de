package targets

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
)

// endlessBody is a handler that answers 200 and then writes until the
// client goes away, reporting how much it managed to write.
func endlessBody(written chan<- int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 32<<10)
		var n int64
		for r.Context().Err() == nil {
			m, err := w.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		if written != nil {
			written <- n
		}
	}
}

// trickle answers each request on the connections it accepts by writing,
// one byte every 100ms, a status line and a header that never ends, until
// the client hangs up. It is a raw listener so the status line itself
// trickles.
// active, if not nil, counts the connections being trickled to.
func trickle(t *testing.T, active *atomic.Int64) (url string) {
	const s = "HTTP/1.1 200 OK\r\nX-Trickle: "
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { close(done); _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if active != nil {
					active.Add(1)
					defer active.Add(-1)
				}
				// Answer only once asked, as a server would.
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					case <-tick.C:
					}
					b := byte('x')
					if i < len(s) {
						b = s[i]
					}
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + l.Addr().String() + "/hook"
}

func TestEndlessResponseBodyIsCapped(t *testing.T) {
	written := make(chan int64, 1)
	srv := httptest.NewServer(endlessBody(written))
	t.Cleanup(srv.Close)
	tg := testTarget("endless", srv.URL)
	tg.Timeout = time.Minute // the cap, not the timeout, must end the attempt
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: []Target{tg}})
	st.add("endless", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	_, err := h.d.DeliverDue(context.Background(), "endless")
	require.NoError(t, err)
	recs := st.recorded()
	require.Len(t, recs, 1)
	require.Equal(t, event.ResultDelivered, recs[0].Out.Result, "the status decides; the body is only drained")

	// The relay hung up after responseBodyCap: the handler's writes fail.
	// What it wrote beyond the cap sits in socket buffers, a few MiB at most.
	select {
	case n := <-written:
		require.Less(t, n, int64(32<<20), "the relay kept reading the endless body")
	case <-time.After(30 * time.Second):
		t.Fatal("the endless handler never stopped: the relay kept the connection open")
	}
}

func TestTricklingStatusLineIsCutByTheTimeout(t *testing.T) {
	url := trickle(t, nil)
	tg := testTarget("trickle", url)
	tg.Timeout = 300 * time.Millisecond
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: []Target{tg}})
	st.add("trickle", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	began := time.Now()
	_, err := h.d.DeliverDue(context.Background(), "trickle")
	require.NoError(t, err)
	// The answer never completes; the attempt ends at its timeout
	// (generous margin for a loaded machine).
	require.Less(t, time.Since(began), 3*time.Second)
	recs := st.recorded()
	require.Len(t, recs, 1)
	require.Equal(t, event.ResultRetry, recs[0].Out.Result)
	require.Equal(t, CodeTimeout, recs[0].Out.Error)
	require.Zero(t, recs[0].Out.StatusCode)
}

func TestTricklingBodyAfterASuccessIsCutByTheTimeout(t *testing.T) {
	// A 2xx whose body trickles is delivered (the status decides), but the
	// attempt still ends at the timeout instead of following the trickle.
	stopped := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				stopped <- err
				return
			}
			if err := rc.Flush(); err != nil {
				stopped <- err
				return
			}
			select {
			case <-r.Context().Done():
				stopped <- r.Context().Err()
				return
			case <-tick.C:
			}
		}
	}))
	t.Cleanup(srv.Close)
	tg := testTarget("trickle", srv.URL)
	tg.Timeout = 300 * time.Millisecond
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: []Target{tg}})
	st.add("trickle", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	_, err := h.d.DeliverDue(context.Background(), "trickle")
	require.NoError(t, err)
	recs := st.recorded()
	require.Len(t, recs, 1)
	require.Equal(t, event.ResultDelivered, recs[0].Out.Result)
	require.Equal(t, http.StatusOK, recs[0].Out.StatusCode)
	select {
	case err := <-stopped:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the relay kept following the trickling body past its timeout")
	}
}

func TestDNSFailureIsClassified(t *testing.T) {
	// .invalid never resolves (RFC 6761); with no resolver at all the
	// lookup fails too, still as a *net.DNSError.
	tg := testTarget("nowhere", "http://wamm-relay-test.invalid/hook?token=url-secret")
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: []Target{tg}})
	st.add("nowhere", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

	_, err := h.d.DeliverDue(context.Background(), "nowhere")
	require.NoError(t, err)
	recs := st.recorded()
	require.Len(t, recs, 1)
	require.Equal(t, event.ResultRetry, recs[0].Out.Result)
	require.Equal(t, CodeDNS, recs[0].Out.Error)
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_delivery_attempts_total", map[string]string{"target": "nowhere", "code": CodeDNS}))
	entry := h.logs.entry("delivery.attempted")
	require.NotNil(t, entry)
	require.Contains(t, entry["error"], "wamm-relay-test.invalid", "the attempt log says which lookup failed")
	require.NotContains(t, h.logs.String(), "url-secret")

}
