package main

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"
)

// latency is a summary in milliseconds.
type latency struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

func latencyOf(s summary) latency {
	f := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return latency{N: s.N(), P50: f(s.P(0.50)), P90: f(s.P(0.90)), P99: f(s.P(0.99)), P999: f(s.P(0.999)), Max: f(s.Max())}
}

// result is one system's figures in one scenario.
type result struct {
	Scenario string `json:"scenario"`
	System   string `json:"system"`
	Store    string `json:"store,omitempty"`
	Sinks    int    `json:"sinks"`

	Accepted    int64  `json:"accepted"`
	Rejected    int64  `json:"rejected"`
	Failed      int64  `json:"failed"`
	Duplicates  int64  `json:"duplicate_answers"`
	ErrorSample string `json:"error_sample,omitempty"`

	LoadSeconds    float64 `json:"load_seconds"`
	AcceptedPerSec float64 `json:"accepted_per_sec"`
	// EventsPerSec: messages that reached every sink, divided by the time
	// from the first send to the last such arrival.
	EventsComplete   int64   `json:"events_complete"`
	E2ESeconds       float64 `json:"e2e_seconds"`
	EventsPerSec     float64 `json:"events_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`

	Ack latency `json:"ack_latency"`
	// E2E: generator send start -> first arrival at a sink, per delivery.
	E2E latency `json:"e2e_latency"`

	// CPU time per accepted webhook: the system's process, and the bench
	// process (generator and sinks) for comparison. Unlike rates, these
	// barely move with the load of other processes on the machine.
	CPUPerEvent      float64 `json:"cpu_us_per_event"`
	BenchCPUPerEvent float64 `json:"bench_cpu_us_per_event"`

	PeakRSS      int64   `json:"peak_rss_bytes"`
	Missing      []int64 `json:"missing_per_sink"`
	Redeliveries int64   `json:"redeliveries"`
	Malformed    int64   `json:"malformed_at_sinks"`
	SinkConns    int64   `json:"sink_connections"`

	// Backlog only.
	PileupSeconds         float64 `json:"pileup_seconds,omitempty"`
	PileupPerSec          float64 `json:"pileup_accepted_per_sec,omitempty"`
	PileupPeakRSS         int64   `json:"pileup_peak_rss_bytes,omitempty"`
	DrainSeconds          float64 `json:"drain_seconds,omitempty"`
	DrainDeliveriesPerSec float64 `json:"drain_deliveries_per_sec,omitempty"`
	DrainPeakRSS          int64   `json:"drain_peak_rss_bytes,omitempty"`

	// PG is the PostgreSQL server's CPU over the part, with --store
	// postgres (pgcpu.go), for every system: during the baseline's part it
	// is what other clients of the server cost.
	PG *pgCPU `json:"postgres_cpu,omitempty"`

	LoadAvg string `json:"loadavg_after"`
}

// Complete reports whether every accepted message reached every sink.
func (r result) Complete() bool {
	if r.Accepted == 0 {
		return false
	}
	for _, m := range r.Missing {
		if m != 0 {
			return false
		}
	}
	return true
}

func runScenario(ctx context.Context, o *options, sc string, systems []string, out io.Writer) ([]result, error) {
	var res []result
	for _, sys := range systems {
		fmt.Fprintf(out, "== %s: %s\n", sc, sys)
		r, err := runOne(ctx, o, sc, sys, out)
		if err != nil {
			return res, fmt.Errorf("%s: %w", sys, err)
		}
		fmt.Fprintf(out, "   accepted %d (%.0f/s), %d events at every sink (%.0f/s), ack p99 %.2f ms, CPU %.0f µs/event (bench %.0f), peak RSS %s, missing %v, load %s\n",
			r.Accepted, r.AcceptedPerSec, r.EventsComplete, r.EventsPerSec, r.Ack.P99, r.CPUPerEvent, r.BenchCPUPerEvent, mib(r.PeakRSS), r.Missing, r.LoadAvg)
		if r.PG != nil {
			fmt.Fprintf(out, "   PostgreSQL server CPU %.1f s in %.1f s (relay's backends %.1f s, background %.1f s)\n",
				r.PG.Server, r.PG.Seconds, r.PG.Relay, r.PG.Background)
		}
		res = append(res, r)
	}
	return res, nil
}

func runOne(ctx context.Context, o *options, sc, sys string, out io.Writer) (res result, err error) {
	tr := newTracker(o.sinks)
	sinks := make([]*sink, 0, o.sinks)
	urls := make([]string, 0, o.sinks)
	defer func() {
		for _, s := range sinks {
			s.Close()
		}
	}()
	for i := range o.sinks {
		s, err := startSink(i, tr)
		if err != nil {
			return res, err
		}
		sinks = append(sinks, s)
		urls = append(urls, s.URL())
	}

	maxAttempts := 25
	backlogEvents := (o.backlogDeliveries + int64(o.sinks) - 1) / int64(o.sinks)
	oo := *o
	if sc == "backlog" || sc == "smoke" {
		// Nothing may go dead while the sinks are down.
		maxAttempts = 1_000_000
		oo.baselineQueue = max(o.baselineQueue, int(backlogEvents)+1)
	}
	p, cleanup, err := startSystem(ctx, &oo, sys, o.dir, urls, maxAttempts)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	g := newGenerator(webhookURL(p), o.conns)
	res = result{Scenario: sc, System: sys, Sinks: o.sinks}
	if sys == sysRelay {
		res.Store = o.store
	}
	stopProgress := progress(out, g, tr)
	defer stopProgress()

	var pgm *pgMeter
	if o.store == "postgres" {
		if m, perr := startPGMeter(ctx, o.pgDSN, p.pgApp); perr != nil {
			fmt.Fprintf(out, "   no PostgreSQL server CPU: %v\n", perr)
		} else {
			pgm = m
			defer func() {
				if pgm != nil {
					_, _ = pgm.finish(ctx)
				}
			}()
		}
	}
	cpu0, benchCPU0 := p.cpuTime(), selfCPU()
	start := time.Now()
	switch sc {
	case "saturation":
		d := o.duration
		if d == 0 {
			d = 15 * time.Second
		}
		lctx, cancel := context.WithCancel(ctx)
		if o.count == 0 {
			lctx, cancel = context.WithTimeout(ctx, d)
		}
		g.closedLoop(lctx, o.conns, o.count)
		cancel()
	case "sequential":
		sequential(ctx, o, g)
	case "steady":
		d := o.duration
		if d == 0 {
			d = 30 * time.Second
		}
		g.openLoop(ctx, o.rate, d, o.conns)
	case "backlog":
		for _, s := range sinks {
			s.SetDown(o.sinkDown)
		}
		g.closedLoop(ctx, o.conns, backlogEvents)
		res.PileupSeconds = time.Since(start).Seconds()
		res.PileupPerSec = float64(g.accepted.Load()) / res.PileupSeconds
		res.PileupPeakRSS = p.peak()
		p.resetPeak()
		fmt.Fprintf(out, "   pile-up: %d events (%d deliveries) in %.1fs, peak RSS %s; sinks up\n",
			g.accepted.Load(), g.accepted.Load()*int64(o.sinks), res.PileupSeconds, mib(res.PileupPeakRSS))
		drainStart := time.Now()
		for _, s := range sinks {
			if err := s.SetUp(); err != nil {
				return res, err
			}
		}
		wctx, cancel := context.WithTimeout(ctx, o.drainTimeout)
		last, err := tr.waitComplete(wctx, g.accepted.Load())
		cancel()
		if err != nil {
			return res, err
		}
		res.DrainSeconds = last.Sub(drainStart).Seconds()
		res.DrainDeliveriesPerSec = float64(tr.deliveredCount()) / res.DrainSeconds
		res.DrainPeakRSS = p.peak()
	case "smoke":
		// Sinks up, then down (503) while more arrives, then up again: the
		// relay must deliver everything, retries included.
		g.closedLoop(ctx, min(o.conns, 16), 1000)
		for _, s := range sinks {
			s.SetDown(downUnavailable)
		}
		g.closedLoop(ctx, min(o.conns, 16), 500)
		for _, s := range sinks {
			if err := s.SetUp(); err != nil {
				return res, err
			}
		}
	default:
		return res, fmt.Errorf("unknown scenario %q", sc)
	}
	res.LoadSeconds = time.Since(start).Seconds()
	if sc == "backlog" {
		res.LoadSeconds = res.PileupSeconds
	}

	wctx, cancel := context.WithTimeout(ctx, o.drainTimeout)
	last, err := tr.waitComplete(wctx, g.accepted.Load())
	cancel()
	if err != nil {
		return res, err
	}
	stopProgress()
	if pgm != nil {
		pg, err := pgm.finish(ctx)
		pgm = nil
		if err != nil {
			return res, fmt.Errorf("measure postgres CPU: %w", err)
		}
		res.PG = &pg
	}

	res.Accepted, res.Rejected, res.Failed, res.Duplicates = g.accepted.Load(), g.rejected.Load(), g.failed.Load(), g.duplicates.Load()
	res.ErrorSample = g.errorSample()
	res.AcceptedPerSec = float64(res.Accepted) / res.LoadSeconds
	res.EventsComplete, _, _ = tr.state()
	res.E2ESeconds = last.Sub(start).Seconds()
	res.EventsPerSec = float64(res.EventsComplete) / res.E2ESeconds
	res.DeliveriesPerSec = float64(tr.deliveredCount()) / res.E2ESeconds
	res.Ack = latencyOf(g.ack.Summary())
	res.E2E = latencyOf(tr.latency.Summary())
	res.PeakRSS = p.peak()
	if res.Accepted > 0 {
		res.CPUPerEvent = float64((p.cpuTime() - cpu0).Microseconds()) / float64(res.Accepted)
		res.BenchCPUPerEvent = float64((selfCPU() - benchCPU0).Microseconds()) / float64(res.Accepted)
	}
	res.Missing = tr.missing(g.acceptedSet())
	res.Redeliveries = tr.duplicates()
	tr.mu.Lock()
	res.Malformed = tr.malformed
	tr.mu.Unlock()
	res.SinkConns = tr.conns.Load()
	res.LoadAvg = loadAvg()
	return res, nil
}

// selfCPU is the bench process's own CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// progress prints a line every 5 s until the returned stop is called.
func progress(out io.Writer, g *generator, tr *tracker) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n, _, _ := tr.state()
				fmt.Fprintf(out, "   %4.0fs accepted %d, rejected %d, failed %d, complete %d, deliveries %d\n",
					time.Since(start).Seconds(), g.accepted.Load(), g.rejected.Load(), g.failed.Load(), n, tr.deliveredCount())
			}
		}
	}()
	var stopped bool
	return func() {
		if !stopped {
			stopped = true
			close(done)
			<-finished
		}
	}
}
