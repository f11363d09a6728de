package targets

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/sqlite"
)

// noTarget is a target URL nothing is ever sent to in these tests.
const noTarget = "http://127.0.0.1:1/"

// newDispatcherOver builds a Dispatcher over any Store, as newHarness does
// over a fakeStore. opts may leave Store, Owner, Logger, Registerer and Rand
// unset; Now defaults to time.Now.
func newDispatcherOver(t *testing.T, st Store, opts Options) *harness {
	t.Helper()
	log, buf := newTestLogger()
	reg := prometheus.NewRegistry()
	opts.Store = st
	if opts.Owner == "" {
		opts.Owner = "test-owner"
	}
	opts.Logger = log
	opts.Registerer = reg
	if opts.Rand == nil {
		opts.Rand = func() float64 { return 0.5 }
	}
	d, err := New(opts)
	require.NoError(t, err)
	return &harness{d: d, logs: buf, reg: reg}
}

// startRun starts Run on a context the test cancels itself and returns the
// cancel and the channel Run's result arrives on. At cleanup Run is stopped
// and awaited; after a failure (which may have left a reservation that holds
// the drain) only briefly, so that the failure is reported instead of a hang.
func startRun(t *testing.T, d *Dispatcher) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	result := make(chan error, 1)
	go func() {
		err := d.Run(ctx)
		done <- err
		result <- err
	}()
	t.Cleanup(func() {
		cancel()
		within := 10 * time.Second
		if t.Failed() {
			within = time.Second
		}
		select {
		case <-result:
		case <-time.After(within):
			if !t.Failed() {
				t.Errorf("Run did not return within %s of cancel", within)
			}
		}
	})
	return cancel, done
}

// runDispatcher starts Run and returns a stop function that cancels it and
// waits for it to return, failing after `within`.
func runDispatcher(t *testing.T, d *Dispatcher) (stop func(within time.Duration)) {
	t.Helper()
	cancel, done := startRun(t, d)
	return func(within time.Duration) {
		t.Helper()
		cancel()
		waitRun(t, done, within)
	}
}

// waitRun waits for Run's result.
func waitRun(t *testing.T, done <-chan error, within time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(within):
		t.Fatalf("Run did not return within %s", within)
	}
}

// waitKeepingUp waits until each named target's loop has made a claim that
// found fewer due deliveries than it had room for. claimAndStart gives the
// unused slots back before it sets the flag, so from then on an idle loop
// holds no slot until something wakes it.
func waitKeepingUp(t *testing.T, d *Dispatcher, names ...string) {
	t.Helper()
	for _, name := range names {
		p := d.byName[name]
		require.Eventually(t, p.keepingUp.Load, 5*time.Second, time.Millisecond, "target %s never kept up", name)
	}
}

// reserve calls Reserve and fails, instead of hanging, if it blocks.
func reserve(t *testing.T, d *Dispatcher, names ...string) *Reservation {
	t.Helper()
	got := make(chan *Reservation, 1)
	go func() { got <- d.Reserve(names) }()
	select {
	case r := <-got:
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("Reserve(%q) blocked", names)
		return nil
	}
}

// reserveEventually retries Reserve until it takes a worker on every one of
// names. A worker given back wakes its target's loop, whose claim holds the
// free slots for a moment: a Reserve at that moment finds them busy.
func reserveEventually(t *testing.T, d *Dispatcher, names ...string) *Reservation {
	t.Helper()
	var r *Reservation
	require.Eventually(t, func() bool {
		r = d.Reserve(names)
		if r != nil && !slices.Equal(r.Lease().Targets, names) {
			r.Cancel() // took some but not all: give them back and retry
			r = nil
		}
		return r != nil
	}, 5*time.Second, time.Millisecond, "Reserve(%q) never took a worker on each", names)
	return r
}

// isLive reports whether Run is in its accepting state (live is set).
func isLive(d *Dispatcher) bool {
	d.liveMu.RLock()
	defer d.liveMu.RUnlock()
	return d.live != nil
}

func TestReserveIsRefusedOutsideRun(t *testing.T) {
	st := newFakeStore(time.Now)
	var armed atomic.Bool
	entered := make(chan struct{}, 1)
	idle := make(chan struct{}, 1)
	gate := make(chan struct{})
	var openGate sync.Once
	open := func() { openGate.Do(func() { close(gate) }) }
	t.Cleanup(open)
	st.onNextDue = func() {
		if !armed.Load() {
			select {
			case idle <- struct{}{}:
			default:
			}
			return
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}
	h := newHarness(t, st, Options{
		Targets:      []Target{testTarget("a", noTarget)},
		IdlePoll:     time.Hour,
		DrainTimeout: time.Minute,
	})
	p := h.d.byName["a"]

	// Before Run: a claim that found nothing marks the target as keeping
	// up, but no Run accepts the work.
	n, err := h.d.DeliverDue(context.Background(), "a")
	require.NoError(t, err)
	require.Zero(t, n)
	require.True(t, p.keepingUp.Load())
	require.Nil(t, reserve(t, h.d, "a"), "Reserve before Run")
	require.Empty(t, p.sem, "a refused Reserve holds no worker")

	cancel, done := startRun(t, h.d)
	// The loop's first claim gave its slots back and it went idle.
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop never went idle")
	}
	r := reserve(t, h.d, "a")
	require.NotNil(t, r, "Reserve while Run runs and the target is idle")
	r.Cancel()

	// Hold the loop inside NextDue, so that Run cannot leave its accepting
	// state, and cancel Run's context: only the canceled context may refuse.
	armed.Store(true)
	st.sig.Notify()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop never reached NextDue")
	}
	cancel()
	require.True(t, isLive(h.d), "the loop is held, so Run has not left its accepting state")
	require.True(t, p.keepingUp.Load())
	require.Empty(t, p.sem)
	require.Nil(t, reserve(t, h.d, "a"), "Reserve after Run's context is canceled, before the loops stopped")

	open()
	waitRun(t, done, 5*time.Second)
	require.Nil(t, reserve(t, h.d, "a"), "Reserve after Run returned")
	require.Empty(t, p.sem)

	// A second Run accepts work again.
	armed.Store(false)
	cancel, done = startRun(t, h.d)
	require.Eventually(t, func() bool { return isLive(h.d) }, 5*time.Second, time.Millisecond)
	r = reserveEventually(t, h.d, "a")
	r.Cancel()
	cancel()
	waitRun(t, done, 5*time.Second)
}

func TestReserveTakesIdleWorkers(t *testing.T) {
	const slack = 7 * time.Second
	a := testTarget("a", noTarget) // timeout 5s
	b := testTarget("b", noTarget)
	b.Timeout = 20 * time.Second

	tests := []struct {
		name  string
		setup func(t *testing.T, d *Dispatcher) *Reservation // returns what it holds
		// held is how many workers setup left reserved, per target.
		held      map[string]int
		reserve   []string
		want      []string      // nil: Reserve returns nil
		wantUntil time.Duration // from the clock's now
	}{
		{name: "one idle target", reserve: []string{"a"}, want: []string{"a"}, wantUntil: 5*time.Second + slack},
		{name: "the other idle target", reserve: []string{"b"}, want: []string{"b"}, wantUntil: 20*time.Second + slack},
		{
			name:    "two targets lease until the longer attempt ends, in the order asked",
			reserve: []string{"b", "a"}, want: []string{"b", "a"}, wantUntil: 20*time.Second + slack,
		},
		{name: "unknown target", reserve: []string{"nope"}},
		{name: "no targets", reserve: nil},
		{name: "unknown target is skipped", reserve: []string{"nope", "a"}, want: []string{"a"}, wantUntil: 5*time.Second + slack},
		{
			name: "target whose only worker is busy",
			setup: func(t *testing.T, d *Dispatcher) *Reservation {
				r := reserve(t, d, "a")
				require.NotNil(t, r)
				return r
			},
			held:    map[string]int{"a": 1},
			reserve: []string{"a"},
		},
		{
			name: "target whose only worker is busy is skipped",
			setup: func(t *testing.T, d *Dispatcher) *Reservation {
				r := reserve(t, d, "a")
				require.NotNil(t, r)
				return r
			},
			held:    map[string]int{"a": 1},
			reserve: []string{"a", "b"}, want: []string{"b"}, wantUntil: 20*time.Second + slack,
		},
		{
			name: "target not keeping up (its last claim was full)",
			setup: func(_ *testing.T, d *Dispatcher) *Reservation {
				d.byName["a"].keepingUp.Store(false)
				return nil
			},
			reserve: []string{"a"},
		},
		{
			name: "target not keeping up is skipped",
			setup: func(_ *testing.T, d *Dispatcher) *Reservation {
				d.byName["b"].keepingUp.Store(false)
				return nil
			},
			reserve: []string{"b", "a"}, want: []string{"a"}, wantUntil: 5*time.Second + slack,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			st := newFakeStore(clock.Now)
			h := newHarness(t, st, Options{
				Targets: []Target{a, b}, Owner: "relay-7", Workers: 1,
				LeaseSlack: slack, IdlePoll: time.Hour,
			})
			runDispatcher(t, h.d)
			// Once both loops kept up, nothing wakes them: they hold no slot.
			waitKeepingUp(t, h.d, "a", "b")
			if tt.setup != nil {
				if held := tt.setup(t, h.d); held != nil {
					defer held.Cancel()
				}
			}
			// Until comes from the injected clock, not the wall clock.
			clock.Advance(90 * time.Minute)

			r := reserve(t, h.d, tt.reserve...)
			if r != nil {
				defer r.Cancel()
			}
			if tt.want == nil {
				require.Nil(t, r)
			} else {
				require.NotNil(t, r)
				require.Equal(t, store.HandoffLease{
					Targets: tt.want, Owner: "relay-7", Until: clock.Now().Add(tt.wantUntil),
				}, r.Lease())
			}
			// Exactly the reserved workers are taken, one per target.
			for _, name := range []string{"a", "b"} {
				want := tt.held[name]
				if slices.Contains(tt.want, name) {
					want++
				}
				require.Len(t, h.d.byName[name].sem, want, "workers taken on %s", name)
			}
		})
	}
}

func TestReservationCancelGivesWorkersBack(t *testing.T) {
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{
		Targets:  []Target{testTarget("a", noTarget), testTarget("b", noTarget)},
		Workers:  1,
		IdlePoll: time.Hour,
		// Long enough that a drain which reaches it is a failure here.
		DrainTimeout: time.Minute,
	})
	stop := runDispatcher(t, h.d)
	waitKeepingUp(t, h.d, "a", "b")

	for i := range 3 {
		r := reserveEventually(t, h.d, "a")
		require.Nil(t, reserve(t, h.d, "a"), "round %d: the only worker is reserved", i)
		r.Cancel()
	}
	// Both targets at once, then each alone: Cancel gave both back.
	r := reserveEventually(t, h.d, "a", "b")
	require.Nil(t, reserve(t, h.d, "a", "b"))
	r.Cancel()
	reserveEventually(t, h.d, "a").Cancel()
	reserveEventually(t, h.d, "b").Cancel()

	// Every Reserve was matched by a Done: the drain has nothing to wait for.
	began := time.Now()
	stop(5 * time.Second)
	require.Less(t, time.Since(began), 5*time.Second)
	require.Zero(t, h.logs.count("drain timeout reached"))
	require.Empty(t, h.d.byName["a"].sem)
	require.Empty(t, h.d.byName["b"].sem)
}

func TestReservationHoldsTheDrainUntilStartOrCancel(t *testing.T) {
	for _, end := range []string{"Cancel", "Start without deliveries"} {
		t.Run(end, func(t *testing.T) {
			st := newFakeStore(time.Now)
			h := newHarness(t, st, Options{
				Targets:      []Target{testTarget("a", noTarget)},
				Workers:      1,
				IdlePoll:     time.Hour,
				DrainTimeout: time.Minute,
			})
			cancel, done := startRun(t, h.d)
			waitKeepingUp(t, h.d, "a")
			r := reserve(t, h.d, "a")
			require.NotNil(t, r)

			cancel()
			// The loops stopped and the drain began ...
			require.Eventually(t, func() bool { return !isLive(h.d) }, 5*time.Second, time.Millisecond)
			require.Nil(t, reserve(t, h.d, "a"), "Reserve during the drain")
			// ... and waits for the reservation, as for an attempt in flight.
			select {
			case <-done:
				t.Fatal("Run returned while a reservation was outstanding")
			case <-time.After(100 * time.Millisecond):
			}
			if end == "Cancel" {
				r.Cancel()
			} else {
				r.Start(nil)
			}
			waitRun(t, done, 5*time.Second)
			require.Zero(t, h.logs.count("drain timeout reached"))
			require.Empty(t, h.d.byName["a"].sem)
		})
	}
}

// claimSpy is a real SQLite store that remembers which deliveries its claims
// returned.
type claimSpy struct {
	*sqlite.Store
	mu      sync.Mutex
	claims  int
	claimed map[int64]int
}

func (s *claimSpy) Claim(ctx context.Context, req store.ClaimRequest) ([]event.Delivery, error) {
	ds, err := s.Store.Claim(ctx, req)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims++
	for _, d := range ds {
		s.claimed[d.ID]++
	}
	return ds, err
}

func (s *claimSpy) timesClaimed(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claimed[id]
}

// find reads one delivery back from the store; ok is false when it cannot.
func (s *claimSpy) find(target string, id int64) (event.Delivery, bool) {
	ds, err := s.List(context.Background(), store.ListFilter{Target: target})
	if err != nil {
		return event.Delivery{}, false
	}
	i := slices.IndexFunc(ds, func(d event.Delivery) bool { return d.ID == id })
	if i < 0 {
		return event.Delivery{}, false
	}
	return ds[i], true
}

// delivery reads one delivery back from the store.
func (s *claimSpy) delivery(t *testing.T, target string, id int64) event.Delivery {
	t.Helper()
	d, ok := s.find(target, id)
	require.True(t, ok, "delivery %d of %s not found", id, target)
	return d
}

// delivered reports whether the delivery is delivered; for Eventually.
func (s *claimSpy) delivered(target string, id int64) func() bool {
	return func() bool {
		d, ok := s.find(target, id)
		return ok && d.Status == event.StatusDelivered
	}
}

func newSQLiteSpy(t *testing.T) *claimSpy {
	t.Helper()
	log, _ := newTestLogger()
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "relay.db"), Logger: log})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return &claimSpy{Store: st, claimed: make(map[int64]int)}
}

func msgEvent(id string) event.Event {
	return event.Event{
		Key: event.MsgKey(id), Kind: event.KindMsg, Source: event.SourceWebhook, MsgID: id,
		Body: []byte(`{"tip":"msg","msg_data":{"msg_id":` + id + `}}`), ReceivedAt: time.Now(),
	}
}

func TestReservationStartAttemptsHandedOffDeliveries(t *testing.T) {
	recA := newRecorder(t, nil)
	recB := newRecorder(t, status(http.StatusNoContent))
	st := newSQLiteSpy(t)
	h := newDispatcherOver(t, st, Options{
		Targets: []Target{testTarget("a", recA.URL), testTarget("b", recB.URL)},
		Owner:   "relay-1",
		// a's second worker is free while the first attempts the handed-off
		// delivery: the wake for b's unleased delivery makes a's loop claim
		// too, and that claim must not return a's leased delivery.
		Workers:  2,
		IdlePoll: time.Hour,
	})
	stop := runDispatcher(t, h.d)
	waitKeepingUp(t, h.d, "a", "b")
	ctx := context.Background()

	// The event goes to a and b; only a's worker is reserved.
	r := reserve(t, h.d, "a")
	require.NotNil(t, r)
	lease := r.Lease()
	require.Equal(t, []string{"a"}, lease.Targets)
	require.Equal(t, "relay-1", lease.Owner)
	ev := msgEvent("1")
	ds, err := st.IngestHandoff(ctx, ev, []string{"a", "b"}, lease)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, "a", ds[0].Target)
	handedOff := ds[0].ID
	r.Start(ds)

	got := recA.next(t, 5*time.Second)
	require.Equal(t, ev.Body, got.body)
	require.Equal(t, string(ev.Key), got.header.Get("webhook-id"))
	require.Equal(t, "1", got.header.Get("X-Wamm-Relay-Attempt"))
	// b's delivery was written unleased, so b's loop claims it as usual.
	require.Equal(t, ev.Body, recB.next(t, 5*time.Second).body)

	require.Eventually(t, st.delivered("a", handedOff), 5*time.Second, 5*time.Millisecond)
	da := st.delivery(t, "a", handedOff)
	require.Equal(t, 1, da.Attempts)
	require.Equal(t, http.StatusOK, da.LastStatusCode)
	require.Empty(t, da.LastError)

	var bID int64
	require.Eventually(t, func() bool {
		bs, err := st.List(ctx, store.ListFilter{Target: "b"})
		if err != nil || len(bs) != 1 || bs[0].Status != event.StatusDelivered {
			return false
		}
		bID = bs[0].ID
		return true
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1, st.delivery(t, "b", bID).Attempts)

	// a's workers are all free again once the target answered.
	reserveEventually(t, h.d, "a").Cancel()
	require.Eventually(t, func() bool { return len(h.d.byName["a"].sem) == 0 }, 5*time.Second, time.Millisecond)

	stop(5 * time.Second)
	require.Zero(t, st.timesClaimed(handedOff), "the handed-off delivery must never be claimed")
	require.Equal(t, 1, st.timesClaimed(bID), "the spy sees claims")
	require.EqualValues(t, 1, recA.calls.Load(), "exactly one request for the handed-off delivery")
	require.EqualValues(t, 1, recB.calls.Load())
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_deliveries_total", map[string]string{"target": "a", "outcome": "delivered"}))
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_delivery_latency_seconds", map[string]string{"target": "a"}))
	require.Zero(t, h.logs.count("outcome not recorded"))
	require.Zero(t, h.logs.count("record outcome failed"))
}

func TestReservationStartGivesBackWorkersWithoutADelivery(t *testing.T) {
	recA := newRecorder(t, nil)
	recB := newRecorder(t, nil)
	st := newSQLiteSpy(t)
	h := newDispatcherOver(t, st, Options{
		Targets:      []Target{testTarget("a", recA.URL), testTarget("b", recB.URL)},
		Owner:        "relay-1",
		Workers:      1,
		IdlePoll:     time.Hour,
		DrainTimeout: time.Minute,
	})
	stop := runDispatcher(t, h.d)
	waitKeepingUp(t, h.d, "a", "b")

	// Both reserved, but the event is routed to a only.
	r := reserve(t, h.d, "a", "b")
	require.NotNil(t, r)
	lease := r.Lease()
	require.Equal(t, []string{"a", "b"}, lease.Targets)
	ds, err := st.IngestHandoff(context.Background(), msgEvent("2"), []string{"a"},
		store.HandoffLease{Targets: []string{"a"}, Owner: lease.Owner, Until: lease.Until})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	r.Start(ds)

	// b's only worker is free again, without any attempt on b.
	reserveEventually(t, h.d, "b").Cancel()
	recA.next(t, 5*time.Second)
	require.Eventually(t, st.delivered("a", ds[0].ID), 5*time.Second, 5*time.Millisecond)
	reserveEventually(t, h.d, "a").Cancel()

	// Start(nil) gives every reserved worker back.
	r = reserve(t, h.d, "a", "b")
	require.NotNil(t, r)
	r.Start(nil)
	reserveEventually(t, h.d, "a", "b").Cancel()

	stop(5 * time.Second)
	require.Zero(t, h.logs.count("drain timeout reached"))
	require.Zero(t, recB.calls.Load())
	require.EqualValues(t, 1, recA.calls.Load())
	require.Zero(t, st.timesClaimed(ds[0].ID))
}

// A handoff whose ingest commit outlasted most of the lease is not
// attempted: another instance could claim the delivery before the attempt
// ends. The worker goes back at once, and the delivery to the claims.
func TestReservationStartSkipsALeaseAboutToEnd(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	recA := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select { // hang: an attempt would hold the only worker
		case <-release:
		case <-r.Context().Done():
		}
	})
	var elapsed atomic.Int64 // what the test's clock has moved on
	base := time.Now()
	st := newSQLiteSpy(t)
	h := newDispatcherOver(t, st, Options{
		Targets:  []Target{testTarget("a", recA.URL)},
		Owner:    "relay-1",
		Workers:  1,
		IdlePoll: time.Hour,
		Now:      func() time.Time { return base.Add(time.Duration(elapsed.Load())) },
	})
	runDispatcher(t, h.d)
	waitKeepingUp(t, h.d, "a")

	r := reserve(t, h.d, "a")
	require.NotNil(t, r)
	lease := r.Lease()
	ds, err := st.IngestHandoff(context.Background(), msgEvent("3"), []string{"a"}, lease)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	// The commit took all but a second of the lease; a's timeout is 5 s.
	elapsed.Store(int64(lease.Until.Sub(base) - time.Second))
	r.Start(ds)

	again := reserve(t, h.d, "a")
	require.NotNil(t, again, "the only worker is free at once: nothing was attempted")
	again.Cancel()
	require.Zero(t, recA.calls.Load())
}

func TestReservationHeldByAHangingAttempt(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	rec := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusOK)
	})
	var releaseOnce sync.Once
	unhang := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unhang) // before the server closes
	st := newSQLiteSpy(t)
	hang := testTarget("hang", rec.URL)
	hang.Timeout = time.Minute
	h := newDispatcherOver(t, st, Options{
		Targets:  []Target{hang},
		Owner:    "relay-1",
		Workers:  1,
		IdlePoll: time.Hour,
	})
	runDispatcher(t, h.d)
	waitKeepingUp(t, h.d, "hang")

	r := reserve(t, h.d, "hang")
	require.NotNil(t, r)
	ds, err := st.IngestHandoff(context.Background(), msgEvent("3"), []string{"hang"}, r.Lease())
	require.NoError(t, err)
	r.Start(ds)
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the handed-off attempt never reached the target")
	}

	// The attempt holds the only worker: the target is keeping up but busy.
	p := h.d.byName["hang"]
	require.True(t, p.keepingUp.Load())
	require.Nil(t, reserve(t, h.d, "hang"))

	unhang()
	reserveEventually(t, h.d, "hang").Cancel()
	require.Eventually(t, st.delivered("hang", ds[0].ID), 5*time.Second, 5*time.Millisecond)
}

func TestReservationStartedAfterShutdownReleases(t *testing.T) {
	rec := newRecorder(t, nil)
	st := newSQLiteSpy(t)
	h := newDispatcherOver(t, st, Options{
		Targets:      []Target{testTarget("a", rec.URL)},
		Owner:        "relay-1",
		Workers:      1,
		IdlePoll:     time.Hour,
		DrainTimeout: time.Minute,
	})
	cancel, done := startRun(t, h.d)
	waitKeepingUp(t, h.d, "a")
	ctx := context.Background()

	r := reserve(t, h.d, "a")
	require.NotNil(t, r)
	ds, err := st.IngestHandoff(ctx, msgEvent("4"), []string{"a"}, r.Lease())
	require.NoError(t, err)
	require.Len(t, ds, 1)

	// The ingest committed, then shutdown began: the delivery is released
	// uncharged instead of attempted.
	cancel()
	r.Start(ds)
	waitRun(t, done, 5*time.Second)

	require.Zero(t, rec.calls.Load())
	d := st.delivery(t, "a", ds[0].ID)
	require.Equal(t, event.StatusPending, d.Status)
	require.Zero(t, d.Attempts)
	require.Equal(t, 1, h.logs.count(`"msg":"delivery.released"`))
	// Released means unleased: another instance claims it at once.
	claimed, err := st.Store.Claim(ctx, store.ClaimRequest{
		Target: "a", Owner: "relay-2", Limit: 10, Lease: time.Minute, Now: time.Now(),
	})
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.Equal(t, ds[0].ID, claimed[0].ID)
	require.Equal(t, "msg:"+strconv.Itoa(4), string(claimed[0].EventKey))
}
