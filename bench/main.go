package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

const usage = `bench: load wamm-relay and a non-durable baseline forwarder with the same traffic.

Usage:
  go run ./bench [flags]                  run --scenario (default saturation)
  go run ./bench baseline-server [flags]  the baseline forwarder (started by the bench itself)
  go run ./bench stack-server [flags]     the relay without its store (started by the bench itself)

Scenarios:
  smoke       a few thousand webhooks and a small backlog, checks completeness (CI)
  saturation  as many webhooks/s as accepted for --duration (or --count), --sinks sinks
  steady      --rate webhooks/s for --duration: latency percentiles
  sequential  one client, each webhook after the previous answer (WAMM's pattern), for --duration
              (default 20s) or --count: ack latency percentiles
  backlog     sinks down (--sink-down) until --backlog-deliveries pile up, then up: peak RSS, drain rate
  all         saturation, steady, sequential, backlog in turn

Flags:
`

type options struct {
	scenario          string
	relayBin          string
	systems           string
	sinks             int
	conns             int
	duration          time.Duration
	count             int64
	rate              float64
	backlogDeliveries int64
	sinkDown          string
	store             string
	pgDSN             string
	workers           int
	baselineQueue     int
	backoffInitial    time.Duration
	backoffMax        time.Duration
	logLevel          string
	drainTimeout      time.Duration
	dir               string
	keep              bool
	jsonOut           string
	pprof             string
}

// servers are the subcommands the bench starts of itself as the systems
// that are not the relay.
var servers = map[string]func(args []string) error{
	"baseline-server": baselineMain,
	"stack-server":    stackMain,
}

func main() {
	if len(os.Args) > 1 {
		if sub, ok := servers[os.Args[1]]; ok {
			if err := sub(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
				os.Exit(1)
			}
			return
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	os.Exit(code)
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.scenario, "scenario", "saturation", "smoke, saturation, steady, sequential, backlog or all")
	fs.StringVar(&o.relayBin, "relay-bin", "", "relay binary to run; empty builds ./cmd/wamm-relay into the work dir")
	fs.StringVar(&o.systems, "systems", "baseline,relay", "which systems to run, in order: baseline, relay, both (= baseline,relay), stack (the relay without its store: stack.go) or its variants stack-nethttp, stack-journal, stack-nethttp-journal, stack-journal-pipelined, stack-nethttp-journal-pipelined")
	fs.IntVar(&o.sinks, "sinks", 3, "number of sink targets")
	fs.IntVar(&o.conns, "conns", 64, "concurrent generator connections")
	fs.DurationVar(&o.duration, "duration", 0, "load duration (saturation default 15s, steady default 30s, sequential default 20s)")
	fs.Int64Var(&o.count, "count", 0, "saturation, sequential: stop after this many webhooks instead of --duration")
	fs.Float64Var(&o.rate, "rate", 1000, "steady: webhooks per second")
	fs.Int64Var(&o.backlogDeliveries, "backlog-deliveries", 1_000_000, "backlog: deliveries to pile up (events x sinks)")
	fs.StringVar(&o.sinkDown, "sink-down", downUnavailable, "backlog: how sinks are down: 503 or closed")
	fs.StringVar(&o.store, "store", "sqlite", "relay store: sqlite or postgres")
	fs.StringVar(&o.pgDSN, "pg-dsn", os.Getenv("WAMM_RELAY_TEST_PG"), "postgres server URL (a fresh schema is created per run)")
	fs.IntVar(&o.workers, "workers", 16, "delivery workers per target (relay [delivery] workers; baseline the same)")
	fs.IntVar(&o.baselineQueue, "baseline-queue", 100000, "baseline and stack: in-memory queue per sink (backlog raises it to hold the backlog)")
	fs.DurationVar(&o.backoffInitial, "backoff-initial", time.Second, "relay [delivery] backoff_initial")
	fs.DurationVar(&o.backoffMax, "backoff-max", 5*time.Second, "relay [delivery] backoff_max (and the baseline's retry cap)")
	fs.StringVar(&o.logLevel, "log-level", "info", "relay [log] level")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 15*time.Minute, "how long to wait for every accepted message to reach every sink")
	fs.StringVar(&o.dir, "dir", "", "work directory (binary, configs, databases, logs); empty makes a temp dir")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.pprof, "pprof", "", "start the relay with WAMM_RELAY_PPROF=ADDR (net/http/pprof)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.sinks < 1:
		return nil, errors.New("--sinks must be at least 1")
	case o.conns < 1:
		return nil, errors.New("--conns must be at least 1")
	case o.rate <= 0:
		return nil, errors.New("--rate must be positive")
	case o.sinkDown != downUnavailable && o.sinkDown != downClosed:
		return nil, fmt.Errorf("--sink-down must be %s or %s", downUnavailable, downClosed)
	case o.store != "sqlite" && o.store != "postgres":
		return nil, errors.New("--store must be sqlite or postgres")
	}
	return o, nil
}

func (o *options) systemList() ([]string, error) {
	var out []string
	for s := range strings.SplitSeq(o.systems, ",") {
		switch s = strings.TrimSpace(s); s {
		case sysRelay, sysBaseline:
			out = append(out, s)
		case "both":
			out = append(out, sysBaseline, sysRelay)
		default:
			if !slices.Contains(stackVariants, s) {
				return nil, fmt.Errorf("unknown system %q in --systems", s)
			}
			out = append(out, s)
		}
	}
	// The report has one column per system: each may run once.
	for i, s := range out {
		if slices.Contains(out[:i], s) {
			return nil, fmt.Errorf("system %q appears twice in --systems", s)
		}
	}
	return out, nil
}

// run executes the chosen scenarios and returns the exit code: 0 when every
// completeness check passed, 1 otherwise, 2 on bad flags.
func run(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	o, err := parseOptions(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0, nil
	}
	if err != nil {
		return 2, err
	}
	systems, err := o.systemList()
	if err != nil {
		return 2, err
	}
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "wamm-relay-bench-"); err != nil {
			return 1, fmt.Errorf("make work dir: %w", err)
		}
		if !o.keep {
			defer os.RemoveAll(o.dir)
		}
	} else if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return 1, fmt.Errorf("make work dir: %w", err)
	}
	if o.relayBin == "" {
		fmt.Fprintln(stdout, "building ./cmd/wamm-relay ...")
		if o.relayBin, err = buildRelay(o.dir); err != nil {
			return 1, err
		}
	}

	var scenarios []string
	switch o.scenario {
	case "all":
		scenarios = []string{"saturation", "steady", "sequential", "backlog"}
	case "smoke", "saturation", "steady", "sequential", "backlog":
		scenarios = []string{o.scenario}
	default:
		return 2, fmt.Errorf("unknown --scenario %q", o.scenario)
	}

	report := newReport(o)
	fmt.Fprint(stdout, report.machine())
	ok := true
	for _, sc := range scenarios {
		res, err := runScenario(ctx, o, sc, systems, stdout)
		if err != nil {
			return 1, fmt.Errorf("scenario %s: %w", sc, err)
		}
		report.Scenarios = append(report.Scenarios, res...)
		for _, r := range res {
			ok = ok && r.Complete()
		}
	}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, report.table())
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(report, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return 1, fmt.Errorf("write %s: %w", o.jsonOut, err)
		}
	}
	if !ok {
		return 1, errors.New("completeness check failed: some accepted message did not reach every sink")
	}
	return 0, nil
}

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }
