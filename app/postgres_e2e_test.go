package app_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/app"
	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store/postgres"
	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

// pgConfig is testConfig on the PostgreSQL schema dsn selects.
func pgConfig(t *testing.T, dsn string, targets ...config.Target) config.Config {
	t.Helper()
	cfg := testConfig(t, targets...)
	cfg.Store.Driver = config.DriverPostgres
	cfg.Store.DSN = dsn
	return cfg
}

// startPGRelay is startRelay with a short idle poll, so the delivery loops
// notice a recovered store quickly.
func startPGRelay(t *testing.T, cfg config.Config) *relayUnderTest {
	t.Helper()
	return startRelay(t, cfg, func(o *app.Options) { o.IdlePoll = 100 * time.Millisecond })
}

// pgMetric reads one sample of the instance's /metrics, e.g.
// `wamm_relay_reconcile_polls_total{outcome="ok"}`; -1 when it cannot. It
// runs inside require.Eventually's goroutine, so it does not fail the test.
func pgMetric(base, series string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}

func polls(base, outcome string) float64 {
	return channelPolls(base, "default", outcome)
}

// channelPolls reads the reconcile passes of one channel by outcome.
func channelPolls(base, channel, outcome string) float64 {
	return pgMetric(base, `wamm_relay_reconcile_polls_total{channel="`+channel+`",outcome="`+outcome+`"}`)
}

// TestReconcilerRunsOnOneLeader runs two instances on one schema, both with
// the reconciler on. Only the holder of the leader lock polls WAMM; when it
// stops, the other takes the lock within one interval and goes on filling the
// gaps webhooks leave.
func TestReconcilerRunsOnOneLeader(t *testing.T) {
	dsn, _ := testutil.PostgresSchema(t)
	crm := testutil.NewTarget(t)

	const token = "test-token"
	fake := wammfake.New(wammfake.Options{Token: token, RetryBackoff: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	fakeDone := make(chan struct{})
	go func() { defer close(fakeDone); _ = fake.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-fakeDone })

	// Each instance reaches the API through a front of its own, so the test
	// sees which instance polls.
	var apiCalls [2]atomic.Int64
	const interval = time.Second
	cfgFor := func(i int) config.Config {
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			apiCalls[i].Add(1)
			fake.Handler().ServeHTTP(w, r)
		}))
		t.Cleanup(front.Close)
		cfg := pgConfig(t, dsn, target("crm", crm.URL))
		cfg.WAMM.APIURL = front.URL + "/api2"
		cfg.WAMM.Token = token
		cfg.Reconcile.Enabled = true
		cfg.Reconcile.Interval = config.D(interval)
		cfg.Reconcile.BackoffMax = config.D(interval)
		cfg.Reconcile.Grace = config.D(300 * time.Millisecond)
		return cfg
	}
	relays := [2]*relayUnderTest{startPGRelay(t, cfgFor(0)), startPGRelay(t, cfgFor(1))}

	// One instance polls, the other skips every pass.
	leader := -1
	require.Eventually(t, func() bool {
		for i := range relays {
			if polls(relays[i].base, "ok") >= 1 && polls(relays[1-i].base, "skipped_not_leader") >= 1 {
				leader = i
				return true
			}
		}
		return false
	}, waitLong, 20*time.Millisecond, "one instance leads, the other skips")
	follower := 1 - leader
	require.Eventually(t, func() bool { return polls(relays[follower].base, "skipped_not_leader") >= 3 },
		waitLong, 20*time.Millisecond)
	require.Zero(t, polls(relays[leader].base, "skipped_not_leader"), "the leader never lost the lock")
	require.Zero(t, polls(relays[follower].base, "ok"), "the follower never polled")
	require.Zero(t, apiCalls[follower].Load(), "the follower never called the API")
	require.Positive(t, apiCalls[leader].Load())

	// Webhooks go to the follower, which survives. A webhook WAMM never
	// sends is filled in by the leader's reconciler.
	fake.SetWebhookURL(relays[follower].base + "/webhook")
	m1 := fake.Receive("79001234567", "first")
	crm.WaitDelivered(t, waitLong, "msg:"+m1.ID)
	fake.DropNext(1)
	m2 := fake.Receive("79001234567", "webhook lost")
	crm.WaitDelivered(t, waitLong, "msg:"+m2.ID)

	// The leader stops; the follower takes over within one interval.
	require.NoError(t, relays[leader].stop())
	require.NoError(t, relays[leader].app.Close())
	stoppedAt := time.Now()
	require.Eventually(t, func() bool { return polls(relays[follower].base, "ok") >= 1 },
		interval+time.Second, 10*time.Millisecond, "the follower takes the leader lock within one interval")
	t.Logf("instance %d took over %s after instance %d stopped", follower, time.Since(stoppedAt).Round(time.Millisecond), leader)

	fake.DropNext(1)
	m3 := fake.Receive("79007654321", "lost after the takeover")
	crm.WaitDelivered(t, waitLong, "msg:"+m3.ID)

	delivered := crm.Delivered()
	for _, m := range []wammfake.Message{m1, m2, m3} {
		require.Equal(t, 1, delivered["msg:"+m.ID], "msg %s delivered once", m.ID)
	}
	for _, req := range crm.Requests() {
		switch req.Key() {
		case "msg:" + m2.ID, "msg:" + m3.ID:
			require.Equal(t, "reconcile", req.Header.Get("X-Wamm-Relay-Source"), "%s was found by polling", req.Key())
		}
	}
	require.Len(t, fake.Dropped(), 2)
}

func readyz(base string) int {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDatabaseLossAndRecovery cuts a relay off from PostgreSQL and brings the
// database back, without restarting the relay. While cut off, /readyz and
// webhooks answer 503 and nothing is lost: a webhook answered 503 is accepted
// when WAMM retries it, and deliveries pending from before the cut (one in
// flight, others queued) are all delivered once.
func TestDatabaseLossAndRecovery(t *testing.T) {
	dsn, schema := testutil.PostgresSchema(t)
	u, err := url.Parse(testutil.PostgresURL(t))
	if err != nil || u.Host == "" {
		t.Skipf("%s is not a URL with a host; this test needs one", testutil.PGEnv)
	}
	proxy := testutil.NewTCPProxy(t, u.Host)
	u.Host = proxy.Addr()

	// crm holds the attempts it gets until released, so a delivery is in
	// flight across the outage; with one worker the others stay queued.
	// bots answers at once.
	crm, bots := testutil.NewTarget(t), testutil.NewTarget(t)
	arrived := make(chan string, 16)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseCRM := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseCRM) // before the targets close, which waits for handlers
	crm.Respond(func(r *http.Request, _ []byte) int {
		arrived <- r.Header.Get("webhook-id")
		<-release
		return http.StatusOK
	})
	cfg := pgConfig(t, testutil.PostgresDSN(t, u.String(), schema), target("crm", crm.URL), target("bots", bots.URL))
	cfg.Delivery.Workers = 1
	// Longer than crm is held, so the attempt in flight does not time out.
	cfg.Delivery.Timeout = config.D(30 * time.Second)
	r := startPGRelay(t, cfg)
	pg, ok := r.app.Store().(*postgres.Store)
	require.True(t, ok, "the relay runs on PostgreSQL")
	require.Equal(t, schema, pg.Schema(), "the DSN's search_path picks the schema")

	db, err := pgx.Connect(context.Background(), dsn) // not through the proxy
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	// count runs inside require.Eventually's goroutine too: -1 on error.
	count := func(where string) int {
		n := -1
		if err := db.QueryRow(context.Background(), "SELECT count(*) FROM deliveries WHERE "+where).Scan(&n); err != nil {
			t.Logf("count deliveries: %v", err)
			return -1
		}
		return n
	}

	var keys []string
	for id := 1; id <= 5; id++ {
		code, resp := r.post(t, "/webhook", msgBody(id, "received"))
		require.Equal(t, http.StatusOK, code, resp)
		keys = append(keys, fmt.Sprintf("msg:%d", id))
	}
	select {
	case <-arrived:
	case <-time.After(waitLong):
		t.Fatal("crm got no attempt")
	}
	bots.WaitDelivered(t, waitLong, keys...)
	// Nothing is left between an attempt and its outcome but crm's one.
	require.Eventually(t, func() bool { return count("target = 'bots' AND status = 'delivered'") == 5 },
		waitLong, 10*time.Millisecond)
	require.Equal(t, 1, count("target = 'crm' AND status = 'pending' AND lease_owner IS NOT NULL"))
	require.Equal(t, 4, count("target = 'crm' AND status = 'pending' AND lease_owner IS NULL"))

	proxy.Down()

	require.Eventually(t, func() bool { return readyz(r.base) == http.StatusServiceUnavailable },
		waitLong, 20*time.Millisecond, "/readyz reports the lost store")
	const late = 6
	code, resp := r.post(t, "/webhook", msgBody(late, "received"))
	require.Equal(t, http.StatusServiceUnavailable, code, "a webhook the store cannot take is refused so WAMM retries: %s", resp)
	var stored int
	require.NoError(t, db.QueryRow(context.Background(), "SELECT count(*) FROM events WHERE key = $1", fmt.Sprintf("msg:%d", late)).Scan(&stored))
	require.Zero(t, stored, "the refused webhook was not stored")
	require.Eventually(t, func() bool { return strings.Contains(r.logs.String(), "store unavailable; deliveries paused") },
		waitLong, 20*time.Millisecond, "the delivery loops notice the outage")
	require.Equal(t, http.StatusServiceUnavailable, readyz(r.base))

	proxy.Up()

	require.Eventually(t, func() bool { return readyz(r.base) == http.StatusOK },
		waitLong, 20*time.Millisecond, "/readyz recovers without a restart")
	code, resp = r.post(t, "/webhook", msgBody(late, "received"))
	require.Equal(t, http.StatusOK, code, resp)
	require.JSONEq(t, `{"ok":true,"duplicate":false}`, resp, "WAMM's retry is a first delivery, not a duplicate")
	keys = append(keys, fmt.Sprintf("msg:%d", late))

	releaseCRM()
	crm.WaitDelivered(t, waitLong, keys...)
	bots.WaitDelivered(t, waitLong, keys...)
	require.Eventually(t, func() bool { return count("status = 'delivered'") == 2*len(keys) },
		waitLong, 10*time.Millisecond, "every delivery recorded delivered")
	want := map[string]int{}
	for _, k := range keys {
		want[k] = 1
	}
	require.Equal(t, want, crm.Delivered(), "crm gets each event once")
	require.Equal(t, want, bots.Delivered(), "bots gets each event once")
	// The new webhook may have been handed to an idle worker without a
	// claim: the loop that logged the outage says it is over at its next
	// claim, after its retry wait.
	require.Eventually(t, func() bool { return strings.Contains(r.logs.String(), "store recovered after") },
		waitLong, 20*time.Millisecond, "the delivery loops notice the recovery")
}
