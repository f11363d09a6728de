package targets

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Breaker states, as the admin API shows them.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// maxCooldownFactor caps how far a breaker's cool-down grows while its
// probes keep failing: BreakerCooldown times this.
const maxCooldownFactor = 16

// gate decides how many attempts a target may start now: none while it is
// paused or its breaker is open, one probe when the cool-down is over, and
// within the rate limit otherwise. The pool's loop and the handoff path ask
// it; attempts report their results to it. Safe for concurrent use.
type gate struct {
	// limiter is nil without a rate limit.
	limiter *rate.Limiter
	// failures opens the breaker after that many consecutive target
	// failures; 0 disables it.
	failures int
	cooldown time.Duration

	// pausedFlag mirrors paused for unlimited's lock-free look.
	pausedFlag atomic.Bool

	mu       sync.Mutex
	paused   bool
	state    string
	streak   int
	openedAt time.Time
	openFor  time.Duration
	probing  bool
	// onTrip and onChange are told about trips and state changes (metrics,
	// logs); called under mu, so they must not call back.
	onTrip   func()
	onChange func(state string, paused bool)
}

func newGate(t Target) *gate {
	g := &gate{failures: t.BreakerFailures, cooldown: t.BreakerCooldown, state: BreakerClosed}
	if t.RateLimit > 0 {
		burst := t.RateBurst
		if burst <= 0 {
			burst = max(1, int(math.Ceil(t.RateLimit)))
		}
		g.limiter = rate.NewLimiter(rate.Limit(t.RateLimit), burst)
	}
	return g
}

// allow returns how many of want attempts may start at now, and when to ask
// again if that is fewer than want (zero: when something else changes).
// It charges nothing: the caller charges what it starts (charge).
func (g *gate) allow(now time.Time, want int) (n int, retryAt time.Time) {
	n, retryAt, _ = g.allowWhy(now, want)
	return n, retryAt
}

// allowWhy is allow that also says whether the rate limit held attempts
// back.
func (g *gate) allowWhy(now time.Time, want int) (n int, retryAt time.Time, limited bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused || want <= 0 {
		return 0, time.Time{}, false
	}
	switch g.state {
	case BreakerOpen:
		until := g.openedAt.Add(g.openFor)
		if now.Before(until) {
			return 0, until, false
		}
		g.setState(BreakerHalfOpen)
		fallthrough
	case BreakerHalfOpen:
		if g.probing {
			return 0, time.Time{}, false
		}
		want = 1
	}
	if g.limiter != nil {
		if tokens := int(g.limiter.TokensAt(now)); tokens < want {
			want, limited = max(tokens, 0), true
		}
		if want == 0 {
			// The time the next token is there.
			r := g.limiter.ReserveN(now, 1)
			at := now.Add(r.DelayFrom(now))
			r.CancelAt(now)
			return 0, at, true
		}
	}
	return want, time.Time{}, limited
}

// charge books n attempts that start now: rate-limit tokens (into debt
// if a handoff raced the loop for the last ones) and, half-open, the probe;
// probe says it took the probe.
func (g *gate) charge(now time.Time, n int) (probe bool) {
	if n <= 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.limiter != nil {
		g.limiter.ReserveN(now, n)
	}
	if g.state == BreakerHalfOpen {
		g.probing = true
		return true
	}
	return false
}

// tryOne is allow and charge for a single attempt, for the handoff path.
// probe says the attempt is the half-open breaker's probe: if it is then
// not made, abandonProbe must give it back.
func (g *gate) tryOne(now time.Time) (ok, probe bool) {
	if g.unlimited() {
		return true, false
	}
	n, _ := g.allow(now, 1)
	if n == 1 {
		probe = g.charge(now, 1)
	}
	return n == 1, probe
}

// abandonProbe gives back a probe that was taken and never made (its
// handoff was cancelled: a duplicate, a failed ingest). Without it the
// breaker would wait for the probe's result for good, and the target
// deliver nothing until a restart.
func (g *gate) abandonProbe() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == BreakerHalfOpen {
		g.probing = false
	}
}

// unlimited reports, without locking, that nothing can hold the target
// back: the hot path then skips the gate.
func (g *gate) unlimited() bool {
	return g.limiter == nil && g.failures <= 0 && !g.pausedFlag.Load()
}

// report records an attempt's result: failed is a failure of the target
// (5xx, 429, timeout, connection), not a refusal like a 4xx. It reports
// whether that changed what the gate lets through (a trip, a probe's end),
// which is all the pool's loop must hear of: waking it after every attempt
// cost a claim and a due-time query per delivery.
func (g *gate) report(now time.Time, failed bool) (changed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failures <= 0 {
		return false
	}
	if !failed {
		g.streak = 0
		changed = g.probing || g.state != BreakerClosed
		g.probing = false
		if g.state != BreakerClosed {
			g.openFor = 0
			g.setState(BreakerClosed)
		}
		return changed
	}
	g.streak++
	changed = g.probing
	switch {
	case g.state == BreakerHalfOpen:
		changed = true
		// The probe failed: open again, for longer.
		g.probing = false
		g.openFor = min(2*max(g.openFor, g.cooldown), maxCooldownFactor*g.cooldown)
		g.openedAt = now
		g.setState(BreakerOpen)
		if g.onTrip != nil {
			g.onTrip()
		}
	case g.state == BreakerClosed && g.streak >= g.failures:
		changed = true
		g.openFor = g.cooldown
		g.openedAt = now
		g.setState(BreakerOpen)
		if g.onTrip != nil {
			g.onTrip()
		}
	}
	return changed
}

// setPaused pauses or resumes the target and reports whether that changed.
func (g *gate) setPaused(paused bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused == paused {
		return false
	}
	g.paused = paused
	g.pausedFlag.Store(paused)
	if g.onChange != nil {
		g.onChange(g.state, paused)
	}
	return true
}

func (g *gate) setState(s string) {
	g.state = s
	if g.onChange != nil {
		g.onChange(s, g.paused)
	}
}

// snapshot is the gate's state for the admin API.
func (g *gate) snapshot(now time.Time) (paused bool, breaker string, openUntil time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == BreakerOpen {
		openUntil = g.openedAt.Add(g.openFor)
	}
	return g.paused, g.state, openUntil
}
