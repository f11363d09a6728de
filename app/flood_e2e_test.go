package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// TestFloodOverMaxInFlight fires many webhooks from many goroutines at a
// relay with a small in-flight cap and a slow target: requests beyond the
// cap get 503 at once (and store nothing: the retry is not a duplicate),
// nothing gets any other answer, and every webhook that got 200 reaches the
// target exactly once.
func TestFloodOverMaxInFlight(t *testing.T) {
	const (
		webhooks = 500
		clients  = 64
	)
	var mu sync.Mutex
	delivered := map[string]int{}
	tgt := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		// A slow-ish consumer: deliveries pile up while webhooks keep coming.
		select {
		case <-time.After(2 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		mu.Lock()
		delivered[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})

	cfg := testConfig(t, target("crm", tgt.URL))
	cfg.Server.MaxInFlight = 4
	cfg.Log.Level = "info"
	r := startRelay(t, cfg)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: waitLong}
	t.Cleanup(client.CloseIdleConnections)

	// Each client retries a 503 at once, as WAMM would (later), so every
	// webhook is accepted in the end and the check below covers all 500.
	const maxTries = 10000
	type result struct {
		id       int
		rejected int // 503 answers before the 200
		status   int
		body     string
		err      error
	}
	send := func(id int) result {
		res := result{id: id}
		for range maxTries {
			resp, err := client.Post(r.base+"/webhook", "application/json", strings.NewReader(msgBody(id, "received")))
			if err != nil {
				res.err = err
				return res
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			res.status, res.body = resp.StatusCode, string(b)
			if resp.StatusCode != http.StatusServiceUnavailable {
				return res
			}
			if !strings.Contains(res.body, "too many requests in flight") {
				return res // a 503 for another reason: reported below
			}
			res.rejected++
		}
		return res
	}
	ids := make(chan int)
	results := make(chan result, webhooks)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for id := range ids {
				results <- send(id)
			}
		})
	}
	for id := 1; id <= webhooks; id++ {
		ids <- id
	}
	close(ids)
	wg.Wait()
	close(results)

	accepted := map[string]bool{}
	var rejected, firstTry int
	for res := range results {
		require.NoError(t, res.err, "webhook %d", res.id)
		require.Equal(t, http.StatusOK, res.status, "webhook %d: only 200 or 503 (overloaded) are allowed: %s", res.id, res.body)
		require.JSONEq(t, `{"ok":true,"duplicate":false}`, res.body, "webhook %d: a 503 must not have stored it", res.id)
		accepted[fmt.Sprintf("msg:%d", res.id)] = true
		rejected += res.rejected
		if res.rejected == 0 {
			firstTry++
		}
	}
	t.Logf("flood: %d webhooks accepted (%d on the first try), %d answers were 503", len(accepted), firstTry, rejected)
	require.NotZero(t, rejected, "64 clients against max_in_flight=4 must hit the cap")
	require.Len(t, accepted, webhooks)

	// Every accepted webhook is delivered, exactly once; nothing else is.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for k := range accepted {
			if delivered[k] == 0 {
				return false
			}
		}
		return true
	}, 3*waitLong, 10*time.Millisecond, "not every accepted webhook reached the target")
	waitAllDelivered(t, r, len(accepted))
	mu.Lock()
	defer mu.Unlock()
	for k, n := range delivered {
		require.True(t, accepted[k], "%s was delivered but its webhook got 503", k)
		require.Equal(t, 1, n, "%s delivered %d times", k, n)
	}
	ds, err := r.app.Store().List(context.Background(), store.ListFilter{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, ds, len(accepted))
	for _, d := range ds {
		require.Equal(t, event.StatusDelivered, d.Status)
	}
}

// TestShortWriteTimeoutServes: a write_timeout below relay's default ingest
// timeout is a valid configuration; the relay shortens the ingest bound to
// fit instead of refusing to start.
func TestShortWriteTimeoutServes(t *testing.T) {
	tgt := newCountingServer(t, false, ok200)
	cfg := testConfig(t, target("crm", tgt.URL))
	cfg.Server.WriteTimeout = config.D(2 * time.Second)
	require.NoError(t, cfg.Validate())
	r := startRelay(t, cfg)

	code, resp := r.post(t, "/webhook", msgBody(1, "received"))
	require.Equal(t, http.StatusOK, code, resp)
	waitAllDelivered(t, r, 1)
}
