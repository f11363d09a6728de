package postgres

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// manualVacuums is how many times deliveries in schema was vacuumed other
// than by autovacuum, read on a connection of its own.
func manualVacuums(t *testing.T, schema string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL(t))
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx,
		"SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'deliveries'", schema).Scan(&n)
	return n, err
}

// recordOutcomes ingests n events for one target, claims their deliveries
// and records each as delivered.
func recordOutcomes(t *testing.T, s *Store, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		require.NoError(t, s.Ingest(ctx, rawEvent(fmt.Sprintf("raw:vacuum-%d", i)), []string{"a"}))
	}
	ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: n, Lease: time.Minute, Now: time.Now()})
	require.NoError(t, err)
	require.Len(t, ds, n)
	for _, d := range ds {
		require.NoError(t, s.Record(ctx, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: time.Now()}))
	}
}

func TestVacuumAfterOutcomes(t *testing.T) {
	t.Run("every 4 outcomes", func(t *testing.T) {
		schema := newSchema(t)
		s := openStore(t, dsnFor(t, pgURL(t), schema, "wamm_relay_test_vacuum"), func(o *Options) { o.VacuumEvery = 4 })
		recordOutcomes(t, s, 10)
		require.Eventually(t, func() bool { return s.vacuums.Load() >= 1 }, 30*time.Second, 10*time.Millisecond,
			"10 outcomes recorded with VacuumEvery 4: the store should have vacuumed")
		require.Eventually(t, func() bool {
			n, err := manualVacuums(t, schema)
			return err == nil && n >= 1
		}, 10*time.Second, 50*time.Millisecond, "the server should count a VACUUM of this schema's deliveries")
	})
	t.Run("disabled", func(t *testing.T) {
		schema := newSchema(t)
		s := openStore(t, dsnFor(t, pgURL(t), schema, "wamm_relay_test_vacuum"), func(o *Options) { o.VacuumEvery = -1 })
		recordOutcomes(t, s, 10)
		require.NoError(t, s.Close()) // waits for anything the store started
		require.Zero(t, s.vacuums.Load())
		n, err := manualVacuums(t, schema)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// A role that does not own the table cannot vacuum it, and PostgreSQL only
// warns in its own log: the store must find out and stop trying, not count
// skipped VACUUMs as done.
func TestVacuumNeedsOwnership(t *testing.T) {
	schema := newSchema(t)
	openOnSchema(t, schema, "wamm_relay_test_vacuum") // migrates as the owner
	role := "wamm_relay_test_" + randomSuffix(t)
	adminExec(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		adminExec(t, "DROP OWNED BY "+role)
		adminExec(t, "DROP ROLE "+role)
	})
	adminExec(t, fmt.Sprintf("GRANT USAGE, CREATE ON SCHEMA %s TO %s", schema, role))
	adminExec(t, fmt.Sprintf("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO %s", schema, role))
	adminExec(t, fmt.Sprintf("GRANT USAGE ON ALL SEQUENCES IN SCHEMA %s TO %s", schema, role))

	u, err := url.Parse(pgURL(t))
	require.NoError(t, err)
	u.User = url.User(role)
	s := openStore(t, dsnFor(t, u.String(), schema, "wamm_relay_test_vacuum"), func(o *Options) { o.VacuumEvery = 2 })
	recordOutcomes(t, s, 10)
	require.Eventually(t, s.cannotVacuum.Load, 30*time.Second, 10*time.Millisecond,
		"the store should have found that its role cannot vacuum")
	require.NoError(t, s.Close())
	require.Zero(t, s.vacuums.Load(), "no VACUUM counted as done")
	n, err := manualVacuums(t, schema)
	require.NoError(t, err)
	require.Zero(t, n)
}
