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
// given back: exactly those (owner and end), not a lease taken otherwise.
func TestUncertainHandoffLeasesAreReleased(t *testing.T) {
	schema := newSchema(t)
	s := openOnSchema(t, schema, "wamm_relay_test_uncertain")
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	lease := store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: until}
	_, err := s.IngestHandoff(ctx, rawEvent("raw:uncertain"), []string{"a"}, lease)
	require.NoError(t, err)
	// Same owner, another end: a lease the failed batch cannot have written.
	other := store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: until.Add(time.Second)}
	_, err = s.IngestHandoff(ctx, rawEvent("raw:kept"), []string{"a"}, other)
	require.NoError(t, err)

	wake := s.Wake()
	batch := []*store.IngestRequest{
		{Event: rawEvent("raw:uncertain"), Targets: []string{"a"}, Handoff: &lease},
		{Event: rawEvent("raw:kept"), Targets: []string{"a"}, Handoff: &lease},
	}
	s.releaseUncertain(batch, []int{0, 1})
	requireWoken(t, wake, "the released leases")
	ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "other", Limit: 10, Lease: time.Minute, Now: time.Now()})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, event.Key("raw:uncertain"), ds[0].EventKey)
}
