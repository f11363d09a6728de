package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// manualVacuums is how many times deliveries in schema was vacuumed other
// than by autovacuum.
func manualVacuums(t *testing.T, schema string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openOnSchema(t, schema, "wamm_relay_test_stats")
	var n int64
	require.NoError(t, s.pool.QueryRow(ctx,
		"SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'deliveries'", schema).Scan(&n))
	return n
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
		require.Eventually(t, func() bool { return manualVacuums(t, schema) >= 1 }, 10*time.Second, 50*time.Millisecond,
			"the server should count a VACUUM of this schema's deliveries")
	})
	t.Run("disabled", func(t *testing.T) {
		schema := newSchema(t)
		s := openStore(t, dsnFor(t, pgURL(t), schema, "wamm_relay_test_vacuum"), func(o *Options) { o.VacuumEvery = -1 })
		recordOutcomes(t, s, 10)
		require.NoError(t, s.Close()) // waits for anything the store started
		require.Zero(t, s.vacuums.Load())
		require.Zero(t, manualVacuums(t, schema))
	})
}
