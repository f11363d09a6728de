package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// targetServer answers like an unreliable consumer and records every 2xx it
// gave, per event key. The chaos soak also flaps it: for a while it answers
// 500 to everything, or goes down (its listener closed, so connections are
// refused, and its open connections cut).
type targetServer struct {
	name     string
	srv      *http.Server
	addr     string
	url      string
	failRate float64
	hangRate float64
	failing  atomic.Bool // a 500 flap

	mu        sync.Mutex
	ln        net.Listener // nil while down
	conns     map[net.Conn]struct{}
	delivered map[string]int
	first     map[string]time.Time // when each key was first answered 2xx
	requests  atomic.Int64
	fails     atomic.Int64
	hangs     atomic.Int64
}

func (t *targetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	t.requests.Add(1)
	key := r.Header.Get("webhook-id")
	if t.failing.Load() {
		t.fails.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	switch x := rand.Float64(); {
	case x < t.hangRate:
		t.hangs.Add(1)
		// Outlast the relay's timeout, then go away without an answer.
		select {
		case <-r.Context().Done():
		case <-time.After(3 * targetTimeout):
		}
		return
	case x < t.hangRate+t.failRate:
		t.fails.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	t.mu.Lock()
	if t.delivered[key] == 0 {
		t.first[key] = time.Now()
	}
	t.delivered[key]++
	t.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (t *targetServer) snapshot() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.delivered))
	for k, v := range t.delivered {
		out[k] = v
	}
	return out
}

func (t *targetServer) firstDelivered(key string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first[key]
}

func startTarget(name string, failRate, hangRate float64) (*targetServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for target %s: %w", name, err)
	}
	t := &targetServer{
		name: name, failRate: failRate, hangRate: hangRate, addr: ln.Addr().String(), ln: ln,
		conns: map[net.Conn]struct{}{}, delivered: map[string]int{}, first: map[string]time.Time{},
	}
	t.srv = &http.Server{Handler: t, ReadHeaderTimeout: 5 * time.Second, ConnState: t.track}
	t.url = "http://" + t.addr + "/hook"
	go func() { _ = t.srv.Serve(ln) }()
	return t, nil
}

// track keeps the open connections, so that going down can cut them.
func (t *targetServer) track(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case http.StateNew:
		t.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(t.conns, c)
	}
}

// down closes the listener (new connections are refused) and cuts the open
// connections, requests in flight included.
func (t *targetServer) down() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return nil
	}
	err := t.ln.Close()
	t.ln = nil
	for c := range t.conns {
		_ = c.Close()
	}
	if err != nil {
		return fmt.Errorf("close target %s listener: %w", t.name, err)
	}
	return nil
}

// up listens on the same address again. http.Server.Serve may be called
// again with a new listener as long as the server was not shut down.
func (t *targetServer) up() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", t.addr)
	if err != nil {
		return fmt.Errorf("listen again for target %s on %s: %w", t.name, t.addr, err)
	}
	t.ln = ln
	go func() { _ = t.srv.Serve(ln) }()
	return nil
}

// shutdown ends the server and closes keep-alive connections, so the last
// resource sample counts what the relay itself holds.
func (t *targetServer) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = t.srv.Shutdown(ctx)
}
