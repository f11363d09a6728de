package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// schemaVersions reads the versions recorded in schema's schema_migrations.
func schemaVersions(t *testing.T, schema string) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsnFor(t, pgURL(t), schema, "versions"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations ORDER BY version")
	require.NoError(t, err)
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = int(v)
	}
	return out
}

// allVersions is 1..latest, whatever latest is in this build.
func allVersions(t *testing.T) []int {
	t.Helper()
	ms, err := loadMigrations()
	require.NoError(t, err)
	out := make([]int, len(ms))
	for i, m := range ms {
		out[i] = m.version
	}
	return out
}

func TestMigrateConcurrentOpensOnFreshSchema(t *testing.T) {
	schema := newSchema(t)
	dsn := dsnFor(t, pgURL(t), schema, "concurrent-open")
	const n = 4
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		errs   = make([]error, n)
		stores = make([]*Store, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stores[i], errs[i] = Open(ctx, Options{DSN: dsn, Logger: testLogger(t)})
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "open %d", i)
		require.NoError(t, stores[i].Close())
	}
	require.Equal(t, allVersions(t), schemaVersions(t, schema), "every migration applied exactly once")
}

func TestMigrateWaitsForAnotherInstanceWithinBound(t *testing.T) {
	schema := newSchema(t)
	ctx := context.Background()
	// Another instance is migrating: it holds the schema's migration lock.
	holder, err := pgx.Connect(ctx, dsnFor(t, pgURL(t), schema, "holder"))
	require.NoError(t, err)
	defer holder.Close(ctx)
	_, err = holder.Exec(ctx, "SELECT pg_advisory_lock($1)", lockID(schema, "migrations"))
	require.NoError(t, err)

	octx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	started := time.Now()
	_, err = Open(octx, Options{DSN: dsnFor(t, pgURL(t), schema, "waiter"), Logger: testLogger(t),
		MigrationLockTimeout: 300 * time.Millisecond})
	require.ErrorIs(t, err, ErrMigrationLock, "a held migration lock must fail the open within its bound, got %v", err)
	require.Less(t, time.Since(started), 10*time.Second)
	require.Contains(t, err.Error(), "another instance migrating")

	// Once the other instance is done, opening again migrates.
	_, err = holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockID(schema, "migrations"))
	require.NoError(t, err)
	openStore(t, dsnFor(t, pgURL(t), schema, "waiter"), func(o *Options) { o.MigrationLockTimeout = 300 * time.Millisecond })
	require.Equal(t, allVersions(t), schemaVersions(t, schema))
}

func TestMigrateBehindLongVacuumFailsWithinBound(t *testing.T) {
	schema := newSchema(t)
	dsn := dsnFor(t, pgURL(t), schema, "behind-vacuum")
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	cfg.MaxConns = 1 // so the check below reads the migration's own session
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	ms, err := loadMigrations()
	require.NoError(t, err)
	require.NoError(t, migrateWith(ctx, pool, schema, ms, time.Second))

	// A migration that builds an index, as a new release might, queued
	// behind a VACUUM: the lock VACUUM takes (SHARE UPDATE EXCLUSIVE) held
	// by a transaction that does not end.
	next := migration{version: ms[len(ms)-1].version + 1, name: "9999_test_index.sql",
		sql: "CREATE INDEX deliveries_test_idx ON deliveries (target, created_at)"}
	holder, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE deliveries IN SHARE UPDATE EXCLUSIVE MODE")
	require.NoError(t, err)

	mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	started := time.Now()
	err = migrateWith(mctx, pool, schema, append(ms[:len(ms):len(ms)], next), 300*time.Millisecond)
	require.ErrorIs(t, err, ErrMigrationLock, "got %v", err)
	require.Less(t, time.Since(started), 10*time.Second)
	require.Contains(t, err.Error(), next.name)
	require.NotContains(t, schemaVersions(t, schema), next.version, "the timed-out migration recorded nothing")

	// The pool's sessions are back to no lock_timeout: a later statement
	// waits for a lock rather than failing.
	var lt string
	require.NoError(t, pool.QueryRow(ctx, "SHOW lock_timeout").Scan(&lt))
	require.Equal(t, "0", lt)

	require.NoError(t, tx.Rollback(ctx))
	require.NoError(t, migrateWith(ctx, pool, schema, append(ms[:len(ms):len(ms)], next), time.Second))
	require.Contains(t, schemaVersions(t, schema), next.version)
}
