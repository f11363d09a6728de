package main

import (
	"context"
	"io"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/app"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	duration := fs.Duration("duration", 0, "stop after this long (default: run until Ctrl-C)")
	dropRate := fs.Float64("drop", 0.2, "fraction of webhooks the simulated WAMM account loses")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dropRate < 0 || *dropRate > 1 {
		return usagef("demo: --drop must be between 0 and 1")
	}
	log := logrus.New()
	log.SetOutput(stderr)
	// The sample targets fail on purpose; their retry warnings would drown
	// the live summary, so only errors are shown.
	log.SetLevel(logrus.ErrorLevel)
	log.SetFormatter(&logrus.TextFormatter{})
	_, err := app.RunDemo(ctx, app.DemoOptions{Duration: *duration, Out: stdout, Logger: log, DropRate: *dropRate})
	return err
}
