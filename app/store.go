package app

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/postgres"
	"github.com/wamm-relay/wamm-relay/store/sqlite"
)

// Compile-time proof that both backends satisfy what every consumer needs.
var (
	_ store.Store = (*sqlite.Store)(nil)
	_ store.Store = (*postgres.Store)(nil)
)

// OpenStore opens the configured backend and applies its migrations.
func OpenStore(ctx context.Context, cfg config.Config, log logrus.FieldLogger) (store.Store, error) {
	switch cfg.Store.Driver {
	case config.DriverSQLite:
		st, err := sqlite.Open(ctx, sqlite.Options{Path: cfg.Store.DSN, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open sqlite store: %w", err)
		}
		return st, nil
	case config.DriverPostgres:
		st, err := postgres.Open(ctx, postgresOptions(cfg, log))
		if err != nil {
			return nil, fmt.Errorf("open postgres store: %w", err)
		}
		return st, nil
	default:
		return nil, fmt.Errorf("open store: unknown driver %q", cfg.Store.Driver)
	}
}

// postgresOptions maps [store] onto the PostgreSQL store's options.
func postgresOptions(cfg config.Config, log logrus.FieldLogger) postgres.Options {
	vacuumEvery := cfg.Store.VacuumEvery
	if vacuumEvery == 0 {
		vacuumEvery = -1 // the config's "never" (the store's 0 is its default)
	}
	return postgres.Options{DSN: cfg.Store.DSN, Logger: log, VacuumEvery: vacuumEvery}
}
