package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/storetest"
)

func quietLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func openAt(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Path: path, Logger: quietLogger()})
	require.NoError(t, err)
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "relay.db"))
	})
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"ok", Options{Path: "x.db", Logger: quietLogger()}, ""},
		{"empty path", Options{Logger: quietLogger()}, "Path"},
		{"memory", Options{Path: ":memory:", Logger: quietLogger()}, "Path"},
		{"uri", Options{Path: "file:x.db", Logger: quietLogger()}, "Path"},
		{"query in path", Options{Path: "x.db?mode=ro", Logger: quietLogger()}, "Path"},
		{"nil logger", Options{Path: "x.db"}, "Logger"},
		{"negative busy timeout", Options{Path: "x.db", Logger: quietLogger(), BusyTimeout: -time.Second}, "BusyTimeout"},
		{"negative max batch", Options{Path: "x.db", Logger: quietLogger(), MaxBatch: -1}, "MaxBatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestOpenCreatesParentDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "relay.db")
	s := openAt(t, path)
	require.NoError(t, s.Ping(context.Background()))
	require.NoError(t, s.Close())
	require.FileExists(t, path)
}

func TestReopenKeepsDataAndDedup(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	received := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ev := event.Event{
		Key: event.MsgKey("42"), Kind: event.KindMsg, Source: event.SourceWebhook,
		MsgID: "42", State: "sent", Body: []byte(`{"msg_id":42}`), ReceivedAt: received,
	}

	s := openAt(t, path)
	require.NoError(t, s.Ingest(ctx, ev, []string{"a"}))
	require.NoError(t, s.Close())

	s = openAt(t, path)
	t.Cleanup(func() { _ = s.Close() })
	require.ErrorIs(t, s.Ingest(ctx, ev, []string{"a"}), store.ErrDuplicate, "dedup survives a restart")

	ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: 10, Lease: time.Minute, Now: received})
	require.NoError(t, err)
	require.Len(t, ds, 1, "the pending delivery survives a restart")
	require.Equal(t, ev.Body, ds[0].Body)

	known, err := s.KnownMessages(ctx, "", []string{"42"})
	require.NoError(t, err)
	require.Equal(t, map[string]store.KnownMessage{"42": {MsgStored: true, States: []string{"sent"}}}, known)
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	for i := 0; i < 3; i++ {
		s := openAt(t, path)
		var version int
		require.NoError(t, s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version))
		ms, err := migrations()
		require.NoError(t, err)
		require.Equal(t, len(ms), version, "open %d", i+1)
		require.NoError(t, s.Close())
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openAt(t, path)
	_, err := s.w.ExecContext(ctx, "PRAGMA user_version = 999")
	require.NoError(t, err)
	require.NoError(t, s.Close())

	_, err = Open(ctx, Options{Path: path, Logger: quietLogger()})
	require.ErrorContains(t, err, "version 999")
}

func TestPragmas(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "relay.db"))
	t.Cleanup(func() { _ = s.Close() })
	for _, tc := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"busy_timeout", "5000"},
		{"wal_autocheckpoint", "0"}, // the checkpointer's job
	} {
		t.Run(tc.pragma, func(t *testing.T) {
			var got string
			require.NoError(t, s.w.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got))
			require.Equal(t, tc.want, got)
		})
	}
	t.Run("readers are read-only", func(t *testing.T) {
		_, err := s.r.ExecContext(ctx, "DELETE FROM events")
		require.Error(t, err)
	})
}

func TestClaimUsesIndex(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "relay.db"))
	t.Cleanup(func() { _ = s.Close() })
	// The statement Claim runs: it reads rows in order and stops at its
	// limit, which is cheap only while no sort is needed.
	plan := queryPlan(t, s, fmt.Sprintf(claimDueSQL, sqlString("a")), 0, 0)
	require.Contains(t, plan, "deliveries_claim")
	require.NotContains(t, plan, "TEMP B-TREE", "claim must not sort")
}

// queryPlan returns SQLite's EXPLAIN QUERY PLAN of query, one step a line.
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.r.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	require.NoError(t, err)
	defer rows.Close()
	var plan string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		plan += detail + "\n"
	}
	require.NoError(t, rows.Err())
	return plan
}

// QueueStats runs on every /metrics scrape: it must read the pending and
// dead deliveries through their partial indexes, never the table.
func TestQueueStatsUsesIndexes(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "relay.db"))
	t.Cleanup(func() { _ = s.Close() })
	plan := queryPlan(t, s, queueStatsSQL)
	require.Contains(t, plan, "deliveries_claim")
	require.Contains(t, plan, "deliveries_dead")
	require.NotContains(t, plan, "SCAN deliveries\n", "no scan of the whole table")
}

func BenchmarkIngest(b *testing.B) {
	s := openAt(b, filepath.Join(b.TempDir(), "relay.db"))
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	body := []byte(`{"tip":"msg","msg_id":1,"chat_id":1,"text":"hello from the benchmark"}`)
	var seq atomic.Int64
	now := time.Now()
	b.SetParallelism(16) // webhook handlers: many more goroutines than cores
	b.ResetTimer()
	defer storetest.ReportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			ev := event.Event{
				Key: event.Key(fmt.Sprintf("raw:%d", n)), Kind: event.KindRaw, Source: event.SourceWebhook,
				Body: body, ReceivedAt: now,
			}
			if err := s.Ingest(ctx, ev, []string{"a", "b"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkClaimRecord(b *testing.B) {
	s := openAt(b, filepath.Join(b.TempDir(), "relay.db"))
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	now := time.Now()
	body := []byte(`{"tip":"msg","msg_id":1}`)
	// Fill in parallel so the setup itself uses group commit.
	errs := make(chan error, b.N)
	for i := 0; i < b.N; i++ {
		go func(i int) {
			errs <- s.Ingest(ctx, event.Event{
				Key: event.Key(fmt.Sprintf("raw:%d", i)), Kind: event.KindRaw, Source: event.SourceWebhook,
				Body: body, ReceivedAt: now,
			}, []string{"a"})
		}(i)
	}
	for i := 0; i < b.N; i++ {
		require.NoError(b, <-errs)
	}
	b.ResetTimer()
	const batch = 10
	done := 0
	for done < b.N {
		ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: batch, Lease: time.Minute, Now: now})
		require.NoError(b, err)
		require.NotEmpty(b, ds)
		for _, d := range ds {
			require.NoError(b, s.Record(ctx, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: now}))
		}
		done += len(ds)
	}
}

// BenchmarkPipeline is the store's share of relaying one event to three
// targets the way the relay does it: ingests from 16 concurrent webhook
// handlers, and per target a loop that claims what is due and records each
// outcome from its own goroutine (so outcomes share group commits), all at
// once. ns/op is per event; run with -cpuprofile to see where it goes.
func BenchmarkPipeline(b *testing.B) {
	s := openAt(b, filepath.Join(b.TempDir(), "relay.db"))
	b.Cleanup(func() { _ = s.Close() })
	storetest.BenchmarkPipeline(b, s)
}

// reportCPU reports the process's CPU time per op (user + system) when the
// returned function runs: unlike ns/op it hardly moves with the load of
// other processes on a shared machine.

func TestStoreFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "relay.db")
	st, err := Open(context.Background(), Options{Path: path, Logger: logrus.New()})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	for _, p := range []string{path, path + "-wal"} {
		info, err := os.Stat(p)
		require.NoError(t, err, p)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "%s holds message data: owner only", p)
	}
}

// Leases live in memory, so only one process (one Store) may deliver from a
// file; others may still read and write it (deliveries replay, reconcile).
func TestOneDeliveringStorePerFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	ev := event.Event{Key: "raw:k", Kind: event.KindRaw, Source: event.SourceWebhook, Body: []byte(`{}`), ReceivedAt: time.Now()}
	claim := func(s *Store) ([]event.Delivery, error) {
		return s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: 10, Lease: time.Minute})
	}

	first := openAt(t, path)
	require.NoError(t, first.Ingest(ctx, ev, []string{"a"}))
	got, err := claim(first)
	require.NoError(t, err)
	require.Len(t, got, 1)

	second := openAt(t, path)
	t.Cleanup(func() { _ = second.Close() })
	_, err = claim(second)
	require.ErrorIs(t, err, errLocked)
	leased, err := second.IngestHandoff(ctx, event.Event{Key: "raw:k2", Kind: event.KindRaw, Body: []byte(`{}`)}, []string{"a"},
		store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: time.Now().Add(time.Minute)})
	require.NoError(t, err, "a handoff it cannot lease is a plain ingest")
	require.Empty(t, leased)
	stored, err := second.List(ctx, store.ListFilter{Target: "a"})
	require.NoError(t, err)
	require.Len(t, stored, 2, "the event is stored, its delivery pending for the delivering process")
	n, err := second.Replay(ctx, store.ReplayRequest{Status: event.StatusDead})
	require.NoError(t, err, "a store that does not deliver still writes")
	require.Zero(t, n)

	require.NoError(t, first.Close())
	again, err := claim(second)
	require.NoError(t, err, "the lock passes on once the first store is closed")
	require.ElementsMatch(t, []event.Key{"raw:k", "raw:k2"}, []event.Key{again[0].EventKey, again[1].EventKey},
		"the first store's lease went with it: its delivery is due again at once")
}

// Two paths to one file (here a symlink to it) share one lock.
func TestDeliveryLockFollowsSymlinks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	claim := func(s *Store) error {
		_, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: 10, Lease: time.Minute})
		return err
	}

	first := openAt(t, filepath.Join(dir, "relay.db"))
	t.Cleanup(func() { _ = first.Close() })
	require.NoError(t, claim(first))
	require.NoError(t, os.Symlink("relay.db", filepath.Join(dir, "link.db")))
	second := openAt(t, filepath.Join(dir, "link.db"))
	t.Cleanup(func() { _ = second.Close() })
	require.ErrorIs(t, claim(second), errLocked, "the same file through a symlink")
}

// Outcome-only commits skip their fsync; an idle writer still makes them
// durable once OutcomeSync has passed.
func TestIdleWriterFlushesOutcomes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "relay.db"), Logger: quietLogger(), OutcomeSync: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	ev := event.Event{Key: "raw:k", Kind: event.KindRaw, Source: event.SourceWebhook, Body: []byte(`{}`), ReceivedAt: time.Now()}
	require.NoError(t, s.Ingest(ctx, ev, []string{"a"}))
	ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: 1, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.NoError(t, s.Record(ctx, ds[0].ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: time.Now()}))
	require.True(t, s.unsynced.Load(), "an outcome right after a synced ingest is committed without an fsync")
	require.Eventually(t, func() bool { return !s.unsynced.Load() }, 5*time.Second, 5*time.Millisecond,
		"the idle writer flushes it")
}

// A webhook whose ingest outlives its context gets an error, so nobody will
// attempt the deliveries handed off to it: they must be claimable at once,
// not leased until the lease ends.
func TestAbandonedHandoffIsLeftToClaims(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openAt(t, path)
	t.Cleanup(func() { _ = s.Close() })

	// Another connection holds the write lock, so the commit waits.
	blocker, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = blocker.Close() })
	conn, err := blocker.Conn(ctx)
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	require.NoError(t, err)

	wake := s.Wake()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	ev := event.Event{Key: "raw:k", Kind: event.KindRaw, Source: event.SourceWebhook, Body: []byte(`{}`), ReceivedAt: time.Now()}
	_, err = s.IngestHandoff(short, ev, []string{"a"}, store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	_, err = conn.ExecContext(ctx, "COMMIT")
	require.NoError(t, err)
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("the commit of the abandoned handoff did not wake the claimers")
	}
	ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "other", Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, ds, 1, "claimable at once, not leased to the caller that left")
	require.Equal(t, ev.Key, ds[0].EventKey)
}
