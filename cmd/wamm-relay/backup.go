package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/wamm-relay/wamm-relay/app"
	"github.com/wamm-relay/wamm-relay/config"
)

// cmdBackup copies a SQLite store to a new file, online: a serving relay on
// the same file keeps going. PostgreSQL is left to pg_dump (exit 2).
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", stderr)
	path := fs.String("config", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("backup: %v", err)
	}
	if fs.NArg() != 1 {
		return usagef("backup: want exactly one argument, the new file to write (PATH)")
	}
	dest := fs.Arg(0)
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if cfg.Store.Driver == config.DriverPostgres {
		return &configError{err: errors.New("backup: the store is PostgreSQL; back it up with pg_dump (see the README, \"Backup and restore\"); wamm-relay backup copies SQLite stores only")}
	}
	log, err := cliLogger(cfg, stderr)
	if err != nil {
		return err
	}
	st, err := app.OpenStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := app.Backup(ctx, st, dest); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s; to restore, stop the relay and put the copy in its place\n", cfg.Store.DSN, dest)
	return st.Close()
}
