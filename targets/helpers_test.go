package targets

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	// Start at the real time: signatures are verified with the Standard
	// Webhooks library, which checks webhook-timestamp against time.Now.
	return &fakeClock{t: time.Now().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fakeRow struct {
	d          event.Delivery
	owner      string
	leaseUntil time.Time
}

type recordCall struct {
	ID    int64
	Owner string
	Out   event.Outcome
}

// fakeStore is an in-memory outbox with the lease semantics of the store
// contract. Function fields inject failures.
type fakeStore struct {
	now func() time.Time
	sig *store.Signal

	mu       sync.Mutex
	rows     []*fakeRow // id = index + 1
	claims   []store.ClaimRequest
	records  []recordCall
	released []int64

	claimErr  func() error         // nil: never fails
	recordErr func(id int64) error // nil: never fails
	onNextDue func()               // called on every NextDue
}

func newFakeStore(now func() time.Time) *fakeStore {
	return &fakeStore{now: now, sig: store.NewSignal()}
}

// add enqueues one delivery due now and wakes the workers, like Ingest.
func (s *fakeStore) add(target string, key event.Key, body []byte, src event.Source) int64 {
	s.mu.Lock()
	id := int64(len(s.rows) + 1)
	now := s.now()
	s.rows = append(s.rows, &fakeRow{d: event.Delivery{
		ID: id, Target: target, EventKey: key, Kind: event.KindMsg, Source: src,
		Body: slices.Clone(body), Status: event.StatusPending,
		NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
	}})
	s.mu.Unlock()
	s.sig.Notify()
	return id
}

func (s *fakeStore) Claim(_ context.Context, req store.ClaimRequest) ([]event.Delivery, error) {
	if s.claimErr != nil {
		if err := s.claimErr(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims = append(s.claims, req)
	var due []*fakeRow
	for _, r := range s.rows {
		if r.d.Target == req.Target && r.d.Status == event.StatusPending &&
			!r.d.NextAttemptAt.After(req.Now) && (r.owner == "" || !r.leaseUntil.After(req.Now)) {
			due = append(due, r)
		}
	}
	slices.SortStableFunc(due, func(a, b *fakeRow) int { return a.d.NextAttemptAt.Compare(b.d.NextAttemptAt) })
	var out []event.Delivery
	for _, r := range due[:min(len(due), req.Limit)] {
		r.owner, r.leaseUntil = req.Owner, req.Now.Add(req.Lease)
		d := r.d
		d.Body = slices.Clone(d.Body)
		out = append(out, d)
	}
	return out, nil
}

func (s *fakeStore) Record(_ context.Context, id int64, owner string, out event.Outcome) error {
	if s.recordErr != nil {
		if err := s.recordErr(id); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rows[id-1]
	if r.owner != owner {
		return store.ErrLeaseLost
	}
	s.records = append(s.records, recordCall{ID: id, Owner: owner, Out: out})
	r.owner, r.leaseUntil = "", time.Time{}
	r.d.Attempts++
	r.d.LastStatusCode, r.d.LastError = out.StatusCode, out.Error
	switch out.Result {
	case event.ResultDelivered:
		r.d.Status, r.d.DeliveredAt = event.StatusDelivered, out.At
	case event.ResultDead:
		r.d.Status = event.StatusDead
	case event.ResultRetry:
		r.d.NextAttemptAt = out.NextAttemptAt
	}
	return nil
}

func (s *fakeStore) Release(_ context.Context, owner string, ids []int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		r := s.rows[id-1]
		if r.owner == owner {
			r.owner, r.leaseUntil = "", time.Time{}
			s.released = append(s.released, id)
		}
	}
	return nil
}

func (s *fakeStore) NextDue(_ context.Context, target string) (time.Time, bool, error) {
	if s.onNextDue != nil {
		s.onNextDue()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var best time.Time
	found := false
	for _, r := range s.rows {
		if r.d.Target != target || r.d.Status != event.StatusPending {
			continue
		}
		at := r.d.NextAttemptAt
		if r.owner != "" && r.leaseUntil.After(now) {
			at = r.leaseUntil
		}
		if !found || at.Before(best) {
			best, found = at, true
		}
	}
	return best, found, nil
}

func (s *fakeStore) Wake() <-chan struct{} { return s.sig.Wait() }

func (s *fakeStore) row(id int64) fakeRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.rows[id-1]
}

func (s *fakeStore) recorded() []recordCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.records)
}

func (s *fakeStore) releasedIDs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.released)
}

func (s *fakeStore) claimRequests() []store.ClaimRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.claims)
}

// received is one request a recorder got.
type received struct {
	n      int
	method string
	header http.Header
	body   []byte
}

// recorder is a real HTTP target. handle decides the answer to the n-th
// request (from 1); a nil handle answers 200.
type recorder struct {
	*httptest.Server
	got   chan received
	calls atomic.Int32
}

func newRecorder(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *recorder {
	t.Helper()
	rec := &recorder{got: make(chan received, 100)}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(rec.calls.Add(1))
		body, _ := io.ReadAll(r.Body)
		rec.got <- received{n: n, method: r.Method, header: r.Header.Clone(), body: body}
		if handle == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		handle(n, w, r)
	}))
	t.Cleanup(rec.Close)
	return rec
}

// next waits for the recorder's next request.
func (rec *recorder) next(t *testing.T, within time.Duration) received {
	t.Helper()
	select {
	case r := <-rec.got:
		return r
	case <-time.After(within):
		t.Fatalf("target %s received nothing within %s", rec.URL, within)
		return received{}
	}
}

func status(code int) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// count returns how many log lines contain s.
func (b *syncBuffer) count(s string) int {
	n := 0
	for line := range strings.Lines(b.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// entries returns how many JSON log lines have this level and message.
func (b *syncBuffer) entries(level, msg string) int {
	n := 0
	for line := range strings.Lines(b.String()) {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && e["level"] == level && e["msg"] == msg {
			n++
		}
	}
	return n
}

// entry returns the first JSON log line with this message, or nil.
func (b *syncBuffer) entry(msg string) map[string]any {
	for line := range strings.Lines(b.String()) {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == msg {
			return e
		}
	}
	return nil
}

func newTestLogger() (*logrus.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	log := logrus.New()
	log.SetOutput(buf)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.JSONFormatter{})
	return log, buf
}

func testTarget(name, url string) Target {
	return Target{Name: name, URL: url, Timeout: 5 * time.Second, MaxAttempts: 5}
}

type harness struct {
	d     *Dispatcher
	store *fakeStore
	logs  *syncBuffer
	reg   *prometheus.Registry
}

// newHarness builds a Dispatcher over st, on st's clock unless opts.Now is
// set. opts may leave Store, Owner, Logger, Registerer and Rand unset.
func newHarness(t *testing.T, st *fakeStore, opts Options) *harness {
	t.Helper()
	if opts.Now == nil {
		opts.Now = st.now
	}
	h := newDispatcherOver(t, st, opts)
	h.store = st
	return h
}

// run starts Run and returns a stop function that cancels it and waits for
// it to return, failing after `within`.
func (h *harness) run(t *testing.T) (stop func(within time.Duration)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.d.Run(ctx) }()
	stopped := false
	stop = func(within time.Duration) {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(within):
			t.Fatalf("Run did not return within %s of cancel", within)
		}
	}
	t.Cleanup(func() { stop(30 * time.Second) })
	return stop
}

// metric returns the value of a counter or gauge, or the sample count of a
// histogram, with exactly these labels; 0 when absent.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !labelsMatch(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	if len(m.GetLabel()) != len(want) {
		return false
	}
	for _, l := range m.GetLabel() {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}
