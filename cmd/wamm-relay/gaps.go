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

	"github.com/wamm-relay/wamm-relay/app"
)

func cmdGaps(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("gaps: missing verb (list or resolve)")
	}
	switch args[0] {
	case "list":
		return cmdGapsList(ctx, args[1:], stdout, stderr)
	case "resolve":
		return cmdGapsResolve(ctx, args[1:], stdout, stderr)
	default:
		return usagef("gaps: unknown verb %q (list or resolve)", args[0])
	}
}

func cmdGapsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gaps list", stderr)
	path := fs.String("config", "", "configuration file")
	status := fs.String("status", "open", "open, resolved or all")
	channel := fs.String("channel", "", "only gaps of this channel")
	limit := fs.Int("limit", 100, "at most this many gaps, newest first")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	f := app.GapFilter{Channel: *channel, Limit: *limit}
	switch *status {
	case "open":
		f.Open = true
	case "resolved":
		f.Resolved = true
	case "all":
	default:
		return usagef("gaps list: --status must be open, resolved or all, got %q", *status)
	}
	if *limit < 1 {
		return usagef("gaps list: --limit must be positive")
	}
	st, err := openStore(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	gaps, err := st.Gaps(ctx, f)
	if err != nil {
		return fmt.Errorf("gaps list: %w", err)
	}
	if *asJSON {
		out := make([]any, 0, len(gaps))
		for _, g := range gaps {
			out = append(out, app.GapJSON(g))
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"gaps": out})
	}
	if len(gaps) == 0 {
		fmt.Fprintf(stdout, "no %s gaps\n", *status)
		return st.Close()
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCHANNEL\tREASON\tCHAT\tDIRECTION\tAFTER\tBEFORE\tDETECTED\tRESOLVED")
	for _, g := range gaps {
		resolved := "-"
		if !g.Open() {
			resolved = g.ResolvedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Channel, g.Reason, dash(g.Chat), dash(g.Direction),
			msgAt(g.AfterMsgID, g.AfterTime), msgAt(g.BeforeMsgID, g.BeforeTime), g.DetectedAt.UTC().Format(time.RFC3339), resolved)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return st.Close()
}

func cmdGapsResolve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gaps resolve", stderr)
	path := fs.String("config", "", "configuration file")
	note := fs.String("note", "", "why the gap is resolved (e.g. \"re-sent by the CRM team\")")
	// The id may come first (gaps resolve 7 --note ...) or last.
	var idArg []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		idArg, args = args[:1], args[1:]
	} else if len(args) > 0 && !strings.HasPrefix(args[len(args)-1], "-") {
		idArg, args = args[len(args)-1:], args[:len(args)-1]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(idArg) != 1 {
		return usagef("gaps resolve: want exactly one gap id")
	}
	id, err := strconv.ParseInt(idArg[0], 10, 64)
	if err != nil || id < 1 {
		return usagef("gaps resolve: %q is not a gap id", idArg[0])
	}
	st, err := openStore(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	g, err := st.ResolveGap(ctx, id, *note, time.Now())
	if err != nil {
		return fmt.Errorf("gaps resolve: %w", err)
	}
	fmt.Fprintf(stdout, "gap %d (%s, %s) resolved at %s\n", g.ID, g.Channel, g.Reason, g.ResolvedAt.UTC().Format(time.RFC3339))
	return st.Close()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func msgAt(id, at string) string {
	switch {
	case id == "":
		return "-"
	case at == "":
		return id
	}
	return id + " (" + at + ")"
}
