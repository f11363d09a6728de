package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// verdict judges a chaos run once the load has stopped and the deliveries
// have drained.
type verdict struct {
	start     time.Time
	plan      []*fault
	gen       *generator
	expected  []string // acked keys
	targets   []*targetServer
	insts     []*instance
	samples   []chaosSample
	problems  []string
	drainTook time.Duration
	workers   int
}

// attribution slack: a duplicate's first delivery happened at most this long
// before the fault struck (the target answered 200; the relay died, or lost
// the database, before recording it) or after it recovered.
const attributionSlack = 3 * time.Second

// print writes the verdict block and reports whether the run passed.
func (v *verdict) print() bool {
	ok := true
	fail := func(format string, args ...any) {
		ok = false
		fmt.Printf("chaos: FAIL: "+format+"\n", args...)
	}
	happened := func(k faultKind) int { return count(v.plan, k) }
	fmt.Printf("chaos: events kills=%d db_restarts=%d db_cuts=%d flaps_500=%d flaps_down=%d\n",
		happened(faultKill), happened(faultDBRestart), happened(faultDBCut), happened(faultFlap500), happened(faultFlapDown))
	g := v.gen
	fmt.Printf("chaos: webhooks sent=%d acked=%d (late, as duplicate on a retry: %d) resent=%d duplicate_acks=%d retries=%d gave_up=%d not_sent_busy=%d anomalies=%d drain=%s\n",
		g.sent.Load(), len(v.expected), g.lateAcks.Load(), g.resent.Load(), g.dupAcks.Load(), g.retries.Load(), g.gaveUp.Load(),
		g.lagged.Load(), g.anomalies.Load(), v.drainTook.Round(time.Second))
	if g.anomalies.Load() > 0 {
		fail("%d dedup answers broke the contract (a fresh key called duplicate, or a repeat stored again)", g.anomalies.Load())
	}

	acked := make(map[string]bool, len(v.expected))
	for _, k := range v.expected {
		acked[k] = true
	}
	byFault := map[*fault][]int{} // per target
	for ti, t := range v.targets {
		got := t.snapshot()
		var lost, dupKeys, extra, unexpected, unacked, unexplained int
		for _, k := range v.expected {
			if got[k] == 0 {
				lost++
			}
		}
		for k, n := range got {
			switch {
			case !v.gen.wasTried(k):
				unexpected++
			case !acked[k]:
				unacked++ // committed, but its 200 was lost and the retries gave up
			}
			if n > 1 {
				dupKeys++
				extra += n - 1
				f := v.explain(t.firstDelivered(k))
				if f == nil {
					unexplained++
					continue
				}
				if byFault[f] == nil {
					byFault[f] = make([]int, len(v.targets))
				}
				byFault[f][ti] += n - 1
			}
		}
		fmt.Printf("chaos: target=%s expected=%d delivered=%d lost=%d duplicated=%d (extra deliveries %d, unexplained %d) unexpected=%d delivered_unacked=%d requests=%d answered_500=%d hung=%d\n",
			t.name, len(v.expected), len(got), lost, dupKeys, extra, unexplained, unexpected, unacked, t.requests.Load(), t.fails.Load(), t.hangs.Load())
		if lost > 0 {
			fail("target %s: %d acked events never delivered, e.g. %s", t.name, lost, strings.Join(v.lostKeys(got, 5), " "))
		}
		if unexpected > 0 {
			fail("target %s: %d deliveries of events never sent", t.name, unexpected)
		}
		if unexplained > 0 {
			fail("target %s: %d duplicated events no fault explains", t.name, unexplained)
		}
	}
	v.printDuplicates(byFault, fail)
	v.printResources(fail)
	for _, p := range v.problems {
		fail("%s", p)
	}
	return ok
}

// explain finds the fault that can have duplicated a delivery first made at
// first: one in flight when a relay was killed, or whose outcome could not
// be recorded because the database or the connection went away, or whose
// answer a target cut. The nearest such fault wins.
func (v *verdict) explain(first time.Time) *fault {
	var best *fault
	var bestGap time.Duration
	for _, f := range v.plan {
		if f.skipped || f.hit.IsZero() {
			continue
		}
		end := f.hit.Add(attributionSlack)
		switch f.kind {
		case faultFlap500:
			continue // a 500 is not a delivery
		case faultKill:
			end = f.hit.Add(time.Second) // the victim sends nothing after it died
		case faultDBRestart:
			end = f.ended.Add(attributionSlack)
		}
		if first.Before(f.hit.Add(-attributionSlack)) || first.After(end) {
			continue
		}
		gap := first.Sub(f.hit).Abs()
		if best == nil || gap < bestGap {
			best, bestGap = f, gap
		}
	}
	return best
}

// printDuplicates reports the duplicates of each fault against its bound:
// the workers of one relay per target for a kill (what it can have had in
// flight), of both relays for a fault that hits both.
func (v *verdict) printDuplicates(byFault map[*fault][]int, fail func(string, ...any)) {
	for _, f := range v.plan {
		if f.skipped || f.hit.IsZero() || f.kind == faultFlap500 {
			continue
		}
		bound := 2 * v.workers
		what := ""
		switch f.kind {
		case faultKill:
			bound = v.workers
			what = fmt.Sprintf(" relay %s, %.0f in flight", v.insts[f.relay].name, f.inFlight)
		case faultFlapDown:
			what = " target " + v.targets[f.target].name
		}
		counts := byFault[f]
		parts := make([]string, len(v.targets))
		for ti, t := range v.targets {
			n := 0
			if counts != nil {
				n = counts[ti]
			}
			parts[ti] = fmt.Sprintf("%s=%d", t.name, n)
			if n > bound {
				fail("%s #%d: %d duplicates on %s, more than the %d that can be in flight", f.kind, f.n, n, t.name, bound)
			}
		}
		fmt.Printf("chaos: duplicates %s #%d (t=%s%s): %s (bound %d per target)\n",
			f.kind, f.n, f.hit.Sub(v.start).Round(100*time.Millisecond), what, strings.Join(parts, " "), bound)
	}
}

func (v *verdict) lostKeys(got map[string]int, n int) []string {
	var out []string
	for _, k := range v.expected {
		if got[k] == 0 {
			out = append(out, k)
			if len(out) == n {
				break
			}
		}
	}
	return out
}

// printResources compares each relay's memory and goroutines across the
// run: within its longest-lived incarnation (early third of its load samples
// against the last third), and idle before the load against idle after the
// drain (the same phase, after restarts the newest incarnation).
func (v *verdict) printResources(fail func(string, ...any)) {
	for i, in := range v.insts {
		var idleStart, idleEnd *chaosSample
		byInc := map[int][]chaosSample{}
		incs := 0
		for j := range v.samples {
			s := &v.samples[j]
			if s.inst != i {
				continue
			}
			incs = max(incs, s.incarnation)
			switch s.phase {
			case "idle-start":
				idleStart = s
			case "idle-end":
				idleEnd = s
			case "load":
				// Skip the first minute of an incarnation: caches and
				// pools fill by design.
				if s.age >= time.Minute {
					byInc[s.incarnation] = append(byInc[s.incarnation], *s)
				}
			}
		}
		if idleStart == nil || idleEnd == nil {
			fail("relay %s: no idle sample at the start or the end", in.name)
			continue
		}
		fmt.Printf("chaos: relay %s: incarnations=%d idle goroutines start=%.0f end=%.0f, open_fds start=%.0f end=%.0f, rss_mib start=%.1f end=%.1f\n",
			in.name, incs, idleStart.s.goroutines, idleEnd.s.goroutines, idleStart.s.openFDs, idleEnd.s.openFDs,
			mib(idleStart.s.rssBytes), mib(idleEnd.s.rssBytes))
		if idleEnd.s.goroutines > idleStart.s.goroutines+5 {
			fail("relay %s: idle goroutines grew from %.0f to %.0f", in.name, idleStart.s.goroutines, idleEnd.s.goroutines)
		}
		longest := 0
		for inc, ss := range byInc {
			if longest == 0 || span(ss) > span(byInc[longest]) {
				longest = inc
			}
		}
		ss := byInc[longest]
		if len(ss) < 6 || span(ss) < 3*time.Minute {
			fmt.Printf("chaos: relay %s: memory under load: no incarnation lived 4 minutes under load; too short to judge\n", in.name)
			continue
		}
		third := len(ss) / 3
		early, late := ss[:third], ss[len(ss)-third:]
		rssE, rssL := median(early, func(s sample) float64 { return s.rssBytes }), median(late, func(s sample) float64 { return s.rssBytes })
		heapE, heapL := median(early, func(s sample) float64 { return s.heapInuse }), median(late, func(s sample) float64 { return s.heapInuse })
		grE, grL := median(early, func(s sample) float64 { return s.goroutines }), median(late, func(s sample) float64 { return s.goroutines })
		flat := rssL <= rssE*1.2+4<<20 && heapL <= heapE*1.5+4<<20
		word := "flat"
		if !flat {
			word = "NOT flat"
		}
		fmt.Printf("chaos: relay %s: under load, incarnation %d over %s (%d samples, median of first/last third): rss_mib %.1f → %.1f, heap_inuse_mib %.1f → %.1f, goroutines %.0f → %.0f: %s\n",
			in.name, longest, span(ss).Round(time.Second), len(ss), mib(rssE), mib(rssL), mib(heapE), mib(heapL), grE, grL, word)
		fmt.Printf("chaos: relay %s: incarnation %d by minute of age: rss_mib %s; heap_inuse_mib %s\n", in.name, longest,
			byMinute(ss, func(s sample) float64 { return mib(s.rssBytes) }), byMinute(ss, func(s sample) float64 { return mib(s.heapInuse) }))
		if !flat {
			fail("relay %s: memory grew under load", in.name)
		}
	}
}

// byMinute lists f of the first sample in each minute of age, to show a
// trend that two medians would hide.
func byMinute(ss []chaosSample, f func(sample) float64) string {
	var parts []string
	last := time.Duration(-1)
	for _, s := range ss {
		if m := s.age.Truncate(time.Minute); m > last {
			last = m
			parts = append(parts, fmt.Sprintf("%.1f", f(s.s)))
		}
	}
	return strings.Join(parts, " ")
}

func span(ss []chaosSample) time.Duration {
	if len(ss) < 2 {
		return 0
	}
	return ss[len(ss)-1].s.at - ss[0].s.at
}

func median(ss []chaosSample, f func(sample) float64) float64 {
	xs := make([]float64, len(ss))
	for i, s := range ss {
		xs[i] = f(s.s)
	}
	sort.Float64s(xs)
	return xs[len(xs)/2]
}
