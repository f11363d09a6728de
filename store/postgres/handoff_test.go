package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// A webhook whose request ends while its handoff commit is blocked gets an
// error; when the commit then lands, nobody is going to attempt what it
// leased, so the deliveries must be claimable at once, not after the lease.
func TestAbandonedHandoffIsLeftToClaims(t *testing.T) {
	schema := newSchema(t)
	s := openOnSchema(t, schema, "wamm_relay_test_handoff")
	ctx := context.Background()

	// Hold a lock that blocks inserts into deliveries until released.
	conn, err := pgx.Connect(ctx, dsnFor(t, pgURL(t), schema, "wamm_relay_test_locker"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE deliveries IN SHARE MODE")
	require.NoError(t, err)

	wake := s.Wake()
	reqCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	leased, err := s.IngestHandoff(reqCtx, rawEvent("raw:abandoned"), []string{"a"},
		store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Empty(t, leased)

	require.NoError(t, tx.Commit(ctx)) // the blocked commit lands now
	requireWoken(t, wake, "the abandoned handoff's commit")
	var got []int64
	require.Eventually(t, func() bool {
		ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "other", Limit: 10, Lease: time.Minute, Now: time.Now()})
		if err != nil || len(ds) == 0 {
			return false
		}
		got = append(got, ds[0].ID)
		return true
	}, 10*time.Second, 10*time.Millisecond, "the delivery should be claimable long before its hour-long lease ends")
	require.Len(t, got, 1)
}

// After an ingest batch fails, the handoff leases it may have committed are
// given back if its transaction did commit: exactly those (owner and end),
// and none of a transaction that aborted.
func TestUncertainHandoffLeasesAreReleased(t *testing.T) {
	schema := newSchema(t)
	s := openOnSchema(t, schema, "wamm_relay_test_uncertain")
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	lease := func(d time.Duration) store.HandoffLease {
		return store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: until.Add(d)}
	}
	for i, key := range []string{"raw:committed", "raw:other-lease", "raw:aborted"} {
		_, err := s.IngestHandoff(ctx, rawEvent(key), []string{"a"}, lease(time.Duration(i)*time.Second))
		require.NoError(t, err)
	}
	// Two transaction ids: one that committed, one that rolled back.
	conn, err := pgx.Connect(ctx, pgURL(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var committed, aborted int64
	require.NoError(t, conn.QueryRow(ctx, "SELECT txid_current()").Scan(&committed))
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, "SELECT txid_current()").Scan(&aborted))
	require.NoError(t, tx.Rollback(ctx))

	wake := s.Wake()
	l0, l2 := lease(0), lease(2*time.Second)
	s.noteUncertain(committed, []*store.IngestRequest{
		{Event: rawEvent("raw:committed"), Targets: []string{"a"}, Handoff: &l0},
		// Not the lease this delivery has: not the batch's own.
		{Event: rawEvent("raw:other-lease"), Targets: []string{"a"}, Handoff: &l0},
	}, []int{0, 1})
	s.noteUncertain(aborted, []*store.IngestRequest{
		{Event: rawEvent("raw:aborted"), Targets: []string{"a"}, Handoff: &l2},
	}, []int{0})
	requireWoken(t, wake, "the released leases")
	require.Eventually(t, func() bool {
		s.uncertainMu.Lock()
		defer s.uncertainMu.Unlock()
		return len(s.uncertain) == 0
	}, 10*time.Second, 10*time.Millisecond, "both transactions are decided")
	ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "other", Limit: 10, Lease: time.Minute, Now: time.Now()})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, event.Key("raw:committed"), ds[0].EventKey)
}
