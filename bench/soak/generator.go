package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// retryPause is how long a refused webhook waits before it is tried on the
// next instance, the way WAMM retries after a failure.
const retryPause = 250 * time.Millisecond

// generator sends webhooks at a fixed rate and remembers which keys the
// relay accepted. With several bases it alternates between them, and with
// retryFor it retries a refused webhook (503 or a connection error) on the
// next base until it gets a 200 or retryFor has passed.
type generator struct {
	bases    []string
	o        options
	retryFor time.Duration
	client   *http.Client
	nextID   atomic.Int64
	turn     atomic.Int64

	sent      atomic.Int64
	dupAcks   atomic.Int64
	resent    atomic.Int64
	rejected  atomic.Int64
	errors    atomic.Int64
	retries   atomic.Int64 // extra attempts after a refusal
	gaveUp    atomic.Int64 // refused for all of retryFor; never acked
	lateAcks  atomic.Int64 // acked as a duplicate on a retry: an earlier attempt had committed
	anomalies atomic.Int64 // dedup answers that break the contract
	lagged    atomic.Int64 // never sent: every sender was busy (retrying, mostly)

	mu       sync.Mutex
	accepted []acceptedWebhook
	tried    map[string]bool // every fresh key sent, acked or not
}

type acceptedWebhook struct {
	key  string
	body string
}

func newGenerator(bases []string, o options, retryFor time.Duration) *generator {
	g := &generator{bases: bases, o: o, retryFor: retryFor, tried: map[string]bool{}, client: &http.Client{
		Timeout:   10 * time.Second, // WAMM waits at most 10 s
		Transport: &http.Transport{MaxIdleConnsPerHost: o.clients},
	}}
	g.nextID.Store(1_000_000)
	return g
}

func (g *generator) acceptedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.accepted)
}

func (g *generator) acceptedKeys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	keys := make([]string, 0, len(g.accepted))
	for _, a := range g.accepted {
		keys = append(keys, a.key)
	}
	sort.Strings(keys)
	return keys
}

func (g *generator) wasTried(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tried[key]
}

func (g *generator) run(ctx context.Context) {
	jobs := make(chan struct{}, g.o.rate)
	var wg sync.WaitGroup
	for range g.o.clients {
		wg.Go(func() {
			for range jobs {
				g.sendOne()
			}
		})
	}
	// A ticker drops ticks on a busy machine; pace by elapsed time instead,
	// so the offered load is rate per second however late a tick comes.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var offered int64
	for {
		select {
		case <-ctx.Done():
			close(jobs)
			wg.Wait()
			if n := g.lagged.Load(); n > 0 {
				fmt.Printf("soak: %d webhooks not sent: all %d senders were busy\n", n, g.o.clients)
			}
			return
		case now := <-tick.C:
			due := int64(now.Sub(start).Seconds() * float64(g.o.rate))
			for ; offered < due; offered++ {
				select {
				case jobs <- struct{}{}:
				default:
					g.lagged.Add(1)
				}
			}
		}
	}
}

// next picks a new webhook, or (dupRate of the time) repeats an accepted one.
func (g *generator) next() (key, body string, resend bool) {
	if rand.Float64() < g.o.dupRate {
		g.mu.Lock()
		if n := len(g.accepted); n > 0 {
			a := g.accepted[rand.IntN(n)]
			key, body, resend = a.key, a.body, true
		}
		g.mu.Unlock()
		if resend {
			return key, body, true
		}
	}
	id := g.nextID.Add(1)
	if rand.Float64() < g.o.stateRate {
		body = fmt.Sprintf(`{"tip":"msg_state","msg_data":{"msg_id":%d,"from_me":1,"phone":"79001234567","state":"delivered"}}`, id)
		key = fmt.Sprintf("state:%d:delivered", id)
	} else {
		body = fmt.Sprintf(`{"tip":"msg","msg_data":{"msg_id":%d,"from_me":0,"phone":"79001234567","chat_name":"Soak",`+
			`"tip_msg":"textMessage","msg_text":"soak message %d","date_ins":"2026-03-01 12:00:00","state":"received"}}`, id, id)
		key = fmt.Sprintf("msg:%d", id)
	}
	g.mu.Lock()
	g.tried[key] = true
	g.mu.Unlock()
	return key, body, false
}

func (g *generator) sendOne() {
	key, body, resend := g.next()
	g.sent.Add(1)
	if resend {
		g.resent.Add(1)
	}
	deadline := time.Now().Add(g.retryFor)
	first := int(g.turn.Add(1))
	for attempt := 0; ; attempt++ {
		base := g.bases[(first+attempt)%len(g.bases)]
		status, dup, err := g.post(base, body)
		if err == nil && status == http.StatusOK {
			g.acked(key, body, resend, dup, attempt)
			return
		}
		if time.Now().Add(retryPause).After(deadline) {
			if err != nil {
				g.errors.Add(1)
			} else {
				g.rejected.Add(1)
			}
			if g.retryFor > 0 {
				g.gaveUp.Add(1)
			}
			return
		}
		g.retries.Add(1)
		time.Sleep(retryPause)
	}
}

func (g *generator) post(base, body string) (status int, dup bool, err error) {
	resp, err := g.client.Post(base+"/webhook/"+webhookSecret, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, strings.Contains(string(b), `"duplicate":true`), nil
}

// acked files a 200. A retry may be told "duplicate" for a fresh key when an
// earlier attempt committed but its answer was lost (the instance died, or
// the client gave up): that is an ack too.
func (g *generator) acked(key, body string, resend, dup bool, attempt int) {
	switch {
	case dup && resend:
		g.dupAcks.Add(1)
		return
	case dup && attempt == 0:
		// A fresh id reported as a duplicate would be a dedup bug.
		g.dupAcks.Add(1)
		g.anomalies.Add(1)
		return
	case dup:
		g.dupAcks.Add(1)
		g.lateAcks.Add(1)
	case resend:
		// A repeat stored again would be delivered twice.
		g.anomalies.Add(1)
		return
	}
	g.mu.Lock()
	g.accepted = append(g.accepted, acceptedWebhook{key: key, body: body})
	g.mu.Unlock()
}
