package targets

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
)

func TestGateBreakerTransitions(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		at     time.Duration // since t0
		report *bool         // an attempt's result: true failed
		allow  int           // want this many of 4 allowed (checked when report is nil)
		state  string
		// changed: the report says the loop must look again (a trip, a
		// probe's end); checked when report is set.
		changed bool
	}
	fail, ok := true, false
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "failures below the threshold keep it closed", steps: []step{
			{report: &fail, state: BreakerClosed},
			{report: &fail, state: BreakerClosed},
			{report: &ok, state: BreakerClosed},
			{report: &fail, state: BreakerClosed},
			{report: &fail, state: BreakerClosed},
			{allow: 4, state: BreakerClosed},
		}},
		{name: "consecutive failures open it for the cool-down, then one probe", steps: []step{
			{report: &fail}, {report: &fail}, {report: &fail, state: BreakerOpen, changed: true},
			{at: 9 * time.Second, allow: 0, state: BreakerOpen},
			{at: 10 * time.Second, allow: 1, state: BreakerHalfOpen},
		}},
		{name: "a good probe closes it", steps: []step{
			{report: &fail}, {report: &fail}, {report: &fail, changed: true},
			{at: 10 * time.Second, allow: 1, state: BreakerHalfOpen},
			{at: 10 * time.Second, report: &ok, state: BreakerClosed, changed: true},
			{at: 10 * time.Second, report: &ok, state: BreakerClosed},
			{at: 10 * time.Second, allow: 4, state: BreakerClosed},
		}},
		{name: "a failed probe opens it again for twice as long", steps: []step{
			{report: &fail}, {report: &fail}, {report: &fail, changed: true},
			{at: 10 * time.Second, allow: 1, state: BreakerHalfOpen},
			{at: 11 * time.Second, report: &fail, state: BreakerOpen, changed: true},
			{at: 30 * time.Second, allow: 0, state: BreakerOpen},
			{at: 31 * time.Second, allow: 1, state: BreakerHalfOpen},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(Target{BreakerFailures: 3, BreakerCooldown: 10 * time.Second})
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				if s.report != nil {
					require.Equal(t, s.changed, g.report(now, *s.report), "step %d: changed", i)
				} else {
					n, _ := g.allow(now, 4)
					require.Equal(t, s.allow, n, "step %d: allowed", i)
					g.charge(now, n)
				}
				if s.state != "" {
					_, state, _ := g.snapshot(now)
					require.Equal(t, s.state, state, "step %d", i)
				}
			}
		})
	}
}

func TestGateCooldownGrowthIsCapped(t *testing.T) {
	g := newGate(Target{BreakerFailures: 1, BreakerCooldown: time.Second})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	g.report(now, true)
	for range 10 {
		_, _, until := g.snapshot(now)
		now = until
		n, _ := g.allow(now, 1)
		require.Equal(t, 1, n)
		g.charge(now, 1)
		g.report(now, true)
	}
	_, _, until := g.snapshot(now)
	require.Equal(t, maxCooldownFactor*time.Second, until.Sub(now))
}

func TestGatePauseHoldsEverything(t *testing.T) {
	g := newGate(Target{})
	now := time.Now()
	require.True(t, g.unlimited())
	require.True(t, g.setPaused(true))
	require.False(t, g.setPaused(true), "pausing twice changes nothing")
	require.False(t, g.unlimited())
	n, retry := g.allow(now, 4)
	require.Zero(t, n)
	require.True(t, retry.IsZero(), "a pause ends by a resume, not at a time")
	ok, _ := g.tryOne(now)
	require.False(t, ok)
	require.True(t, g.setPaused(false))
	ok, _ = g.tryOne(now)
	require.True(t, ok)
}

// stamps is a target that records when each request arrived.
type stamps struct {
	mu sync.Mutex
	at []time.Time
}

func (s *stamps) add(t time.Time) {
	s.mu.Lock()
	s.at = append(s.at, t)
	s.mu.Unlock()
}

func (s *stamps) all() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.at)
}

func TestRateLimitBoundsRequestsToTheTarget(t *testing.T) {
	const rate, burst, n = 50.0, 5, 40
	var arrived stamps
	limited := newRecorder(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		arrived.add(time.Now())
		w.WriteHeader(http.StatusOK)
	})
	free := newRecorder(t, nil)
	st := newFakeStore(time.Now)
	lt := testTarget("crm", limited.URL)
	lt.RateLimit, lt.RateBurst = rate, burst
	h := newHarness(t, st, Options{
		Targets: []Target{lt, testTarget("bots", free.URL)},
		Workers: 16,
	})
	for i := range n {
		st.add("crm", event.MsgKey(strconv.Itoa(i)), []byte(`{}`), event.SourceWebhook)
		st.add("bots", event.MsgKey(strconv.Itoa(i)), []byte(`{}`), event.SourceWebhook)
	}
	start := time.Now()
	h.run(t)
	require.Eventually(t, func() bool { return len(arrived.all()) == n }, 20*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return free.calls.Load() == n }, 5*time.Second, 5*time.Millisecond)

	// A token bucket lets at most burst + rate*t requests start within t of
	// the start; arrivals come after their start, never before.
	for i, at := range arrived.all() {
		earliest := time.Duration(float64(max(i+1-burst, 0)) / rate * float64(time.Second))
		require.GreaterOrEqual(t, at.Sub(start), earliest-5*time.Millisecond,
			"request %d arrived %s after the start, before the limit allows", i+1, at.Sub(start))
	}
	require.Equal(t, int32(n), limited.calls.Load())
	require.Positive(t, metric(t, h.reg, "wamm_relay_target_rate_limited_total", map[string]string{"target": "crm"}))
	require.Zero(t, metric(t, h.reg, "wamm_relay_target_rate_limited_total", map[string]string{"target": "bots"}))
	state, ok := h.d.State("crm")
	require.True(t, ok)
	require.Equal(t, rate, state.RateLimit)
}

func TestBreakerStopsAttemptsThenProbesOnce(t *testing.T) {
	clock := newFakeClock()
	probe := make(chan struct{})
	var mu sync.Mutex
	healthy := false
	crm := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		up := healthy
		mu.Unlock()
		if !up {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if n == 4 { // the probe: held until the test has looked
			select {
			case <-probe:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	bots := newRecorder(t, nil)
	st := newFakeStore(clock.Now)
	ct := testTarget("crm", crm.URL)
	ct.MaxAttempts = 10
	ct.BreakerFailures, ct.BreakerCooldown = 3, time.Minute
	h := newHarness(t, st, Options{
		Targets:  []Target{ct, testTarget("bots", bots.URL)},
		Workers:  1,
		IdlePoll: 10 * time.Millisecond, // the fake clock moves nothing by itself
	})
	h.run(t)
	for i := range 3 {
		st.add("crm", event.MsgKey(strconv.Itoa(i)), []byte(`{}`), event.SourceWebhook)
	}
	require.Eventually(t, func() bool {
		s, _ := h.d.State("crm")
		return s.Breaker == BreakerOpen
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_target_breaker_trips_total", map[string]string{"target": "crm"}))
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_target_breaker_open", map[string]string{"target": "crm"}))
	s, _ := h.d.State("crm")
	require.Equal(t, clock.Now().Add(time.Minute), s.OpenUntil)

	// Open: another target delivers, the broken one is left alone even for
	// deliveries that are due at once.
	st.add("crm", event.MsgKey("new"), []byte(`{}`), event.SourceWebhook)
	st.add("bots", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)
	bots.next(t, 5*time.Second)
	require.Equal(t, int32(3), crm.calls.Load(), "no attempt while the breaker is open")

	mu.Lock()
	healthy = true
	mu.Unlock()
	clock.Advance(time.Hour) // past the cool-down and every retry's backoff
	require.Eventually(t, func() bool { return crm.calls.Load() == 4 }, 10*time.Second, 5*time.Millisecond)
	s, _ = h.d.State("crm")
	require.Equal(t, BreakerHalfOpen, s.Breaker)
	p := h.d.byName["crm"]
	n, _ := p.gate.allow(clock.Now(), 4)
	require.Zero(t, n, "only one probe while half-open")

	close(probe)
	require.Eventually(t, func() bool {
		s, _ := h.d.State("crm")
		return s.Breaker == BreakerClosed && crm.calls.Load() == 7
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 0.0, metric(t, h.reg, "wamm_relay_target_breaker_open", map[string]string{"target": "crm"}))
	require.Eventually(t, func() bool {
		return metric(t, h.reg, "wamm_relay_deliveries_total", map[string]string{"target": "crm", "outcome": "delivered"}) == 4
	}, 5*time.Second, 5*time.Millisecond)
}

func TestPausedTargetKeepsItsQueue(t *testing.T) {
	crm := newRecorder(t, nil)
	bots := newRecorder(t, nil)
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{
		Targets:  []Target{testTarget("crm", crm.URL), testTarget("bots", bots.URL)},
		IdlePoll: 10 * time.Millisecond,
	})
	require.True(t, h.d.SetPaused("crm", true))
	require.False(t, h.d.SetPaused("nope", true))
	h.run(t)
	ids := make([]int64, 0, 5)
	for i := range 5 {
		ids = append(ids, st.add("crm", event.MsgKey(strconv.Itoa(i)), []byte(`{}`), event.SourceWebhook))
		st.add("bots", event.MsgKey(strconv.Itoa(i)), []byte(`{}`), event.SourceWebhook)
	}
	for range 5 {
		bots.next(t, 5*time.Second)
	}
	// bots' five deliveries prove the loops ran past these rows many times.
	require.Zero(t, crm.calls.Load())
	for _, id := range ids {
		require.Equal(t, event.StatusPending, st.row(id).d.Status)
		require.Zero(t, st.row(id).d.Attempts)
	}
	require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_target_paused", map[string]string{"target": "crm"}))
	for _, c := range st.claimRequests() {
		require.NotEqual(t, "crm", c.Target, "a paused target claims nothing")
	}

	require.True(t, h.d.SetPaused("crm", false))
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if st.row(id).d.Status != event.StatusDelivered {
				return false
			}
		}
		return true
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, int32(5), crm.calls.Load(), "each delivered once")
	require.Equal(t, 0.0, metric(t, h.reg, "wamm_relay_target_paused", map[string]string{"target": "crm"}))
}

// fakePauses is a PauseSource.
type fakePauses struct {
	mu    sync.Mutex
	names []string
	reads int
}

func (f *fakePauses) set(names ...string) {
	f.mu.Lock()
	f.names = names
	f.mu.Unlock()
}

func (f *fakePauses) PausedTargets(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return slices.Clone(f.names), nil
}

func TestSyncPausesAppliesTheStoreSwitch(t *testing.T) {
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{Targets: []Target{testTarget("crm", "http://127.0.0.1:1"), testTarget("bots", "http://127.0.0.1:1")}})
	src := &fakePauses{}
	src.set("crm", "gone")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.d.SyncPauses(ctx, src, 5*time.Millisecond) }()
	paused := func(name string) bool { s, _ := h.d.State(name); return s.Paused }
	require.Eventually(t, func() bool { return paused("crm") }, 5*time.Second, time.Millisecond)
	require.False(t, paused("bots"))
	src.set("bots")
	require.Eventually(t, func() bool { return paused("bots") && !paused("crm") }, 5*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// A probe taken for a handoff that is then cancelled is given back:
// otherwise the half-open breaker would wait for its result for good.
func TestGateAbandonedProbeIsGivenBack(t *testing.T) {
	g := newGate(Target{BreakerFailures: 1, BreakerCooldown: time.Second})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	require.True(t, g.report(now, true), "one failure trips it")
	now = now.Add(time.Second)

	ok, probe := g.tryOne(now)
	require.True(t, ok)
	require.True(t, probe, "the cool-down is over: this attempt is the probe")
	n, _ := g.allow(now, 4)
	require.Zero(t, n, "nothing else while the probe is out")

	g.abandonProbe()
	n, _ = g.allow(now, 4)
	require.Equal(t, 1, n, "the probe can be taken again")

	closed := newGate(Target{BreakerFailures: 3, BreakerCooldown: time.Second})
	ok, probe = closed.tryOne(now)
	require.True(t, ok)
	require.False(t, probe, "a closed breaker takes no probe")
}
