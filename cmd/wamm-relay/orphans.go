package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/wamm-relay/wamm-relay/app"
	"github.com/wamm-relay/wamm-relay/config"
)

func configuredTargets(cfg config.Config) []string {
	names := make([]string, 0, len(cfg.Targets))
	for _, t := range cfg.Targets {
		names = append(names, t.Name)
	}
	return names
}

// cmdDeliveriesPurge ends the pending deliveries of a target removed from
// the configuration: they become dead with last_error "target removed", so
// they stay visible (deliveries list --status dead) and replayable, and
// prune removes them with their events later. It changes nothing without
// --yes, and refuses a configured target without --force.
func cmdDeliveriesPurge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deliveries purge", stderr)
	path := fs.String("config", "", "configuration file")
	target := fs.String("target", "", "the removed target whose pending deliveries to end")
	yes := fs.Bool("yes", false, "really mark them dead (without it, only say how many)")
	force := fs.Bool("force", false, "allow a target that is still configured")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *target == "" {
		return usagef("deliveries purge: --target is required")
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if slices.Contains(configuredTargets(cfg), *target) && !*force {
		return usagef("deliveries purge: target %q is still configured; remove it from the configuration first, or add --force", *target)
	}
	st, err := openStore(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	if !*yes {
		n, err := app.PendingOf(ctx, st, *target)
		if err != nil {
			return fmt.Errorf("deliveries purge: %w", err)
		}
		return usagef("deliveries purge: would mark %d pending deliveries of %q dead (last_error %q); add --yes to do it", n, *target, app.PurgedError)
	}
	n, err := st.PurgePending(ctx, app.PurgeRequest{Target: *target, Now: time.Now()})
	if err != nil {
		return fmt.Errorf("deliveries purge: %w", err)
	}
	left, err := app.PendingOf(ctx, st, *target)
	if err != nil {
		return fmt.Errorf("deliveries purge: %w", err)
	}
	fmt.Fprintf(stdout, "marked %d pending deliveries of %s dead (last_error %q); replay them with deliveries replay if needed\n", n, *target, app.PurgedError)
	if left > 0 {
		fmt.Fprintf(stdout, "%d still pending: in flight on a running relay; run again once their leases end\n", left)
	}
	return st.Close()
}

// cmdDeliveriesReassign moves the pending deliveries of a removed target to
// a configured one, due now, attempts reset.
func cmdDeliveriesReassign(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deliveries reassign", stderr)
	path := fs.String("config", "", "configuration file")
	from := fs.String("from", "", "the removed target whose pending deliveries to move")
	to := fs.String("to", "", "the configured target to move them to")
	force := fs.Bool("force", false, "allow a --from target that is still configured")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || *to == "" || *from == *to {
		return usagef("deliveries reassign: need --from T --to U, two different targets")
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	names := configuredTargets(cfg)
	if !slices.Contains(names, *to) {
		return usagef("deliveries reassign: --to %q is not a configured target (configured: %v)", *to, names)
	}
	if slices.Contains(names, *from) && !*force {
		return usagef("deliveries reassign: target %q is still configured; remove it from the configuration first, or add --force", *from)
	}
	st, err := openStore(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := st.ReassignPending(ctx, app.ReassignRequest{From: *from, To: *to, Now: time.Now()})
	if err != nil {
		return fmt.Errorf("deliveries reassign: %w", err)
	}
	left, err := app.PendingOf(ctx, st, *from)
	if err != nil {
		return fmt.Errorf("deliveries reassign: %w", err)
	}
	fmt.Fprintf(stdout, "moved %d pending deliveries from %s to %s; the relay delivers them shortly\n", n, *from, *to)
	if left > 0 {
		fmt.Fprintf(stdout, "%d still pending on %s: their events already have a delivery to %s, or they are in flight; end them with deliveries purge --target %s --yes\n", left, *from, *to, *from)
	}
	return st.Close()
}
