package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/app"
	"github.com/wamm-relay/wamm-relay/config"
)

// cliLogger keeps CLI verbs quiet: only warnings and errors reach stderr.
func cliLogger(cfg config.Config, stderr io.Writer) (*logrus.Logger, error) {
	log, err := app.NewLogger(cfg.Log)
	if err != nil {
		return nil, &configError{err: err}
	}
	log.SetOutput(stderr)
	if log.GetLevel() > logrus.WarnLevel {
		log.SetLevel(logrus.WarnLevel)
	}
	return log, nil
}

func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reconcile", stderr)
	path := fs.String("config", "", "configuration file")
	once := fs.Bool("once", false, "run one reconciliation pass and exit")
	channel := fs.String("channel", "", "only this channel (default: every channel with a token)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !*once {
		return usagef("reconcile: only --once is supported (serve runs the reconciler continuously)")
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	// Every channel with a token reconciles for this run, whatever its
	// enabled key says: asking for a pass is asking for it.
	withToken := 0
	found := *channel == ""
	for _, ch := range cfg.Channels() {
		if *channel != "" && ch.Name == *channel {
			found = true
		}
		if ch.Token != "" && (*channel == "" || ch.Name == *channel) {
			withToken++
		}
	}
	switch {
	case !found:
		return usagef("reconcile: --channel %q names no configured channel", *channel)
	case withToken == 0 && (*channel == "" || *channel == config.DefaultChannel):
		return &configError{err: fmt.Errorf("config: wamm.token: required for reconcile (set WAMM_TOKEN or [wamm] token)")}
	case withToken == 0:
		return &configError{err: fmt.Errorf("config: channel %s has no token to reconcile with", *channel)}
	}
	cfg.Reconcile.Enabled = true
	for i := range cfg.WAMM.Channels {
		cfg.WAMM.Channels[i].Reconcile.Enabled = true
	}
	log, err := cliLogger(cfg, stderr)
	if err != nil {
		return err
	}
	a, err := app.New(ctx, app.Options{Config: cfg, Logger: log, Version: version})
	if err != nil {
		return err
	}
	defer a.Close()
	// One poll, then the grace period (so a webhook on its way still wins),
	// then what is still missing is enqueued for the serving relay to deliver.
	for _, r := range a.Reconcilers() {
		if *channel != "" && r.Channel() != *channel {
			continue
		}
		fmt.Fprintf(stdout, "channel %s: polling msg_get_last; messages not yet relayed wait %s of grace before they are enqueued\n",
			r.Channel(), r.Grace())
		report, err := r.ReconcileAndWait(ctx)
		if err != nil {
			return fmt.Errorf("reconcile channel %s: %w", r.Channel(), err)
		}
		fmt.Fprintf(stdout, "channel %s: %s\n", r.Channel(), report)
	}
	return a.Close()
}

func cmdDeliveries(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("deliveries: missing verb (list, replay, purge or reassign)")
	}
	switch args[0] {
	case "list":
		return cmdDeliveriesList(ctx, args[1:], stdout, stderr)
	case "replay":
		return cmdDeliveriesReplay(ctx, args[1:], stdout, stderr)
	case "purge":
		return cmdDeliveriesPurge(ctx, args[1:], stdout, stderr)
	case "reassign":
		return cmdDeliveriesReassign(ctx, args[1:], stdout, stderr)
	default:
		return usagef("deliveries: unknown verb %q (list, replay, purge or reassign)", args[0])
	}
}

// openStore loads the configuration and opens its store for a CLI verb.
func openStore(ctx context.Context, path string, stderr io.Writer) (app.Store, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	log, err := cliLogger(cfg, stderr)
	if err != nil {
		return nil, err
	}
	return app.OpenStore(ctx, cfg, log)
}

func cmdDeliveriesList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deliveries list", stderr)
	path := fs.String("config", "", "configuration file")
	status := fs.String("status", "", "only deliveries in this status: pending, delivered or dead")
	target := fs.String("target", "", "only deliveries to this target")
	limit := fs.Int("limit", 100, "at most this many deliveries, newest first")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *status != "" && !app.DeliveryStatus(*status).Valid() {
		return usagef("deliveries list: --status must be pending, delivered or dead, got %q", *status)
	}
	if *limit < 1 {
		return usagef("deliveries list: --limit must be positive")
	}
	st, err := openStore(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	ds, err := st.List(ctx, app.ListFilter{Status: app.DeliveryStatus(*status), Target: *target, Limit: *limit})
	if err != nil {
		return fmt.Errorf("list deliveries: %w", err)
	}
	if *asJSON {
		return writeDeliveriesJSON(stdout, ds)
	}
	return writeDeliveriesTable(stdout, ds)
}

// deliveryView is the JSON shape of a delivery, shared with the admin API's
// field names.
type deliveryView struct {
	ID             int64      `json:"id"`
	Target         string     `json:"target"`
	EventKey       string     `json:"event_key"`
	Kind           string     `json:"kind"`
	Source         string     `json:"source"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	DeliveredAt    *time.Time `json:"delivered_at,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	LastStatusCode int        `json:"last_status_code,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func writeDeliveriesJSON(w io.Writer, ds []app.Delivery) error {
	views := make([]deliveryView, 0, len(ds))
	for _, d := range ds {
		v := deliveryView{
			ID: d.ID, Target: d.Target, EventKey: string(d.EventKey), Kind: string(d.Kind),
			Source: string(d.Source), Status: string(d.Status), Attempts: d.Attempts,
			CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, DeliveredAt: timePtr(d.DeliveredAt),
			LastError: d.LastError, LastStatusCode: d.LastStatusCode,
		}
		if d.Status == app.StatusPending {
			v.NextAttemptAt = timePtr(d.NextAttemptAt)
		}
		views = append(views, v)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]any{"deliveries": views}); err != nil {
		return fmt.Errorf("write deliveries: %w", err)
	}
	return nil
}

func writeDeliveriesTable(w io.Writer, ds []app.Delivery) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTARGET\tSTATUS\tATTEMPTS\tEVENT\tSOURCE\tCREATED\tLAST ERROR")
	for _, d := range ds {
		lastErr := d.LastError
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.ID, d.Target, d.Status, d.Attempts,
			d.EventKey, d.Source, d.CreatedAt.UTC().Format(time.RFC3339), lastErr)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write deliveries: %w", err)
	}
	if len(ds) == 0 {
		fmt.Fprintln(w, "(no deliveries)")
	}
	return nil
}

// idList collects --id flags; each may also hold a comma-separated list.
type idList []int64

func (l *idList) String() string { return fmt.Sprint(*l) }

func (l *idList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		id, err := strconv.ParseInt(strings.TrimSpace(part), 10, 64)
		if err != nil || id < 1 {
			return fmt.Errorf("invalid delivery id %q", part)
		}
		*l = append(*l, id)
	}
	return nil
}

func cmdDeliveriesReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deliveries replay", stderr)
	path := fs.String("config", "", "configuration file")
	var ids idList
	fs.Var(&ids, "id", "delivery id to replay (repeatable, or comma-separated)")
	target := fs.String("target", "", "replay this target's deliveries (with --status)")
	status := fs.String("status", "", "replay deliveries in this status: dead or delivered (with --target)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	req := app.ReplayRequest{Now: time.Now()}
	switch {
	case len(ids) > 0 && (*target != "" || *status != ""):
		return usagef("deliveries replay: use either --id or --target with --status, not both")
	case len(ids) > 0:
		req.IDs = ids
	case *target != "" && (*status == string(app.StatusDead) || *status == string(app.StatusDelivered)):
		req.Target, req.Status = *target, app.DeliveryStatus(*status)
	default:
		return usagef("deliveries replay: need --id ID..., or --target T --status dead|delivered")
	}
	st, err := openStore(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := st.Replay(ctx, req)
	if err != nil {
		return fmt.Errorf("replay deliveries: %w", err)
	}
	fmt.Fprintf(stdout, "replayed %d deliveries; they are pending again and the relay delivers them shortly\n", n)
	return nil
}
