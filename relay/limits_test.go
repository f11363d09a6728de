package relay_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/relay"
)

// TestOversizeHeaderGets431: a request whose headers pass MaxHeaderBytes is
// refused with 431 before any handler runs, and the server keeps serving.
func TestOversizeHeaderGets431(t *testing.T) {
	h := newHarness(t, func(o *relay.Options) { o.MaxHeaderBytes = 1024 })
	base, _, _ := startRun(t, h.srv)

	// net/http allows 4 KiB of slack over MaxHeaderBytes; go well past it.
	big := http.Header{"X-Padding": {strings.Repeat("p", 16<<10)}}
	resp := doRequest(t, base, http.MethodPost, "/webhook/"+testSecret, big, strings.NewReader(msgBody))
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.status)
	require.Empty(t, h.ing.received())

	resp = doRequest(t, base, http.MethodPost, "/webhook/"+testSecret, nil, strings.NewReader(msgBody))
	require.Equal(t, http.StatusOK, resp.status, "the relay keeps serving")
	require.Len(t, h.ing.received(), 1)
}

// TestSlowBodyIsCutOff: a client that trickles its body loses the request
// once ReadTimeout (counted from the request's start, not per read) has
// passed; nothing is ingested and the in-flight slot is given back.
func TestSlowBodyIsCutOff(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	h := newHarness(t, func(o *relay.Options) {
		o.ReadTimeout = readTimeout
		o.MaxInFlight = 1
		o.MaxBodyBytes = 1 << 20
	})
	base, _, _ := startRun(t, h.srv)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	start := time.Now()
	_, err = fmt.Fprintf(conn, "POST /webhook/%s HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"+
		"Content-Length: 100000\r\n\r\n{\"tip\":\"msg\",\"pad\":\"", testSecret)
	require.NoError(t, err)

	// One byte every 10 ms: each read succeeds quickly, so only a deadline
	// on the whole request stops this client.
	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	defer func() {
		close(stop)
		<-trickled
	}()

	// Far beyond ReadTimeout: hitting this deadline means the server kept
	// reading the slow body.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		// The handler saw the read fail and answered before closing.
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		_, err = io.ReadAll(conn)
	}
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the server did not cut off the slow body")
	require.GreaterOrEqual(t, time.Since(start), readTimeout-50*time.Millisecond)
	require.Empty(t, h.ing.received())

	require.Eventually(t, func() bool {
		return len(h.logs.find(t, "webhook rejected")) == 1
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "read_error", h.logs.find(t, "webhook rejected")[0]["reason"])

	// MaxInFlight is 1: the slow request's slot must be free again.
	resp2 := doRequest(t, base, http.MethodPost, "/webhook/"+testSecret, nil, strings.NewReader(msgBody))
	require.Equal(t, http.StatusOK, resp2.status)
}
