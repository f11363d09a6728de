// Command soak runs the built wamm-relay binary for a long time under a
// steady webhook load, against targets that fail at random, and reports
// whether every accepted webhook reached every target exactly once, how many
// deliveries died, and whether the relay's memory and goroutines stayed flat.
// Run it from the module root:
//
//	go run ./bench/soak --duration 10m --rate 200
//
// With --chaos it runs two relays on a private PostgreSQL server, each
// through a TCP proxy, and while the load runs it SIGKILLs and restarts a
// relay, crashes and restarts the database, cuts the proxied connections and
// flaps the targets, at moments drawn from --seed (chaos.go, schedule.go):
//
//	go run ./bench/soak --chaos --duration 20m --rate 100
//
// Exit status: 0 when nothing was lost (and, with --chaos, nothing else
// broke the delivery contract), 1 otherwise or when the run could not be
// set up.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	duration  time.Duration
	rate      int
	drain     time.Duration
	sample    time.Duration
	targets   int
	failRate  float64
	hangRate  float64
	dupRate   float64
	stateRate float64
	clients   int
	bin       string
	workdir   string
	keep      bool
	lru       int
	pgDSN     string

	chaosMode bool
	chaos     chaosOptions
	retryFor  time.Duration
	verbose   bool
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to send webhooks")
	flag.IntVar(&o.rate, "rate", 200, "webhooks per second")
	flag.DurationVar(&o.drain, "drain", 5*time.Minute, "after the load, how long to wait for every delivery")
	flag.DurationVar(&o.sample, "sample", 30*time.Second, "how often to print a resource sample")
	flag.IntVar(&o.targets, "targets", 2, "number of targets (each gets every event)")
	flag.Float64Var(&o.failRate, "fail", 0.20, "fraction of target answers that are 500")
	flag.Float64Var(&o.hangRate, "hang", 0.02, "fraction of target requests that hang past the target timeout")
	flag.Float64Var(&o.dupRate, "dup", 0.05, "fraction of webhooks that repeat an already accepted one (WAMM retries)")
	flag.Float64Var(&o.stateRate, "state", 0.30, "fraction of new webhooks that are msg_state instead of msg")
	flag.IntVar(&o.clients, "clients", 32, "concurrent webhook senders")
	flag.StringVar(&o.bin, "bin", "", "wamm-relay binary; empty builds ./cmd/wamm-relay")
	flag.StringVar(&o.workdir, "workdir", "", "directory for config, database and log; empty uses a temporary one")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.StringVar(&o.pgDSN, "pg-dsn", "", "run on PostgreSQL: a DSN whose search_path names an existing, empty schema; empty runs on SQLite")
	flag.IntVar(&o.lru, "lru", 20000, "[dedup] lru_size; small enough that the cache is full early and memory should then stay flat")
	flag.BoolVar(&o.chaosMode, "chaos", false, "chaos soak: two relays on a private PostgreSQL server behind proxies, with SIGKILLs, database restarts, cut connections and target flaps")
	flag.Int64Var(&o.chaos.seed, "seed", 0, "chaos: seed of the schedule and its pauses; 0 picks one (printed)")
	flag.DurationVar(&o.chaos.killEvery, "kill-every", 3*time.Minute, "chaos: mean interval between SIGKILLs of a relay (0: none beyond the one forced in)")
	flag.DurationVar(&o.chaos.dbRestartEvery, "db-restart-every", 4*time.Minute, "chaos: mean interval between database crashes (pg_ctl -m immediate, down 1-10 s)")
	flag.DurationVar(&o.chaos.dbCutEvery, "db-cut-every", 3*time.Minute, "chaos: mean interval between cuts of every proxied database connection")
	flag.DurationVar(&o.chaos.flapEvery, "flap-every", 2*time.Minute, "chaos: mean interval between target flaps (500 to everything, or down, for 2-15 s)")
	flag.DurationVar(&o.retryFor, "retry-for", 30*time.Second, "chaos: how long a refused webhook is retried on the other relay before it counts as not acked")
	flag.BoolVar(&o.verbose, "v", false, "chaos: print every resource sample")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runner := run
	if o.chaosMode {
		runner = runChaos
	}
	ok, err := runner(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

const (
	// deliveryWorkers is [delivery] workers: at most this many deliveries
	// per target are in flight on one relay, which bounds the duplicates
	// one fault may cause.
	deliveryWorkers = 16
	webhookSecret   = "soak-webhook-secret-0123456789"
	adminToken      = "soak-admin-token-0123456789"
	targetTimeout   = time.Second
)

// sample is one look at the relay process.
type sample struct {
	at         time.Duration
	rssBytes   float64
	heapInuse  float64
	goroutines float64
	pending    float64
	dead       float64
	openFDs    float64
	inFlight   float64
}

// probeClient reads /readyz and /metrics; a relay that hangs must not hang
// the soak.
var probeClient = &http.Client{Timeout: 5 * time.Second}

type relayProc struct {
	cmd  *exec.Cmd
	base string
	done chan error
}

func run(ctx context.Context, o options) (bool, error) {
	if o.rate <= 0 || o.duration <= 0 || o.targets <= 0 || o.clients <= 0 {
		return false, errors.New("rate, duration, targets and clients must be positive")
	}
	workdir, cleanup, err := prepareWorkdir(o)
	if err != nil {
		return false, err
	}
	defer cleanup()
	bin, err := buildRelay(ctx, o, workdir)
	if err != nil {
		return false, err
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

	port, err := freePort()
	if err != nil {
		return false, err
	}
	cfgPath := filepath.Join(workdir, "soak.toml")
	if err := os.WriteFile(cfgPath, []byte(configTOML(port, workdir, o.lru, o.pgDSN, targets)), 0o600); err != nil {
		return false, fmt.Errorf("write config: %w", err)
	}
	logPath := filepath.Join(workdir, "relay.log")
	rp, err := startRelay(ctx, bin, cfgPath, logPath, port, 30*time.Second)
	if err != nil {
		return false, err
	}
	defer rp.stop()

	fmt.Printf("soak: duration=%s rate=%d/s targets=%d fail=%.0f%% hang=%.0f%% (target timeout %s) dup=%.0f%% workdir=%s\n",
		o.duration, o.rate, o.targets, o.failRate*100, o.hangRate*100, targetTimeout, o.dupRate*100, workdir)

	start := time.Now()
	idle, err := takeSample(rp, start)
	if err != nil {
		return false, err
	}
	printSample("idle-start", idle)

	gen := newGenerator([]string{rp.base}, o, 0)
	loadCtx, stopLoad := context.WithTimeout(ctx, o.duration)
	defer stopLoad()
	samples := []sample{idle}
	var sampMu sync.Mutex
	sampDone := every(loadCtx, o.sample, func() {
		s, err := takeSample(rp, start)
		if err != nil {
			fmt.Printf("soak: sample failed: %v\n", err)
			return
		}
		sampMu.Lock()
		samples = append(samples, s)
		sampMu.Unlock()
		printSample(fmt.Sprintf("load sent=%d accepted=%d", gen.sent.Load(), gen.acceptedCount()), s)
	})
	gen.run(loadCtx)
	<-sampDone
	if ctx.Err() != nil {
		return false, errors.New("interrupted")
	}
	loadEnd, err := takeSample(rp, start)
	if err != nil {
		return false, err
	}
	printSample("load-end", loadEnd)

	// Drain: wait until every accepted key reached every target.
	expected := gen.acceptedKeys()
	drainStart := time.Now()
	for {
		missing := 0
		for _, t := range targets {
			got := t.snapshot()
			for _, k := range expected {
				if got[k] == 0 {
					missing++
				}
			}
		}
		s, err := takeSample(rp, start)
		if err == nil && missing == 0 && s.pending == 0 {
			break
		}
		if time.Since(drainStart) > o.drain || ctx.Err() != nil {
			fmt.Printf("soak: drain gave up after %s with %d deliveries missing\n", time.Since(drainStart).Round(time.Second), missing)
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	drainTook := time.Since(drainStart)
	// Close every keep-alive connection (ours to the relay, the relay's to
	// the targets), so the last look counts what the relay itself holds.
	gen.client.CloseIdleConnections()
	for _, t := range targets {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = t.srv.Shutdown(sctx)
		cancel()
	}
	// Let idle loops notice the closed connections before the last look.
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
	end, err := takeSample(rp, start)
	if err != nil {
		return false, err
	}
	printSample("idle-end", end)

	// Report.
	ok := true
	fmt.Printf("soak: webhooks sent=%d accepted=%d duplicate_acks=%d (of %d resent) rejected=%d errors=%d anomalies=%d drain=%s\n",
		gen.sent.Load(), len(expected), gen.dupAcks.Load(), gen.resent.Load(), gen.rejected.Load(), gen.errors.Load(), gen.anomalies.Load(),
		drainTook.Round(time.Second))
	acceptedSet := make(map[string]bool, len(expected))
	for _, k := range expected {
		acceptedSet[k] = true
	}
	for _, t := range targets {
		got := t.snapshot()
		var lost, duplicated, extra int
		for _, k := range expected {
			switch n := got[k]; {
			case n == 0:
				lost++
			case n > 1:
				duplicated++
			}
		}
		for k := range got {
			if !acceptedSet[k] {
				extra++
			}
		}
		if lost > 0 || extra > 0 {
			ok = false
		}
		fmt.Printf("soak: target=%s expected=%d delivered=%d lost=%d duplicated=%d unexpected=%d requests=%d answered_500=%d hung=%d\n",
			t.name, len(expected), len(got), lost, duplicated, extra, t.requests.Load(), t.fails.Load(), t.hangs.Load())
	}
	if gen.anomalies.Load() > 0 {
		ok = false
	}
	fmt.Printf("soak: dead=%.0f pending=%.0f\n", end.dead, end.pending)

	sampMu.Lock()
	all := append(samples, loadEnd, end)
	sampMu.Unlock()
	maxRSS := 0.0
	for _, s := range all {
		maxRSS = max(maxRSS, s.rssBytes)
	}
	// The first load sample is the warm baseline: the start of the load
	// fills caches (LRU, SQLite page cache, connection pools) by design.
	warm := loadEnd
	if len(samples) > 1 {
		warm = samples[1]
	}
	fmt.Printf("soak: rss_mib idle_start=%.1f warm=%.1f load_end=%.1f idle_end=%.1f max=%.1f\n",
		mib(idle.rssBytes), mib(warm.rssBytes), mib(loadEnd.rssBytes), mib(end.rssBytes), mib(maxRSS))
	fmt.Printf("soak: heap_inuse_mib idle_start=%.1f warm=%.1f load_end=%.1f idle_end=%.1f\n",
		mib(idle.heapInuse), mib(warm.heapInuse), mib(loadEnd.heapInuse), mib(end.heapInuse))
	fmt.Printf("soak: goroutines idle_start=%.0f warm=%.0f load_end=%.0f idle_end=%.0f; open_fds idle_start=%.0f idle_end=%.0f\n",
		idle.goroutines, warm.goroutines, loadEnd.goroutines, end.goroutines, idle.openFDs, end.openFDs)
	if end.dead > 0 {
		fmt.Println("soak: note: dead deliveries are expected only when a key failed max_attempts times in a row")
	}
	if err := rp.stop(); err != nil {
		fmt.Printf("soak: relay stop: %v (log: %s)\n", err, logPath)
		ok = false
	} else {
		fmt.Println("soak: relay stopped cleanly")
	}
	if ok {
		fmt.Println("soak: PASS")
	} else {
		fmt.Println("soak: FAIL")
	}
	return ok, nil
}

// prepareWorkdir makes the work directory; cleanup removes a temporary one
// unless --keep.
func prepareWorkdir(o options) (dir string, cleanup func(), err error) {
	if o.workdir != "" {
		if err := os.MkdirAll(o.workdir, 0o755); err != nil {
			return "", nil, fmt.Errorf("make work directory: %w", err)
		}
		return o.workdir, func() {}, nil
	}
	d, err := os.MkdirTemp("", "wamm-relay-soak-")
	if err != nil {
		return "", nil, fmt.Errorf("make work directory: %w", err)
	}
	if o.keep {
		return d, func() {}, nil
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// buildRelay returns --bin, or builds ./cmd/wamm-relay into workdir.
func buildRelay(ctx context.Context, o options, workdir string) (string, error) {
	if o.bin != "" {
		return o.bin, nil
	}
	bin := filepath.Join(workdir, "wamm-relay")
	fmt.Println("soak: building ./cmd/wamm-relay")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/wamm-relay")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build wamm-relay (run from the module root): %w", err)
	}
	return bin, nil
}

// every runs fn every d until ctx ends; the channel closes when it has.
func every(ctx context.Context, d time.Duration, fn func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				fn()
			}
		}
	}()
	return done
}

func mib(b float64) float64 { return b / (1 << 20) }

func printSample(label string, s sample) {
	fmt.Printf("soak: t=%-6s %-36s rss=%.1fMiB heap_inuse=%.1fMiB goroutines=%.0f fds=%.0f pending=%.0f dead=%.0f\n",
		s.at.Round(time.Second), label, mib(s.rssBytes), mib(s.heapInuse), s.goroutines, s.openFDs, s.pending, s.dead)
}

func configTOML(port int, workdir string, lru int, pgDSN string, targets []*targetServer) string {
	driver, dsn := "sqlite", filepath.Join(workdir, "relay.db")
	if pgDSN != "" {
		driver, dsn = "postgres", pgDSN
	}
	var b strings.Builder
	fmt.Fprintf(&b, `[server]
listen = "127.0.0.1:%d"
webhook_secret = %q
admin_token = %q
shutdown_timeout = "15s"

[reconcile]
enabled = false

[dedup]
lru_size = %d

[store]
driver = %q
dsn = %q

[delivery]
workers = %d
timeout = %q
max_attempts = 25
backoff_initial = "200ms"
backoff_max = "5s"

[log]
level = "warn"
format = "json"
`, port, webhookSecret, adminToken, lru, driver, dsn, deliveryWorkers, targetTimeout.String())
	for _, t := range targets {
		fmt.Fprintf(&b, "\n[[targets]]\nname = %q\nurl = %q\n", t.name, t.url)
	}
	return b.String()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startRelay starts the binary and waits up to ready for /readyz to answer
// 200. The log is appended to, so a restarted relay keeps its history.
func startRelay(ctx context.Context, bin, cfgPath, logPath string, port int, ready time.Duration) (*relayProc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create relay log: %w", err)
	}
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start relay: %w", err)
	}
	rp := &relayProc{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan error, 1)}
	go func() {
		rp.done <- cmd.Wait()
		logFile.Close()
	}()
	deadline := time.Now().Add(ready)
	for {
		resp, err := probeClient.Get(rp.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return rp, nil
			}
		}
		select {
		case err := <-rp.done:
			rp.done <- err
			return nil, fmt.Errorf("relay exited during start (%v); see %s", err, logPath)
		case <-ctx.Done():
			_ = rp.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = rp.stop()
			return nil, fmt.Errorf("relay not ready within %s; see %s", ready, logPath)
		}
	}
}

// stop sends SIGTERM and waits for a clean exit; safe to call twice.
func (rp *relayProc) stop() error {
	if rp.cmd.ProcessState != nil {
		return nil
	}
	_ = rp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-rp.done:
		rp.done <- err
		if err != nil {
			return fmt.Errorf("relay exited: %w", err)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = rp.cmd.Process.Kill()
		return errors.New("relay did not stop within 30s after SIGTERM; killed")
	}
}

func takeSample(rp *relayProc, start time.Time) (sample, error) {
	s := sample{at: time.Since(start)}
	resp, err := probeClient.Get(rp.base + "/metrics")
	if err != nil {
		return s, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := splitMetric(line)
		if !ok {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			s.rssBytes = value
		case "go_memstats_heap_inuse_bytes":
			s.heapInuse = value
		case "go_goroutines":
			s.goroutines = value
		case "process_open_fds":
			s.openFDs = value
		case "wamm_relay_deliveries_pending":
			s.pending += value
		case "wamm_relay_deliveries_dead":
			s.dead += value
		case "wamm_relay_deliveries_in_flight":
			s.inFlight += value
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("read metrics: %w", err)
	}
	// Cross-check RSS with the kernel's view.
	if rss, err := procRSS(rp.cmd.Process.Pid); err == nil {
		s.rssBytes = rss
	}
	return s, nil
}

// splitMetric parses `name{labels} value` or `name value`.
func splitMetric(line string) (string, float64, bool) {
	sp := strings.LastIndexByte(line, ' ')
	if sp < 0 {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(line[sp+1:], 64)
	if err != nil {
		return "", 0, false
	}
	name := line[:sp]
	if i := strings.IndexByte(name, '{'); i >= 0 {
		name = name[:i]
	}
	return name, v, true
}

func procRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					return 0, err
				}
				return kb * 1024, nil
			}
		}
	}
	return 0, errors.New("no VmRSS line")
}
