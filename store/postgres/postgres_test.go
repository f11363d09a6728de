package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/storetest"
)

const envPG = "WAMM_RELAY_TEST_PG"

// pgURL returns the test database URL or skips the test.
func pgURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(envPG)
	if u == "" {
		t.Skipf("PostgreSQL tests skipped: export %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run them", envPG)
	}
	return u
}

func randomSuffix(t testing.TB) string {
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

// adminExec runs sql on a short-lived connection of its own.
func adminExec(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL(t))
	require.NoError(t, err, "connect admin")
	defer conn.Close(ctx)
	tag, err := conn.Exec(ctx, sql, args...)
	require.NoError(t, err, "admin: %s", sql)
	return tag.RowsAffected()
}

// newSchema creates an empty schema for one test and drops it afterwards.
func newSchema(t testing.TB) string {
	t.Helper()
	pgURL(t)
	name := "t_" + randomSuffix(t)
	adminExec(t, "CREATE SCHEMA "+name)
	t.Cleanup(func() { adminExec(t, "DROP SCHEMA "+name+" CASCADE") })
	return name
}

// dsnFor is base with the schema as search_path and app as application_name
// (which the outage tests use to find the store's backends).
func dsnFor(t testing.TB, base, schema, app string) string {
	t.Helper()
	if !strings.Contains(base, "://") { // key=value form
		return fmt.Sprintf("%s search_path=%s application_name=%s", base, schema, app)
	}
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	l.SetLevel(logrus.DebugLevel)
	return l
}

// openStore opens a Store on schema, closed when the test ends.
func openStore(t testing.TB, dsn string, tweak ...func(*Options)) *Store {
	t.Helper()
	opts := Options{DSN: dsn, Logger: testLogger(t), ReconnectMax: 200 * time.Millisecond}
	for _, f := range tweak {
		f(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func openOnSchema(t testing.TB, schema, app string) *Store {
	t.Helper()
	return openStore(t, dsnFor(t, pgURL(t), schema, app))
}

func rawEvent(key string) event.Event {
	return event.Event{
		Key: event.Key(key), Kind: event.KindRaw, Source: event.SourceWebhook,
		Body: []byte(`{"k":"` + key + `"}`), ReceivedAt: time.Now(),
	}
}

func requireWoken(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "wake channel not closed", "after %s", what)
	}
}

func TestConformance(t *testing.T) {
	pgURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		schema := newSchema(t)
		return openOnSchema(t, schema, "wamm_relay_"+schema)
	})
}

func TestOptionsValidate(t *testing.T) {
	ok := Options{DSN: "postgres://x@127.0.0.1/db", Logger: logrus.New()}
	for _, tc := range []struct {
		name  string
		tweak func(*Options)
		field string // "" when valid
	}{
		{"valid", func(*Options) {}, ""},
		{"empty DSN", func(o *Options) { o.DSN = "" }, "DSN"},
		{"nil logger", func(o *Options) { o.Logger = nil }, "Logger"},
		{"negative MaxConns", func(o *Options) { o.MaxConns = -1 }, "MaxConns"},
		{"negative MaxBatch", func(o *Options) { o.MaxBatch = -1 }, "MaxBatch"},
		{"negative Committers", func(o *Options) { o.Committers = -1 }, "Committers"},
		{"negative CommitTimeout", func(o *Options) { o.CommitTimeout = -time.Second }, "CommitTimeout"},
		{"negative ReconnectMax", func(o *Options) { o.ReconnectMax = -time.Second }, "ReconnectMax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.tweak(&o)
			err := o.validate()
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.field)
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	// A port nobody listens on: Open fails with an error instead of hanging
	// or panicking, and the password does not leak into it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Open(ctx, Options{
		DSN:    "postgres://relay:s3cret-pw@" + addr + "/db?sslmode=disable&connect_timeout=2",
		Logger: testLogger(t),
	})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret-pw")
}

func TestWakeChannel(t *testing.T) {
	for _, tc := range []struct {
		name, schema string
	}{
		{"short schema", "public"},
		{"long schema", strings.Repeat("s", 80)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := wakeChannel(tc.schema)
			require.LessOrEqual(t, len(ch), 63, "channel names are identifiers")
			require.True(t, strings.HasPrefix(ch, "wamm_relay_wake_"))
			require.NotEqual(t, ch, wakeChannel(tc.schema+"x"))
		})
	}
	require.NotEqual(t, lockID("a", "reconcile"), lockID("b", "reconcile"), "schemas do not share leader locks")
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	schema := newSchema(t)
	dsn := dsnFor(t, pgURL(t), schema, "wamm_relay_"+schema)
	const n = 6
	var wg sync.WaitGroup
	stores := make([]*Store, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stores[i], errs[i] = Open(ctx, Options{DSN: dsn, Logger: testLogger(t)})
		}(i)
	}
	close(start)
	wg.Wait()
	for i := range stores {
		require.NoError(t, errs[i], "open %d", i)
		s := stores[i]
		t.Cleanup(func() { require.NoError(t, s.Close()) })
	}

	migrations, err := loadMigrations()
	require.NoError(t, err)
	var count int
	require.NoError(t, stores[0].pool.QueryRow(context.Background(),
		"SELECT count(*) FROM schema_migrations").Scan(&count))
	require.Equal(t, len(migrations), count, "each migration recorded once")

	// All handles work on the one schema.
	require.NoError(t, stores[1].Ingest(context.Background(), rawEvent("k"), []string{"a"}))
	require.ErrorIs(t, stores[2].Ingest(context.Background(), rawEvent("k"), []string{"a"}), store.ErrDuplicate)
}

func TestOpenNeedsExistingSchema(t *testing.T) {
	dsn := dsnFor(t, pgURL(t), "t_missing_"+randomSuffix(t), "wamm_relay_test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Open(ctx, Options{DSN: dsn, Logger: testLogger(t)})
	require.ErrorIs(t, err, errNoSchema)
}

func TestLeaderOneHolderAtATime(t *testing.T) {
	ctx := context.Background()
	schema := newSchema(t)
	a := openOnSchema(t, schema, "wamm_relay_a_"+schema)
	b := openOnSchema(t, schema, "wamm_relay_b_"+schema)

	hold := func(s *Store, name string) bool {
		t.Helper()
		held, err := s.HoldLeader(ctx, name)
		require.NoError(t, err)
		return held
	}
	for i := 0; i < 3; i++ {
		require.True(t, hold(a, "reconcile"), "a keeps the lock (round %d)", i)
		require.False(t, hold(b, "reconcile"), "b cannot take it while a holds it (round %d)", i)
	}
	// The server probes the holder's session, so a vanished holder's lock
	// passes on within a minute (this needs a TCP connection).
	var idle string
	require.NoError(t, a.leaders["reconcile"].conn.QueryRow(ctx, "SHOW tcp_keepalives_idle").Scan(&idle))
	require.Equal(t, "30", idle)

	require.True(t, hold(b, "prune"), "locks of other names are independent")
	require.False(t, hold(a, "prune"))

	// A store on another schema in the same database has its own locks.
	other := openOnSchema(t, newSchema(t), "wamm_relay_other")
	require.True(t, hold(other, "reconcile"))

	require.NoError(t, a.Close())
	// Close ends a's session, so the lock is free for b at once.
	require.True(t, hold(b, "reconcile"), "b takes over after a closed")
	require.True(t, hold(b, "reconcile"))
}

func TestClaimAcrossHandlesNeverShares(t *testing.T) {
	ctx := context.Background()
	schema := newSchema(t)
	a := openOnSchema(t, schema, "wamm_relay_a_"+schema)
	b := openOnSchema(t, schema, "wamm_relay_b_"+schema)

	const n = 120
	for i := 0; i < n; i++ {
		require.NoError(t, a.Ingest(ctx, rawEvent(fmt.Sprintf("k%03d", i)), []string{"t"}))
	}
	now := time.Now().Add(time.Second)

	var (
		mu  sync.Mutex
		got = map[int64]string{}
		wg  sync.WaitGroup
	)
	errs := make(chan error, 8)
	for w, s := range []*Store{a, b, a, b, a, b} {
		wg.Add(1)
		go func(owner string, s *Store) {
			defer wg.Done()
			for {
				ds, err := s.Claim(ctx, store.ClaimRequest{Target: "t", Owner: owner, Limit: 4, Lease: time.Minute, Now: now})
				if err != nil {
					errs <- err
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					if prev, dup := got[d.ID]; dup {
						mu.Unlock()
						errs <- fmt.Errorf("delivery %d claimed by %s and %s", d.ID, prev, owner)
						return
					}
					got[d.ID] = owner
				}
				mu.Unlock()
			}
		}(fmt.Sprintf("w%d", w), s)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, got, n, "every delivery claimed exactly once")
}

func TestWakeAcrossHandles(t *testing.T) {
	ctx := context.Background()
	schema := newSchema(t)
	a := openOnSchema(t, schema, "wamm_relay_a_"+schema)
	b := openOnSchema(t, schema, "wamm_relay_b_"+schema)
	other := openOnSchema(t, newSchema(t), "wamm_relay_other")

	chB, chOther := b.Wake(), other.Wake()
	require.NoError(t, a.Ingest(ctx, rawEvent("k1"), []string{"t"}))
	requireWoken(t, chB, "ingest on a")

	// Replay on a wakes b as well.
	ds, err := a.Claim(ctx, store.ClaimRequest{Target: "t", Owner: "w", Limit: 1, Lease: time.Minute, Now: time.Now().Add(time.Second)})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.NoError(t, a.Record(ctx, ds[0].ID, "w", event.Outcome{Result: event.ResultDead, Error: "http_400", StatusCode: 400, At: time.Now()}))
	chB = b.Wake()
	n, err := a.Replay(ctx, store.ReplayRequest{IDs: []int64{ds[0].ID}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	requireWoken(t, chB, "replay on a")

	// A duplicate commits nothing and wakes nobody; neither does anything
	// on another schema. Checked after a later wake-up, so no sleep.
	chB = b.Wake()
	require.ErrorIs(t, a.Ingest(ctx, rawEvent("k1"), []string{"t"}), store.ErrDuplicate)
	select {
	case <-chOther:
		require.FailNow(t, "a store on another schema was woken")
	default:
	}
	require.NoError(t, a.Ingest(ctx, rawEvent("k2"), []string{"t"}))
	requireWoken(t, chB, "second ingest")
	select {
	case <-chOther:
		require.FailNow(t, "a store on another schema was woken")
	default:
	}
}

// terminateBackends ends every server session with application_name app,
// as a crashed or restarted database would.
func terminateBackends(t *testing.T, app string) int64 {
	t.Helper()
	var n int64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid()`, app).Scan(&n))
	return n
}

func TestRecoversAfterBackendsTerminated(t *testing.T) {
	ctx := context.Background()
	schema := newSchema(t)
	appA, appB := "wamm_relay_a_"+schema, "wamm_relay_b_"+schema
	a := openOnSchema(t, schema, appA)
	b := openOnSchema(t, schema, appB)

	held, err := a.HoldLeader(ctx, "reconcile")
	require.NoError(t, err)
	require.True(t, held)
	wakeB := b.Wake()
	require.NoError(t, a.Ingest(ctx, rawEvent("before"), []string{"t"}))
	requireWoken(t, wakeB, "ingest on a") // so no NOTIFY is still on its way to b
	require.NoError(t, b.Ping(ctx))

	genB := b.listenGen.Load()
	wakeB = b.Wake()
	require.Positive(t, terminateBackends(t, appA))
	require.Positive(t, terminateBackends(t, appB))

	// b's listener reconnects and wakes its waiters once: work may have
	// been committed while it was not listening.
	requireWoken(t, wakeB, "listener reconnect")
	require.Greater(t, b.listenGen.Load(), genB)

	require.Eventually(t, func() bool { return a.Ping(ctx) == nil }, 10*time.Second, 20*time.Millisecond, "ping a")
	var ingested atomic.Int32
	require.Eventually(t, func() bool {
		// A fresh key per try: a failed try wrote nothing.
		return a.Ingest(ctx, rawEvent(fmt.Sprintf("after-%d", ingested.Add(1))), []string{"t"}) == nil
	}, 10*time.Second, 20*time.Millisecond, "ingest on a")
	var claimed []event.Delivery
	require.Eventually(t, func() bool {
		claimed, err = b.Claim(ctx, store.ClaimRequest{Target: "t", Owner: "w", Limit: 10, Lease: time.Minute, Now: time.Now().Add(time.Second)})
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "claim on b")
	require.Len(t, claimed, 2, "the event from before and the one after the outage")

	// a's leader session died with the lock; a notices and takes it again,
	// while b is refused throughout.
	require.Eventually(t, func() bool {
		held, err := a.HoldLeader(ctx, "reconcile")
		return err == nil && held
	}, 10*time.Second, 20*time.Millisecond, "a re-takes the leader lock")
	held, err = b.HoldLeader(ctx, "reconcile")
	require.NoError(t, err)
	require.False(t, held)

	// The reconnected listener still carries wake-ups across instances.
	wakeB = b.Wake()
	require.NoError(t, a.Ingest(ctx, rawEvent("late"), []string{"t"}))
	requireWoken(t, wakeB, "ingest after the outage")
}

// proxiedDSN puts a TCP proxy between a new schema's store and the database.
func proxiedDSN(t *testing.T, app string) (dsn, schema string, proxy *testutil.TCPProxy) {
	t.Helper()
	u, err := url.Parse(pgURL(t))
	if err != nil || u.Host == "" {
		t.Skipf("%s is not a URL with a host; this test needs one", envPG)
	}
	schema = newSchema(t)
	proxy = testutil.NewTCPProxy(t, u.Host)
	u.Host = proxy.Addr()
	return dsnFor(t, u.String(), schema, app+schema), schema, proxy
}

func TestListenerReplacesHalfOpenConnection(t *testing.T) {
	// Stores copy these at Open; restored after the stores are closed.
	i, c := listenCheckInterval, sessionCheckTimeout
	t.Cleanup(func() { listenCheckInterval, sessionCheckTimeout = i, c })
	listenCheckInterval, sessionCheckTimeout = 100*time.Millisecond, 300*time.Millisecond

	dsn, schema, proxy := proxiedDSN(t, "wamm_relay_halfopen_")
	a := openStore(t, dsn)
	b := openOnSchema(t, schema, "wamm_relay_direct_"+schema)
	gen := a.listenGen.Load()

	// No TCP reset ever arrives: only the listener's own check can tell.
	proxy.Freeze()
	require.Eventually(t, func() bool { return a.listenGen.Load() > gen }, 10*time.Second, 10*time.Millisecond,
		"the listener replaced its dead session")

	wake := a.Wake()
	require.NoError(t, b.Ingest(context.Background(), rawEvent("k"), []string{"t"}))
	requireWoken(t, wake, "ingest on b")
}

func TestSurvivesDatabaseOutage(t *testing.T) {
	ctx := context.Background()
	dsn, schema, proxy := proxiedDSN(t, "wamm_relay_outage_")
	a := openStore(t, dsn, func(o *Options) { o.CommitTimeout = 3 * time.Second })
	b := openOnSchema(t, schema, "wamm_relay_direct_"+schema) // not behind the proxy

	held, err := a.HoldLeader(ctx, "reconcile")
	require.NoError(t, err)
	require.True(t, held)
	genA := a.listenGen.Load()

	proxy.Down()

	// Every call fails with an error (no panic, no hang), and nothing is
	// written meanwhile.
	require.Error(t, a.Ping(ctx))
	err = a.Ingest(ctx, rawEvent("during"), []string{"t"})
	require.Error(t, err)
	require.False(t, errors.Is(err, store.ErrDuplicate))
	_, err = a.Claim(ctx, store.ClaimRequest{Target: "t", Owner: "w", Limit: 1, Lease: time.Minute})
	require.Error(t, err)
	held, err = a.HoldLeader(ctx, "reconcile")
	require.Error(t, err)
	require.False(t, held, "a store cut off from the database does not claim leadership")

	// The lost session released the lock: the instance that still reaches
	// the database takes over.
	require.Eventually(t, func() bool {
		held, err := b.HoldLeader(ctx, "reconcile")
		return err == nil && held
	}, 10*time.Second, 20*time.Millisecond, "b takes over the leader lock")
	has, err := b.HasEvents(ctx)
	require.NoError(t, err)
	require.False(t, has, "the failed ingest wrote nothing")

	wakeA := a.Wake()
	proxy.Up()

	require.Eventually(t, func() bool { return a.Ping(ctx) == nil }, 10*time.Second, 20*time.Millisecond, "ping after the outage")
	requireWoken(t, wakeA, "listener reconnect")
	require.Eventually(t, func() bool { return a.listenGen.Load() > genA }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, a.Ingest(ctx, rawEvent("after"), []string{"t"}))
	ds, err := a.Claim(ctx, store.ClaimRequest{Target: "t", Owner: "w", Limit: 10, Lease: time.Minute, Now: time.Now().Add(time.Second)})
	require.NoError(t, err)
	require.Len(t, ds, 1)

	held, err = a.HoldLeader(ctx, "reconcile")
	require.NoError(t, err)
	require.False(t, held, "b holds the lock now")
	require.NoError(t, b.Close())
	held, err = a.HoldLeader(ctx, "reconcile")
	require.NoError(t, err)
	require.True(t, held, "a takes the lock back once b is gone")

	// Wake-ups from another instance reach a through the new listener.
	c := openOnSchema(t, schema, "wamm_relay_c_"+schema)
	wakeA = a.Wake()
	require.NoError(t, c.Ingest(ctx, rawEvent("from-c"), []string{"t"}))
	requireWoken(t, wakeA, "ingest on c")
}

// BenchmarkIngest measures group-committed ingest throughput with two
// targets per event, from many concurrent callers.
func BenchmarkIngest(b *testing.B) {
	schema := newSchema(b)
	s := openStore(b, dsnFor(b, pgURL(b), schema, "wamm_relay_bench_"+schema), func(o *Options) {
		o.Logger = logrus.New() // quiet
	})
	ctx := context.Background()
	var seq atomic.Int64
	body := []byte(`{"tip":"msg","msg_data":{"msg_id":123456789,"from_me":0,"phone":"79990000000","msg_text":"hello"}}`)
	targets := []string{"crm", "archive"}
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := event.Event{
				Key: event.MsgKey(fmt.Sprint(seq.Add(1))), Kind: event.KindMsg, Source: event.SourceWebhook,
				Body: body, ReceivedAt: time.Now(),
			}
			if err := s.Ingest(ctx, ev, targets); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
