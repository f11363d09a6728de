package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/wamm-relay/wamm-relay/app"
	"github.com/wamm-relay/wamm-relay/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `wamm-relay: a durable webhook relay for the WAMM.chat API

Usage:
  wamm-relay serve        [-config PATH]
  wamm-relay check-config [-config PATH]
  wamm-relay reconcile --once [--channel C] [-config PATH]
  wamm-relay gaps list    [--status open|resolved|all] [--channel C] [--json] [-config PATH]
  wamm-relay gaps resolve ID [--note TEXT] [-config PATH]
  wamm-relay targets list [-config PATH]
  wamm-relay targets pause|resume NAME [-config PATH]
  wamm-relay deliveries list   [--status S] [--target T] [--limit N] [--json] [-config PATH]
  wamm-relay deliveries replay (--id ID... | --target T --status dead) [-config PATH]
  wamm-relay deliveries purge    --target T --yes [--force] [-config PATH]
  wamm-relay deliveries reassign --from T --to U [--force] [-config PATH]
  wamm-relay backup [-config PATH] PATH   (SQLite: online copy to a new file)
  wamm-relay demo [--duration D]
  wamm-relay healthcheck  [-config PATH] [-url URL]
  wamm-relay version

PATH defaults to $WAMM_RELAY_CONFIG, then ./config.toml.
Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// configError marks a configuration that cannot be loaded or is invalid:
// exit code 2.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// run executes one command and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts the drain, restore the default handling
	// so a second Ctrl-C or SIGTERM ends the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()

	err := dispatch(ctx, args, stdout, stderr)
	var uerr *usageError
	var cerr *configError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "wamm-relay: %v\n\n%s", err, usage)
		return 2
	case errors.As(err, &cerr):
		fmt.Fprintf(stderr, "wamm-relay: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "wamm-relay: %v\n", err)
		return 1
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("missing command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stderr)
	case "check-config":
		return cmdCheckConfig(rest, stdout, stderr)
	case "reconcile":
		return cmdReconcile(ctx, rest, stdout, stderr)
	case "deliveries":
		return cmdDeliveries(ctx, rest, stdout, stderr)
	case "gaps":
		return cmdGaps(ctx, rest, stdout, stderr)
	case "targets":
		return cmdTargets(ctx, rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "backup":
		return cmdBackup(ctx, rest, stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "wamm-relay %s\n", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return usagef("unknown command %q", cmd)
	}
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func loadConfig(path string) (config.Config, error) {
	cfg, err := config.Load(config.ResolvePath(path))
	if err != nil {
		return config.Config{}, &configError{err: err}
	}
	return cfg, nil
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	path := fs.String("config", "", "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	stopPprof, err := startPprof(os.Getenv(pprofEnv), stderr)
	if err != nil {
		return err
	}
	defer stopPprof()
	log, err := app.NewLogger(cfg.Log)
	if err != nil {
		return &configError{err: err}
	}
	app.TuneGC(cfg, log)
	a, err := app.New(ctx, app.Options{Config: cfg, Logger: log, Version: version})
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Listen(); err != nil {
		return err
	}
	if err := a.Run(ctx); err != nil {
		return err
	}
	return a.Close()
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check-config", stderr)
	path := fs.String("config", "", "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	resolved := config.ResolvePath(*path)
	cfg, err := loadConfig(resolved)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s is valid; effective configuration (secrets masked):\n", resolved)
	if err := cfg.Masked().WriteTOML(stdout); err != nil {
		return fmt.Errorf("print configuration: %w", err)
	}
	return nil
}
