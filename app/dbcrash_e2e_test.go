package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/pgcluster"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/postgres"
	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

// startCluster runs a private PostgreSQL server for a test that crashes it;
// the shared one must never be stopped under other tests.
func startCluster(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	testutil.PostgresURL(t) // skips, saying how to enable, like every PostgreSQL test
	c, err := pgcluster.New(t.TempDir() + "/pg")
	if errors.Is(err, pgcluster.ErrUnavailable) {
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Destroy() })
	if err := c.Start(); err != nil {
		t.Fatalf("%v\n%s", err, c.Log())
	}
	return c
}

// TestDatabaseCrashUnderLoad crashes PostgreSQL (pg_ctl -m immediate: no
// checkpoint, every session killed) while webhooks stream in, brings it
// back, then kills every connection at the proxy. Throughout, ingest answers
// only 200 or 503 and /readyz fails while the database is gone; after each
// fault ingest, delivery and reconciliation resume by themselves within
// seconds. Nothing acknowledged is lost: every webhook answered 200 reaches
// the target, and so does every message of the account, including those
// whose webhooks WAMM gave up on during the outage (the reconciler recovers
// them). Duplicates are bounded by the attempts that were in flight.
func TestDatabaseCrashUnderLoad(t *testing.T) {
	cluster := startCluster(t)
	proxy := testutil.NewTCPProxy(t, cluster.Addr())

	crm := testutil.NewTarget(t)
	env := startRcEnv(t, rcOptions{
		targets: []config.Target{target("crm", crm.URL)},
		pgDSN:   pgcluster.URL(proxy.Addr()),
		config: func(c *config.Config) {
			c.Delivery.Workers = 4
		},
	})
	r := env.relay
	env.waitFirstPass(t)

	// Two streams: our own sequential sender, whose 200s are the acks to
	// account for (the reconciler does not know these ids, so it cannot
	// mask a lost ack), and the fake account's messages, a tenth of whose
	// webhooks are dropped for the reconciler to find.
	var a acks
	stop := make(chan struct{})
	sent := sendUntil(t, r, 5_000_000, stop, &a)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond): // 10 messages a second: a busy account, within a page of 100 per outage
			}
			if i%10 == 0 {
				env.missed(rcChats[0], fmt.Sprintf("missed %d", i))
			} else {
				env.account.Receive(rcChats[1], fmt.Sprintf("hello %d", i))
			}
		}
	}()
	okCount := func() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.ok) }
	refused := func() int { a.mu.Lock(); defer a.mu.Unlock(); return a.refused }
	okPolls := func() float64 {
		v, _ := env.metric("wamm_relay_reconcile_polls_total", "outcome", "ok")
		return v
	}
	// resumed waits until, after a fault, webhooks are acknowledged again,
	// a reconcile pass succeeds and a new delivery arrives, and says how long
	// that took.
	resumed := func(what string, since time.Time) time.Duration {
		t.Helper()
		acked, polled := okCount(), okPolls()
		require.Eventually(t, func() bool { return readyz(r.base) == http.StatusOK },
			waitLong, 20*time.Millisecond, "%s: /readyz recovers", what)
		require.Eventually(t, func() bool { return okCount() > acked+5 },
			waitLong, 10*time.Millisecond, "%s: webhooks are accepted again", what)
		require.Eventually(t, func() bool { return okPolls() > polled },
			waitLong, 10*time.Millisecond, "%s: reconciliation resumes", what)
		a.mu.Lock()
		last := a.ok[len(a.ok)-1]
		a.mu.Unlock()
		crm.WaitDelivered(t, waitLong, last)
		return time.Since(since)
	}

	require.Eventually(t, func() bool { return okCount() >= 50 }, waitLong, 10*time.Millisecond)

	// 1. The database crashes and stays away for 3 s.
	require.NoError(t, cluster.Stop("immediate"))
	require.Eventually(t, func() bool { return readyz(r.base) == http.StatusServiceUnavailable },
		waitLong, 20*time.Millisecond, "/readyz reports the crashed database")
	refusedBefore := refused()
	require.Eventually(t, func() bool { return refused() > refusedBefore },
		waitLong, 10*time.Millisecond, "webhooks are refused while the database is down")
	<-time.After(3 * time.Second) // the outage's length is the scenario, not a wait for a condition
	require.Equal(t, http.StatusServiceUnavailable, readyz(r.base), "still down")
	require.NoError(t, cluster.Start(), "restart after the crash")
	afterCrash := resumed("after the crash", time.Now())

	// 2. Every connection is killed at once (a failover, a proxy restart).
	proxy.Down()
	proxy.Up()
	afterCut := resumed("after the cut", time.Now())

	close(stop)
	<-sent
	<-produced
	env.flush(t)

	a.mu.Lock()
	defer a.mu.Unlock()
	require.Empty(t, a.other, "ingest answers only 200 or 503")
	crm.WaitDelivered(t, 3*waitLong, a.ok...)

	// Every message of the account is delivered (by its webhook or by the
	// reconciler) or lies in a gap the reconciler named: nothing is lost
	// silently.
	gaps, err := r.app.Store().Gaps(context.Background(), store.GapFilter{Channel: event.DefaultChannel, Open: true})
	require.NoError(t, err)
	named := func(m wammfake.Message) bool {
		for _, g := range gaps {
			if (g.Chat == "" || g.Chat == m.Phone) &&
				store.CompareMsgIDs(m.ID, g.AfterMsgID) > 0 && store.CompareMsgIDs(m.ID, g.BeforeMsgID) < 0 {
				return true
			}
		}
		return false
	}
	msgs := env.account.Messages()
	t.Cleanup(func() {
		if t.Failed() {
			_ = os.WriteFile(filepath.Join(os.TempDir(), "dbcrash.log"), []byte(r.logs.String()), 0o600)
		}
	})
	var unnamed []string
	require.Eventually(t, func() bool {
		got := crm.Delivered()
		unnamed = unnamed[:0]
		for _, m := range msgs {
			if got["msg:"+m.ID] == 0 && !named(m) {
				unnamed = append(unnamed, m.ID)
			}
		}
		return len(unnamed) == 0
	}, 3*waitLong, 20*time.Millisecond, "account messages neither delivered nor in a named gap: %v (gaps %+v)", &unnamed, gaps)
	want := append([]string(nil), a.ok...)
	inGaps := 0
	for _, m := range msgs {
		if crm.Delivered()["msg:"+m.ID] > 0 {
			want = append(want, "msg:"+m.ID)
		} else {
			inGaps++
		}
	}
	var dups int
	for _, k := range want {
		if n := crm.Delivered()[k]; n > 1 {
			dups += n - 1
		}
	}
	gaveUp := len(env.account.Failed())
	t.Logf("crash + cut under load: %d acked by our sender (%d refused with 503), all delivered; %d account messages "+
		"(%d webhooks given up by WAMM during the outage, %d dropped): %d delivered, %d in %d named gaps; %d duplicates; "+
		"resumed %s after the restart, %s after the cut",
		len(a.ok), a.refused, len(msgs), gaveUp, len(env.account.Dropped()), len(msgs)-inGaps, inGaps, len(gaps), dups,
		afterCrash.Round(time.Millisecond), afterCut.Round(time.Millisecond))
	// A duplicate is an attempt the target answered whose outcome the
	// database never recorded: at most one per worker per fault.
	require.LessOrEqual(t, dups, 2*env.cfg.Delivery.Workers, "duplicates bounded by the attempts in flight")
}

// TestFrozenDatabaseConnections turns every open connection to PostgreSQL
// half-open (a partition or a dead NAT entry: nothing comes back, nothing is
// refused). Ingest answers 503 until the pool has replaced the frozen
// connections, then 200 again without a restart; nothing acknowledged is
// lost. Shutting down with frozen connections ends within bounded time.
func TestFrozenDatabaseConnections(t *testing.T) {
	_, schema := testutil.PostgresSchema(t)
	u, err := url.Parse(testutil.PostgresURL(t))
	if err != nil || u.Host == "" {
		t.Skipf("%s is not a URL with a host; this test needs one", testutil.PGEnv)
	}
	proxy := testutil.NewTCPProxy(t, u.Host)
	u.Host = proxy.Addr()

	crm := testutil.NewTarget(t)
	cfg := pgConfig(t, testutil.PostgresDSN(t, u.String(), schema), target("crm", crm.URL))
	r := startPGRelay(t, cfg)
	code, _ := r.post(t, "/webhook", msgBody(1, "received"))
	require.Equal(t, http.StatusOK, code)
	crm.WaitDelivered(t, waitLong, "msg:1")

	var a acks
	stop := make(chan struct{})
	sent := sendUntil(t, r, 100, stop, &a)
	okCount := func() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.ok) }
	require.Eventually(t, func() bool { return okCount() >= 20 }, waitLong, 10*time.Millisecond)

	proxy.Freeze()
	frozenAt := time.Now()
	acked := okCount()
	require.Eventually(t, func() bool { return okCount() > acked+20 },
		30*time.Second, 20*time.Millisecond, "webhooks are accepted again on fresh connections")
	recovered := time.Since(frozenAt)
	close(stop)
	<-sent

	a.mu.Lock()
	require.Empty(t, a.other, "ingest answers only 200 or 503")
	keys := append([]string{"msg:1"}, a.ok...)
	refused := a.refused
	a.mu.Unlock()
	crm.WaitDelivered(t, 3*waitLong, keys...)
	var dups int
	for _, n := range crm.Delivered() {
		dups += n - 1
	}

	// Freeze what the pool holds now and shut down: the store gives up on
	// the frozen connections after its CloseTimeout.
	proxy.Freeze()
	r.closeTimesOut.Store(true)
	closeStart := time.Now()
	require.NoError(t, r.stop())
	stopped := time.Since(closeStart)
	err = r.app.Close()
	if err != nil {
		require.ErrorIs(t, err, postgres.ErrCloseTimeout)
	}
	closed := time.Since(closeStart) - stopped
	t.Logf("frozen connections: ingest recovered in %s (%d refused with 503); %d acked, all delivered, %d duplicates; shutdown with frozen connections: run loops stopped in %s, store closed in %s (%v)",
		recovered.Round(time.Millisecond), refused, len(keys), dups, stopped.Round(time.Millisecond), closed.Round(time.Millisecond), err)
	require.LessOrEqual(t, dups, cfg.Delivery.Workers, "duplicates bounded by the attempts in flight")
	require.Less(t, stopped, cfg.Server.ShutdownTimeout.Duration+5*time.Second, "the run loops stop in bounded time")
	require.Less(t, closed, postgres.DefaultCloseTimeout+2*time.Second, "closing the store is bounded even when the database never answers")
}
