package testutil

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Request is one request a Target received.
type Request struct {
	Header http.Header
	Body   []byte
	Status int // what the target answered
	At     time.Time
}

// Key is the request's webhook-id header: the event key.
func (r Request) Key() string { return r.Header.Get("webhook-id") }

// Target is a real HTTP server that records every request and answers with
// the status its responder picks (200 by default).
type Target struct {
	*httptest.Server

	mu      sync.Mutex
	reqs    []Request
	respond func(r *http.Request, body []byte) int
	changed chan struct{} // closed and replaced on every request
}

// NewTarget starts a Target that the test closes at cleanup.
func NewTarget(tb testing.TB) *Target {
	tb.Helper()
	t := &Target{changed: make(chan struct{})}
	t.Server = httptest.NewServer(http.HandlerFunc(t.serve))
	tb.Cleanup(t.Close)
	return t
}

// Respond sets how the target answers from now on.
func (t *Target) Respond(fn func(r *http.Request, body []byte) int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.respond = fn
}

func (t *Target) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	t.mu.Lock()
	respond := t.respond
	t.mu.Unlock()
	status := http.StatusOK
	if respond != nil {
		status = respond(r, body)
	}
	t.mu.Lock()
	t.reqs = append(t.reqs, Request{Header: r.Header.Clone(), Body: body, Status: status, At: time.Now()})
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
	w.WriteHeader(status)
}

// Requests returns a copy of everything received so far.
func (t *Target) Requests() []Request {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Request(nil), t.reqs...)
}

// Delivered counts 2xx-answered requests per event key.
func (t *Target) Delivered() map[string]int {
	out := map[string]int{}
	for _, r := range t.Requests() {
		if r.Status >= 200 && r.Status < 300 {
			out[r.Key()]++
		}
	}
	return out
}

// WaitFor blocks until cond holds over the received requests, failing the
// test after timeout. It wakes on every request, so it never polls.
func (t *Target) WaitFor(tb testing.TB, timeout time.Duration, what string, cond func([]Request) bool) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		t.mu.Lock()
		reqs := append([]Request(nil), t.reqs...)
		changed := t.changed
		t.mu.Unlock()
		if cond(reqs) {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("target %s: timed out after %s waiting for %s (got %d requests)", t.URL, timeout, what, len(reqs))
		}
	}
}

// WaitDelivered waits until every key was answered 2xx at least once.
func (t *Target) WaitDelivered(tb testing.TB, timeout time.Duration, keys ...string) {
	tb.Helper()
	t.WaitFor(tb, timeout, "all keys delivered", func(reqs []Request) bool {
		got := map[string]bool{}
		for _, r := range reqs {
			if r.Status >= 200 && r.Status < 300 {
				got[r.Key()] = true
			}
		}
		for _, k := range keys {
			if !got[k] {
				return false
			}
		}
		return true
	})
}
