package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Sink down modes for the backlog scenario.
const (
	downUnavailable = "503"    // answer 503 Service Unavailable
	downClosed      = "closed" // close the listener: connection refused
)

// tracker records what every sink received: the first receipt of each
// message per sink, redeliveries, and when a message has reached every sink.
// Messages are identified by their sequence number (msg_id - idBase), which
// the generator hands out densely from 1.
type tracker struct {
	nSinks int

	mu           sync.Mutex
	got          [][]bool // [sink][seq]: first receipt seen
	count        []uint8  // [seq]: how many sinks have it
	complete     int64    // messages every sink has
	deliveries   int64    // first receipts, all sinks
	dups         []int64  // [sink]: redeliveries
	malformed    int64
	conns        atomic.Int64 // TCP connections the sinks accepted
	lastComplete time.Time
	changed      chan struct{} // closed and replaced when complete grows

	latency samples // generator send -> first receipt at a sink
}

func newTracker(nSinks int) *tracker {
	return &tracker{
		nSinks:  nSinks,
		got:     make([][]bool, nSinks),
		dups:    make([]int64, nSinks),
		changed: make(chan struct{}),
	}
}

func grow[T any](v []T, n int) []T {
	if n < len(v) {
		return v
	}
	return append(v, make([]T, n-len(v)+1+len(v)/2)...)
}

// record notes that sink received message seq, sent at sentNS (unix ns).
func (t *tracker) record(sink int, seq int64, sentNS int64, at time.Time) {
	lat := time.Duration(at.UnixNano() - sentNS)
	t.mu.Lock()
	defer t.mu.Unlock()
	i := int(seq)
	t.got[sink] = grow(t.got[sink], i)
	if t.got[sink][i] {
		t.dups[sink]++
		return
	}
	t.got[sink][i] = true
	t.deliveries++
	t.latency.v = append(t.latency.v, lat)
	t.count = grow(t.count, i)
	t.count[i]++
	if int(t.count[i]) == t.nSinks {
		t.complete++
		t.lastComplete = at
		close(t.changed)
		t.changed = make(chan struct{})
	}
}

func (t *tracker) badBody() {
	t.mu.Lock()
	t.malformed++
	t.mu.Unlock()
}

// state returns the completed count, the time of the last completion and a
// channel closed at the next completion.
func (t *tracker) state() (complete int64, last time.Time, changed <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.complete, t.lastComplete, t.changed
}

func (t *tracker) deliveredCount() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deliveries
}

// waitComplete waits until want messages reached every sink, or ctx ends.
// It returns the time of the last completion.
func (t *tracker) waitComplete(ctx context.Context, want int64) (time.Time, error) {
	for {
		n, last, changed := t.state()
		if n >= want {
			return last, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return last, fmt.Errorf("wait for delivery: %d of %d messages reached every sink: %w", n, want, ctx.Err())
		}
	}
}

// missing counts, per sink, the accepted messages it never received.
func (t *tracker) missing(accepted []bool) []int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]int64, t.nSinks)
	for seq, ok := range accepted {
		if !ok {
			continue
		}
		for s := range t.nSinks {
			if seq >= len(t.got[s]) || !t.got[s][seq] {
				out[s]++
			}
		}
	}
	return out
}

func (t *tracker) duplicates() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, d := range t.dups {
		n += d
	}
	return n
}

// sink is one in-process HTTP receiver standing in for a target.
type sink struct {
	idx  int
	tr   *tracker
	addr string
	down atomic.Value // "" (up), downUnavailable or downClosed

	mu  sync.Mutex
	srv *http.Server
}

func startSink(idx int, tr *tracker) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for sink %d: %w", idx, err)
	}
	s := &sink{idx: idx, tr: tr, addr: ln.Addr().String()}
	s.down.Store("")
	s.serve(ln)
	return s, nil
}

func (s *sink) URL() string { return "http://" + s.addr + "/hook" }

func (s *sink) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.tr.conns.Add(1)
			}
		}}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// SetDown takes the sink down in the given mode.
func (s *sink) SetDown(mode string) {
	s.down.Store(mode)
	if mode == downClosed {
		s.mu.Lock()
		_ = s.srv.Close()
		s.mu.Unlock()
	}
}

// SetUp brings the sink back, on the same address.
func (s *sink) SetUp() error {
	mode := s.down.Load().(string)
	if mode == downClosed {
		var ln net.Listener
		var err error
		// The port was just released; retry briefly in case the kernel has
		// not let go of it yet.
		for range 50 {
			if ln, err = net.Listen("tcp", s.addr); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("reopen sink %d: %w", s.idx, err)
		}
		s.serve(ln)
	}
	s.down.Store("")
	return nil
}

func (s *sink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.srv.Close()
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.down.Load().(string) == downUnavailable {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if _, err := buf.ReadFrom(r.Body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	at := time.Now()
	seq, sent, err := parseBenchBody(buf.Bytes())
	if err != nil {
		s.tr.badBody()
		w.WriteHeader(http.StatusOK)
		return
	}
	s.tr.record(s.idx, seq, sent, at)
	w.WriteHeader(http.StatusOK)
}

// Body layout: see appendBody. The sink finds its two numbers by scanning,
// not by decoding JSON, so that its cost stays small and equal for the relay
// and the baseline.
var (
	msgIDField = []byte(`"msg_id":`)
	sentField  = []byte(`"bench_sent_ns":`)
)

func parseBenchBody(b []byte) (seq, sentNS int64, err error) {
	id, err := intAfter(b, msgIDField)
	if err != nil {
		return 0, 0, err
	}
	sent, err := intAfter(b, sentField)
	if err != nil {
		return 0, 0, err
	}
	return id - idBase, sent, nil
}

func intAfter(b, field []byte) (int64, error) {
	i := bytes.Index(b, field)
	if i < 0 {
		return 0, errors.New("field missing")
	}
	b = b[i+len(field):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	return strconv.ParseInt(string(b[:j]), 10, 64)
}
