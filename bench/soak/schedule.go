package main

import (
	"math/rand/v2"
	"sort"
	"time"
)

// faultKind names one kind of chaos event.
type faultKind string

const (
	faultKill      faultKind = "kill"       // SIGKILL a relay, start it again after a pause
	faultDBRestart faultKind = "db-restart" // pg_ctl -m immediate, start again after a pause
	faultDBCut     faultKind = "db-cut"     // cut every proxied database connection
	faultFlap500   faultKind = "flap-500"   // a target answers 500 to everything for a while
	faultFlapDown  faultKind = "flap-down"  // a target's listener is closed for a while
)

// fault is one planned chaos event; began and ended are filled in as it
// happens, so duplicates can be traced back to it.
type fault struct {
	n      int // per kind, from 1
	kind   faultKind
	at     time.Duration // since the load started
	pause  time.Duration // how long the relay, database or target stays down
	relay  int
	target int

	began    time.Time
	hit      time.Time // when the fault struck: the kill, the stop, the cut
	ended    time.Time
	inFlight float64 // kill: the victim's deliveries in flight just before
	skipped  bool
}

// chaosOptions are the mean intervals between chaos events of each kind.
type chaosOptions struct {
	seed           int64
	killEvery      time.Duration
	dbRestartEvery time.Duration
	dbCutEvery     time.Duration
	flapEvery      time.Duration
}

// planChaos draws the whole schedule up front from the seeded RNG, so a seed
// names a run. Events fall between 10% and 80% of the load, leaving its end
// for the leases of a killed relay to expire. A kind drawn zero times (a
// short run) is forced in at a fixed moment, so every short run has a kill,
// a database restart, a cut and both kinds of flap.
func planChaos(rng *rand.Rand, c chaosOptions, d time.Duration, relays, targets int) []*fault {
	lo, hi := d/10, d*8/10
	var plan []*fault
	add := func(kind faultKind, at time.Duration) {
		f := &fault{kind: kind, at: at, relay: rng.IntN(relays), target: rng.IntN(targets)}
		switch kind {
		case faultKill:
			f.pause = uniform(rng, time.Second, 5*time.Second)
		case faultDBRestart:
			f.pause = uniform(rng, time.Second, 10*time.Second)
		case faultFlap500, faultFlapDown:
			f.pause = uniform(rng, 2*time.Second, 15*time.Second)
		}
		plan = append(plan, f)
	}
	draw := func(mean time.Duration, kind func() faultKind) {
		if mean <= 0 {
			return
		}
		for at := lo + jitter(rng, mean); at < hi; at += jitter(rng, mean) {
			add(kind(), at)
		}
	}
	fixed := func(k faultKind) func() faultKind { return func() faultKind { return k } }
	draw(c.killEvery, fixed(faultKill))
	draw(c.dbRestartEvery, fixed(faultDBRestart))
	draw(c.dbCutEvery, fixed(faultDBCut))
	draw(c.flapEvery, func() faultKind {
		if rng.IntN(2) == 0 {
			return faultFlap500
		}
		return faultFlapDown
	})
	forced := []struct {
		kind faultKind
		frac float64
	}{{faultKill, 0.2}, {faultFlap500, 0.3}, {faultDBRestart, 0.45}, {faultFlapDown, 0.55}, {faultDBCut, 0.65}}
	for _, f := range forced {
		if count(plan, f.kind) == 0 {
			add(f.kind, time.Duration(float64(d)*f.frac))
		}
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].at < plan[j].at })
	seen := map[faultKind]int{}
	for _, f := range plan {
		seen[f.kind]++
		f.n = seen[f.kind]
	}
	return plan
}

func count(plan []*fault, kind faultKind) int {
	n := 0
	for _, f := range plan {
		if f.kind == kind && !f.skipped {
			n++
		}
	}
	return n
}

// jitter is an interval of mean ± 50%: random moments, but not the long
// empty stretches of exponential intervals, so a run of a given length
// always sees about duration/mean events of each kind.
func jitter(rng *rand.Rand, mean time.Duration) time.Duration {
	return uniform(rng, mean/2, mean*3/2)
}

func uniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}
