package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wamm-relay/wamm-relay/config"
)

func cmdTargets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("targets: missing verb (list, pause or resume)")
	}
	switch args[0] {
	case "list":
		return cmdTargetsList(ctx, args[1:], stdout, stderr)
	case "pause":
		return cmdTargetsPause(ctx, args[1:], stdout, stderr, true)
	case "resume":
		return cmdTargetsPause(ctx, args[1:], stdout, stderr, false)
	default:
		return usagef("targets: unknown verb %q (list, pause or resume)", args[0])
	}
}

// cmdTargetsList prints each configured target with its queue and whether
// it is paused, from the store (what every instance sees).
func cmdTargetsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("targets list", stderr)
	path := fs.String("config", "", "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	paused, err := st.PausedTargets(ctx)
	if err != nil {
		return fmt.Errorf("targets list: %w", err)
	}
	stats, err := st.QueueStats(ctx)
	if err != nil {
		return fmt.Errorf("targets list: %w", err)
	}
	pending := make(map[string]int, len(stats))
	for _, s := range stats {
		pending[s.Target] = s.Pending
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSTATE\tPENDING\tRATE LIMIT\tBREAKER")
	for _, t := range cfg.Targets {
		state := "active"
		if slices.Contains(paused, t.Name) {
			state = "paused"
		}
		rate := "-"
		if t.RateLimit > 0 {
			rate = fmt.Sprintf("%g/s", t.RateLimit)
		}
		breaker := "-"
		if t.BreakerFailures > 0 {
			breaker = fmt.Sprintf("%d failures, %s", t.BreakerFailures, t.BreakerCooldown)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", t.Name, state, pending[t.Name], rate, breaker)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return st.Close()
}

// cmdTargetsPause sets the durable pause switch; running instances apply
// it within a few seconds, and it holds across restarts.
func cmdTargetsPause(ctx context.Context, args []string, stdout, stderr io.Writer, pause bool) error {
	verb := map[bool]string{true: "pause", false: "resume"}[pause]
	fs := newFlagSet("targets "+verb, stderr)
	path := fs.String("config", "", "configuration file")
	var nameArg []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		nameArg, args = args[:1], args[1:]
	} else if len(args) > 0 && !strings.HasPrefix(args[len(args)-1], "-") {
		nameArg, args = args[len(args)-1:], args[:len(args)-1]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(nameArg) != 1 {
		return usagef("targets %s: want exactly one target name", verb)
	}
	name := nameArg[0]
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(cfg.Targets, func(t config.Target) bool { return t.Name == name }) {
		return fmt.Errorf("targets %s: no configured target named %q", verb, name)
	}
	st, err := openStore(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	if pause {
		err = st.PauseTarget(ctx, name, time.Now())
	} else {
		err = st.ResumeTarget(ctx, name)
	}
	if err != nil {
		return fmt.Errorf("targets %s: %w", verb, err)
	}
	fmt.Fprintf(stdout, "target %s %sd; running relays apply it within a few seconds\n", name, verb)
	return st.Close()
}
