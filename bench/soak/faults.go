package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wamm-relay/wamm-relay/internal/pgcluster"
)

// chaos carries out a plan against the relays, the database and the targets.
type chaos struct {
	start   time.Time // the load's start; plan times count from here
	insts   []*instance
	proxies []*tcpProxy
	pg      *pgcluster.Cluster
	targets []*targetServer

	mu       sync.Mutex
	problems []string // what must not happen: a relay or the database not coming back
}

func (c *chaos) logf(format string, args ...any) {
	fmt.Printf("chaos: t=%-7s %s\n", time.Since(c.start).Round(100*time.Millisecond), fmt.Sprintf(format, args...))
}

func (c *chaos) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.logf("PROBLEM: %s", msg)
	c.mu.Lock()
	c.problems = append(c.problems, msg)
	c.mu.Unlock()
}

// run executes the plan in lanes: relay kills one at a time, database events
// one at a time, and each target's flaps one at a time, so that an event's
// recovery never races another event of its own lane. Lanes overlap, as
// faults do in production. Events not yet due when ctx ends are skipped;
// one that has begun always recovers.
func (c *chaos) run(ctx context.Context, plan []*fault) {
	lanes := map[string][]*fault{}
	for _, f := range plan {
		lane := "relay"
		switch f.kind {
		case faultDBRestart, faultDBCut:
			lane = "db"
		case faultFlap500, faultFlapDown:
			lane = fmt.Sprintf("target-%d", f.target)
		}
		lanes[lane] = append(lanes[lane], f)
	}
	var wg sync.WaitGroup
	for _, faults := range lanes {
		wg.Go(func() {
			for _, f := range faults {
				select {
				case <-ctx.Done():
					f.skipped = true
					continue
				case <-time.After(time.Until(c.start.Add(f.at))):
				}
				c.do(f)
			}
		})
	}
	wg.Wait()
}

func (c *chaos) do(f *fault) {
	f.began = time.Now()
	defer func() { f.ended = time.Now() }()
	switch f.kind {
	case faultKill:
		c.kill(f)
	case faultDBRestart:
		c.restartDB(f)
	case faultDBCut:
		n := 0
		for _, p := range c.proxies {
			n += p.Cut()
		}
		f.hit = time.Now()
		c.logf("db-cut #%d: cut %d database connections", f.n, n)
	case faultFlap500:
		t := c.targets[f.target]
		c.logf("flap-500 #%d: target %s answers 500 to everything for %s", f.n, t.name, f.pause.Round(100*time.Millisecond))
		t.failing.Store(true)
		time.Sleep(f.pause)
		t.failing.Store(false)
		c.logf("flap-500 #%d: target %s answers normally again", f.n, t.name)
	case faultFlapDown:
		t := c.targets[f.target]
		c.logf("flap-down #%d: target %s down (listener closed, connections cut) for %s", f.n, t.name, f.pause.Round(100*time.Millisecond))
		if err := t.down(); err != nil {
			c.problem("flap-down #%d: %v", f.n, err)
		}
		f.hit = time.Now()
		time.Sleep(f.pause)
		if err := t.up(); err != nil {
			c.problem("flap-down #%d: %v", f.n, err)
			return
		}
		c.logf("flap-down #%d: target %s listening again", f.n, t.name)
	}
}

func (c *chaos) kill(f *fault) {
	in := c.insts[f.relay]
	if rp, _, _ := in.current(); rp != nil {
		if s, err := takeSample(rp, c.start); err == nil {
			f.inFlight = s.inFlight
		}
	}
	pid, err := in.kill()
	if err != nil {
		c.problem("kill #%d: %v", f.n, err)
		return
	}
	c.logf("kill #%d: SIGKILL relay %s (pid %d, %.0f deliveries in flight); restart in %s",
		f.n, in.name, pid, f.inFlight, f.pause.Round(100*time.Millisecond))
	f.hit = time.Now()
	time.Sleep(f.pause)
	began := time.Now()
	if err := in.start(context.Background()); err != nil {
		c.problem("kill #%d: %v", f.n, err)
		return
	}
	rp, inc, _ := in.current()
	c.logf("kill #%d: relay %s back (pid %d, incarnation %d, ready in %s)",
		f.n, in.name, rp.cmd.Process.Pid, inc, time.Since(began).Round(100*time.Millisecond))
}

func (c *chaos) restartDB(f *fault) {
	c.logf("db-restart #%d: pg_ctl stop -m immediate; down for %s", f.n, f.pause.Round(100*time.Millisecond))
	if err := c.pg.Stop("immediate"); err != nil {
		c.problem("db-restart #%d: stop: %v", f.n, err)
		return
	}
	f.hit = time.Now()
	time.Sleep(f.pause)
	began := time.Now()
	if err := c.pg.Start(); err != nil {
		c.problem("db-restart #%d: the database would not start again: %v", f.n, err)
		return
	}
	c.logf("db-restart #%d: database up again (start took %s)", f.n, time.Since(began).Round(100*time.Millisecond))
}

// problemList is a copy of the problems seen so far.
func (c *chaos) problemList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.problems...)
}
