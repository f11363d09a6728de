package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the embedded migrations, named NNNN_name.sql, in
// version order.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		prefix, _, ok := strings.Cut(name, "_")
		if !ok || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("read migrations: bad file name %q", name)
		}
		v, err := strconv.Atoi(prefix)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("read migrations: bad version in %q", name)
		}
		body, err := migrationFS.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", name, err)
		}
		out = append(out, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("read migrations: version %d appears twice", out[i].version)
		}
	}
	return out, nil
}

// ErrMigrationLock: a migration waited longer than
// Options.MigrationLockTimeout for a lock, held by another instance that is
// migrating the same schema or by a long transaction (or VACUUM) on its
// tables. Nothing was changed by the migration that timed out; opening again
// once the other is done continues where it stopped.
var ErrMigrationLock = errors.New("migration lock not available")

// migrate applies the migrations not yet recorded in schema_migrations. It
// holds a session advisory lock for the schema meanwhile, so instances that
// start together migrate one after the other and the later ones find nothing
// left to do. Every lock it waits for (the advisory lock, then the tables'
// locks the DDL needs) is bounded by lockTimeout through the session's
// lock_timeout, so a migration queued behind a long VACUUM fails with
// ErrMigrationLock instead of hanging the start, and instead of blocking,
// in the lock queue, every claim and ingest that comes after it.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, lockTimeout time.Duration) error {
	migrations, err := loadMigrations()
	if err != nil {
		return err
	}
	return migrateWith(ctx, pool, schema, migrations, lockTimeout)
}

func migrateWith(ctx context.Context, pool *pgxpool.Pool, schema string, migrations []migration, lockTimeout time.Duration) (err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection for migrations: %w", err)
	}
	defer conn.Release()

	// SET takes no bound parameters; the value is an integer we format.
	if _, err := conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = %d", max(lockTimeout.Milliseconds(), 1))); err != nil {
		return fmt.Errorf("set lock_timeout for migrations: %w", err)
	}
	defer func() {
		// The pooled session goes back to the pool's (unbounded) default;
		// if that fails, end the session rather than leak the setting.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, rerr := conn.Exec(rctx, "RESET lock_timeout"); rerr != nil {
			_ = conn.Conn().Close(rctx)
		}
	}()
	lockErr := func(what string, err error) error {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
			return fmt.Errorf("%s: %w: waited %s (another instance migrating schema %q, or a long transaction or VACUUM on its tables); start again once it is done: %v",
				what, ErrMigrationLock, lockTimeout, schema, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}

	lockKey := lockID(schema, "migrations")
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return lockErr("lock migrations", err)
	}
	defer func() {
		// The caller's ctx may be done; unlock on a fresh one. If the unlock
		// fails, end the session, which drops the lock with it.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", lockKey); uerr != nil {
			_ = conn.Conn().Close(uctx)
			if err == nil {
				err = fmt.Errorf("unlock migrations: %w", uerr)
			}
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return lockErr("create schema_migrations", err)
	}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	done := make(map[int]bool, len(applied))
	latest := 0
	for _, v := range applied {
		done[int(v)] = true
		latest = max(latest, int(v))
	}
	if known := migrations[len(migrations)-1].version; latest > known {
		return fmt.Errorf("migrate: schema %q is at version %d, newer than this binary's %d", schema, latest, known)
	}
	for _, m := range migrations {
		if done[m.version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return lockErr("apply migration "+m.name, err)
		}
	}
	return nil
}

var errNoSchema = errors.New("no schema in search_path exists")
