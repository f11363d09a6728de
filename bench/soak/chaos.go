package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wamm-relay/wamm-relay/internal/pgcluster"
)

// chaosSample is one look at one relay incarnation.
type chaosSample struct {
	inst        int
	incarnation int
	phase       string        // idle-start, load, load-end, idle-end
	age         time.Duration // since this incarnation became ready
	s           sample
}

// runChaos is the soak's --chaos mode: two relays on one private PostgreSQL
// server, each through its own TCP proxy, under the webhook load, while
// relays are SIGKILLed, the database crashes and the proxied connections
// are cut, and targets flap. The verdict is the one the README promises:
// nothing acked is lost, duplicates only where a fault explains them, and
// memory and goroutines flat.
func runChaos(ctx context.Context, o options) (bool, error) {
	if o.rate <= 0 || o.duration <= 0 || o.targets <= 0 || o.clients <= 0 {
		return false, errors.New("rate, duration, targets and clients must be positive")
	}
	if o.pgDSN != "" {
		return false, errors.New("--chaos runs its own PostgreSQL server; drop --pg-dsn")
	}
	seed := o.chaos.seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	fmt.Printf("chaos: seed=%d (repeat the schedule with --seed %d)\n", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))

	workdir, cleanup, err := prepareWorkdir(o)
	if err != nil {
		return false, err
	}
	defer cleanup()
	bin, err := buildRelay(ctx, o, workdir)
	if err != nil {
		return false, err
	}

	pg, err := pgcluster.New(filepath.Join(workdir, "pg"))
	if errors.Is(err, pgcluster.ErrUnavailable) {
		return false, fmt.Errorf("--chaos needs the PostgreSQL server binaries (initdb, pg_ctl; apt-get install postgresql): %w", err)
	}
	if err != nil {
		return false, fmt.Errorf("create the private PostgreSQL cluster: %w", err)
	}
	// A kept work directory keeps the server's log and data for a look
	// after a failure.
	kept := o.workdir != "" || o.keep
	defer func() {
		if kept {
			_ = pg.Stop("immediate")
		} else {
			_ = pg.Destroy()
		}
	}()
	if err := pg.Start(); err != nil {
		return false, fmt.Errorf("start the private PostgreSQL cluster: %w", err)
	}

	targets := make([]*targetServer, 0, o.targets)
	for i := range o.targets {
		t, err := startTarget(fmt.Sprintf("t%d", i+1), o.failRate, o.hangRate)
		if err != nil {
			return false, err
		}
		defer t.srv.Close()
		targets = append(targets, t)
	}

	c := &chaos{pg: pg, targets: targets}
	for _, name := range []string{"a", "b"} {
		p, err := newTCPProxy(pg.Addr())
		if err != nil {
			return false, err
		}
		defer p.Close()
		c.proxies = append(c.proxies, p)
		port, err := freePort()
		if err != nil {
			return false, err
		}
		// public is the first schema of search_path and exists on a fresh
		// cluster, as the relay requires.
		dsn := pgcluster.URL(p.Addr()) + "&search_path=public"
		in := &instance{
			name: name, bin: bin, port: port, base: fmt.Sprintf("http://127.0.0.1:%d", port),
			cfgPath: filepath.Join(workdir, "relay-"+name+".toml"),
			logPath: filepath.Join(workdir, "relay-"+name+".log"),
		}
		if err := os.WriteFile(in.cfgPath, []byte(configTOML(port, workdir, o.lru, dsn, targets)), 0o600); err != nil {
			return false, fmt.Errorf("write config: %w", err)
		}
		if err := in.start(ctx); err != nil {
			return false, err
		}
		defer in.stop()
		c.insts = append(c.insts, in)
	}

	plan := planChaos(rng, o.chaos, o.duration, len(c.insts), len(targets))
	fmt.Printf("chaos: duration=%s rate=%d/s targets=%d fail=%.0f%% hang=%.0f%% dup=%.0f%% relays=2 workdir=%s\n",
		o.duration, o.rate, o.targets, o.failRate*100, o.hangRate*100, o.dupRate*100, workdir)
	fmt.Printf("chaos: planned kills=%d db_restarts=%d db_cuts=%d flaps_500=%d flaps_down=%d (mean every %s / %s / %s / %s)\n",
		count(plan, faultKill), count(plan, faultDBRestart), count(plan, faultDBCut), count(plan, faultFlap500), count(plan, faultFlapDown),
		o.chaos.killEvery, o.chaos.dbRestartEvery, o.chaos.dbCutEvery, o.chaos.flapEvery)

	start := time.Now()
	c.start = start
	var sampMu sync.Mutex
	var samples []chaosSample
	look := func(phase string) {
		for i, in := range c.insts {
			rp, inc, started := in.current()
			if rp == nil {
				continue
			}
			s, err := takeSample(rp, start)
			if err != nil {
				continue // killed meanwhile, or the relay is busy; the next look counts
			}
			sampMu.Lock()
			samples = append(samples, chaosSample{inst: i, incarnation: inc, phase: phase, age: time.Since(started), s: s})
			sampMu.Unlock()
			if phase != "load" || o.verbose {
				printSample(fmt.Sprintf("%s relay=%s#%d", phase, in.name, inc), s)
			}
		}
	}
	look("idle-start")

	gen := newGenerator([]string{c.insts[0].base, c.insts[1].base}, o, o.retryFor)
	loadCtx, stopLoad := context.WithTimeout(ctx, o.duration)
	defer stopLoad()
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		c.run(loadCtx, plan)
	}()
	sampDone := every(loadCtx, o.sample, func() {
		look("load")
		fmt.Printf("chaos: t=%-7s sent=%d acked=%d retries=%d\n", time.Since(start).Round(time.Second),
			gen.sent.Load(), gen.acceptedCount(), gen.retries.Load())
	})
	gen.run(loadCtx)
	<-sampDone
	<-chaosDone // every fault that began has recovered
	if ctx.Err() != nil {
		return false, errors.New("interrupted")
	}
	for _, in := range c.insts {
		if rp, _, _ := in.current(); rp == nil {
			c.problem("relay %s is not running at the end of the load", in.name)
		}
	}
	look("load-end")

	expected := gen.acceptedKeys()
	drainTook, missing := drain(ctx, c, expected, o.drain)
	if missing > 0 {
		fmt.Printf("chaos: drain gave up after %s with %d deliveries missing\n", drainTook.Round(time.Second), missing)
	}
	// Close every keep-alive connection, so the last look counts what the
	// relays themselves hold.
	gen.client.CloseIdleConnections()
	for _, t := range targets {
		t.shutdown(ctx)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
	look("idle-end")

	sampMu.Lock()
	all := append([]chaosSample(nil), samples...)
	sampMu.Unlock()
	v := verdict{
		start: start, plan: plan, gen: gen, expected: expected, targets: targets, insts: c.insts,
		samples: all, problems: c.problemList(), drainTook: drainTook, workers: deliveryWorkers,
	}
	ok := v.print()
	for _, in := range c.insts {
		if err := in.stop(); err != nil {
			fmt.Printf("chaos: %v (log: %s)\n", err, in.logPath)
			ok = false
		}
	}
	if ok {
		fmt.Println("chaos: relays stopped cleanly")
		fmt.Println("chaos: PASS")
	} else {
		fmt.Printf("chaos: FAIL (relay logs: %s)\n", filepath.Join(workdir, "relay-*.log"))
		if o.workdir == "" && !o.keep {
			fmt.Println("chaos: rerun with --keep (and the same --seed) to keep the logs")
		}
	}
	return ok, nil
}

// drain waits until every acked key reached every target and neither relay
// has deliveries pending, or until limit. It returns how long it took and
// how many deliveries were still missing.
func drain(ctx context.Context, c *chaos, expected []string, limit time.Duration) (time.Duration, int) {
	begin := time.Now()
	for {
		missing := 0
		for _, t := range c.targets {
			got := t.snapshot()
			for _, k := range expected {
				if got[k] == 0 {
					missing++
				}
			}
		}
		pending := 0.0
		for _, in := range c.insts {
			if rp, _, _ := in.current(); rp != nil {
				if s, err := takeSample(rp, c.start); err == nil {
					pending += s.pending
				} else {
					pending++ // cannot tell; look again
				}
			}
		}
		if missing == 0 && pending == 0 {
			return time.Since(begin), 0
		}
		if time.Since(begin) > limit || ctx.Err() != nil {
			return time.Since(begin), missing
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
