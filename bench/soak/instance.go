package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// instance is one relay of the chaos soak across its incarnations: the same
// port, config and log each time it is started again after a SIGKILL.
type instance struct {
	name    string
	bin     string
	cfgPath string
	logPath string
	port    int
	base    string

	mu          sync.Mutex
	rp          *relayProc // nil while killed
	incarnation int
	startedAt   time.Time
}

// restartWithin bounds how long a killed relay may take to be ready again;
// it covers a database restart that happens at the same moment.
const restartWithin = 90 * time.Second

// start runs a new incarnation and waits until it is ready. A relay that
// exits during start (the database is down at that moment, say) is started
// again after a second, the way a supervisor would, until restartWithin.
func (in *instance) start(ctx context.Context) error {
	deadline := time.Now().Add(restartWithin)
	for {
		left := time.Until(deadline)
		rp, err := startRelay(ctx, in.bin, in.cfgPath, in.logPath, in.port, left)
		if err == nil {
			in.mu.Lock()
			in.rp = rp
			in.incarnation++
			in.startedAt = time.Now()
			in.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil || time.Now().Add(time.Second).After(deadline) {
			return fmt.Errorf("relay %s not ready within %s: %w", in.name, restartWithin, err)
		}
		time.Sleep(time.Second)
	}
}

// kill SIGKILLs the current incarnation and waits for it to be gone.
func (in *instance) kill() (pid int, err error) {
	in.mu.Lock()
	rp := in.rp
	in.rp = nil
	in.mu.Unlock()
	if rp == nil {
		return 0, fmt.Errorf("relay %s is not running", in.name)
	}
	pid = rp.cmd.Process.Pid
	if err := rp.cmd.Process.Kill(); err != nil {
		return pid, fmt.Errorf("kill relay %s: %w", in.name, err)
	}
	select {
	case err := <-rp.done:
		rp.done <- err
	case <-time.After(10 * time.Second):
		return pid, fmt.Errorf("relay %s (pid %d) still alive 10s after SIGKILL", in.name, pid)
	}
	return pid, nil
}

// current is the running incarnation, nil while killed.
func (in *instance) current() (rp *relayProc, incarnation int, started time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rp, in.incarnation, in.startedAt
}

// stop ends the current incarnation with SIGTERM.
func (in *instance) stop() error {
	rp, _, _ := in.current()
	if rp == nil {
		return nil
	}
	if err := rp.stop(); err != nil {
		return fmt.Errorf("relay %s: %w", in.name, err)
	}
	return nil
}
