package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/internal/testutil"
)

// balancer is a round-robin reverse proxy in front of relay instances, with
// the passive health check of a typical load balancer: a backend that fails
// a request (connection refused or reset) is taken out of the rotation, and
// that request is answered 502 so the sender retries it, as WAMM does.
type balancer struct {
	*httptest.Server
	backends []*url.URL
	down     []atomic.Bool
	ok       []atomic.Int64 // 200 answers per backend
	failed   atomic.Int64   // requests answered 502
	next     atomic.Uint64
}

func newBalancer(t *testing.T, bases ...string) *balancer {
	t.Helper()
	b := &balancer{down: make([]atomic.Bool, len(bases)), ok: make([]atomic.Int64, len(bases))}
	for _, base := range bases {
		u, err := url.Parse(base)
		require.NoError(t, err)
		b.backends = append(b.backends, u)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(b.backends[b.pick()])
			pr.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusOK {
				b.ok[b.index(resp.Request.URL.Host)].Add(1)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			b.down[b.index(r.URL.Host)].Store(true)
			b.failed.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	b.Server = httptest.NewServer(proxy)
	t.Cleanup(b.Close)
	return b
}

// pick returns the next backend still in the rotation (any, if none is).
func (b *balancer) pick() int {
	n := uint64(len(b.backends))
	start := b.next.Add(1)
	for i := range n {
		if j := int((start + i) % n); !b.down[j].Load() {
			return j
		}
	}
	return int(start % n)
}

func (b *balancer) index(host string) int {
	for i, u := range b.backends {
		if u.Host == host {
			return i
		}
	}
	panic("balancer: unknown backend " + host)
}

// webhookAnswer is the relay's answer to one webhook.
type webhookAnswer struct {
	code      int
	duplicate bool
}

func postWebhook(client *http.Client, base, body string) (webhookAnswer, error) {
	resp, err := client.Post(base+"/webhook", "application/json", strings.NewReader(body))
	if err != nil {
		return webhookAnswer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return webhookAnswer{code: resp.StatusCode}, err
	}
	ans := webhookAnswer{code: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		var parsed struct {
			Duplicate bool `json:"duplicate"`
		}
		if err := json.Unmarshal(raw, &parsed); err != nil {
			return ans, fmt.Errorf("decode answer %q: %w", raw, err)
		}
		ans.duplicate = parsed.Duplicate
	}
	return ans, nil
}

func msgWebhook(id int) string {
	return fmt.Sprintf(`{"tip":"msg","msg_data":{"msg_id":%d,"from_me":0,"phone":"79001234567","state":"received"}}`, id)
}

// pendingLeases lists, per target, the event keys of pending deliveries whose
// lease is held by the relay process with the given pid (lease owners are
// host-pid-random, see app.instanceID).
func pendingLeases(t *testing.T, db *pgx.Conn, pid int) map[string]map[string]bool {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		SELECT d.target, e.key FROM deliveries d JOIN events e ON e.id = d.event_id
		WHERE d.status = 'pending' AND d.lease_owner ~ $1`, fmt.Sprintf(`-%d-[0-9a-f]{8}$`, pid))
	require.NoError(t, err)
	out := map[string]map[string]bool{}
	for rows.Next() {
		var target, key string
		require.NoError(t, rows.Scan(&target, &key))
		if out[target] == nil {
			out[target] = map[string]bool{}
		}
		out[target][key] = true
	}
	require.NoError(t, rows.Err())
	return out
}

// waitAllRecorded waits until the store holds want deliveries and every one
// is recorded delivered: after that no instance sends anything more.
func waitAllRecorded(t *testing.T, db *pgx.Conn, want int, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		var total, delivered int
		err := db.QueryRow(context.Background(),
			`SELECT count(*), count(*) FILTER (WHERE status = 'delivered') FROM deliveries`).Scan(&total, &delivered)
		return err == nil && total == want && delivered == want
	}, timeout, 50*time.Millisecond, "want %d deliveries, all recorded delivered", want)
}

// TestTwoInstancesBehindProxy runs two relay processes on one PostgreSQL
// schema behind a round-robin proxy. It checks that a webhook posted to both
// instances at once is delivered once, then streams webhooks through the
// proxy, SIGKILLs one instance mid-stream and keeps streaming. Every webhook
// answered 200 must reach every target; the only duplicates allowed are the
// deliveries the killed instance held leases on at the kill (at most
// [delivery] workers per target), which the survivor takes over once those
// leases expire (timeout + 30 s).
//
// The proxy keeps no retry logic of its own: a request that fails on the
// killed instance is answered 502 and the sender retries it, as WAMM does;
// the proxy takes the failed instance out of its rotation, so the retry
// lands on the survivor.
func TestTwoInstancesBehindProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dsn, _ := testutil.PostgresSchema(t)
	bin := buildBinary(t)

	// Slow targets keep every worker busy, so the killed instance dies with
	// its full set of attempts in flight.
	const workers = 4
	crm, bots := testutil.NewTarget(t), testutil.NewTarget(t)
	for _, tgt := range []*testutil.Target{crm, bots} {
		tgt.Respond(func(*http.Request, []byte) int {
			time.Sleep(40 * time.Millisecond) // simulated target latency
			return http.StatusOK
		})
	}
	dir := t.TempDir()
	writeConfig := func(name, addr string) string {
		path := filepath.Join(dir, name+".toml")
		require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`
[server]
listen = %q
shutdown_timeout = "5s"
[store]
driver = "postgres"
dsn = %q
[reconcile]
enabled = false
[delivery]
workers = %d
timeout = "1s"
backoff_initial = "10ms"
backoff_max = "100ms"
[log]
level = "warn"
[[targets]]
name = "crm"
url = %q
[[targets]]
name = "bots"
url = %q
`, addr, dsn, workers, crm.URL, bots.URL)), 0o600))
		return path
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := startProcess(t, bin, writeConfig("a", addrA), addrA)
	b := startProcess(t, bin, writeConfig("b", addrB), addrB)

	db, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })

	client := &http.Client{Timeout: 10 * time.Second}

	// The same webhook posted to both instances at the same moment is
	// stored once and delivered once.
	var bothKeys []string
	for i := range 20 {
		id := 500000 + i
		var (
			answers [2]webhookAnswer
			errs    [2]error
			wg      sync.WaitGroup
		)
		for j, base := range []string{a.base, b.base} {
			wg.Go(func() { answers[j], errs[j] = postWebhook(client, base, msgWebhook(id)) })
		}
		wg.Wait()
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		require.Equal(t, http.StatusOK, answers[0].code)
		require.Equal(t, http.StatusOK, answers[1].code)
		require.True(t, answers[0].duplicate != answers[1].duplicate,
			"msg %d: exactly one instance stores it, the other answers duplicate: %+v", id, answers)
		bothKeys = append(bothKeys, fmt.Sprintf("msg:%d", id))
	}
	crm.WaitDelivered(t, 30*time.Second, bothKeys...)
	bots.WaitDelivered(t, 30*time.Second, bothKeys...)
	waitAllRecorded(t, db, 2*len(bothKeys), 30*time.Second)

	// Stream through the proxy from four senders. A sender retries a webhook
	// until it is answered 200, then counts it as accepted.
	lb := newBalancer(t, a.base, b.base)
	var (
		mu          sync.Mutex
		accepted    []string
		nextID      = 1000
		acceptedNow atomic.Int64
		retriedDup  atomic.Int64
		stop        = make(chan struct{})
		wg          sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				id := nextID
				nextID++
				mu.Unlock()
				ok := false
				for attempt := 0; attempt < 10 && !ok; attempt++ {
					ans, err := postWebhook(client, lb.URL, msgWebhook(id))
					ok = err == nil && ans.code == http.StatusOK
					if ok && ans.duplicate {
						// Stored by A, whose answer the kill cut off.
						retriedDup.Add(1)
					}
				}
				if !ok {
					t.Errorf("msg %d was never accepted", id)
					return
				}
				mu.Lock()
				accepted = append(accepted, fmt.Sprintf("msg:%d", id))
				mu.Unlock()
				acceptedNow.Add(1)
			}
		})
	}

	require.Eventually(t, func() bool { return acceptedNow.Load() >= 200 }, 30*time.Second, 5*time.Millisecond)
	require.Positive(t, lb.ok[0].Load(), "instance A took traffic before the kill")
	require.Positive(t, lb.ok[1].Load(), "instance B took traffic before the kill")
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGKILL))
	killedAt := time.Now()
	_ = a.cmd.Wait()
	atKill := acceptedNow.Load()
	leased := pendingLeases(t, db, a.cmd.Process.Pid)

	// Keep streaming through the proxy, which now reaches only B.
	require.Eventually(t, func() bool { return acceptedNow.Load() >= atKill+200 }, 30*time.Second, 5*time.Millisecond)
	close(stop)
	wg.Wait()

	mu.Lock()
	acked := append(append([]string(nil), bothKeys...), accepted...)
	mu.Unlock()
	inFlight := 0
	for _, tgt := range []string{"crm", "bots"} {
		// Workers in flight plus, as many again, outcomes whose workers
		// were freed before their commit.
		require.LessOrEqual(t, len(leased[tgt]), 2*workers,
			"an instance never holds more leases on a target than twice its workers")
		inFlight += len(leased[tgt])
	}
	require.Positive(t, inFlight, "the killed instance held leases at the kill, so the takeover is exercised")
	t.Logf("%d webhooks accepted (%d before the kill); %d answered 502 and retried, of which %d were already stored; A held %d leases at the kill (crm %d, bots %d)",
		len(acked), atKill, lb.failed.Load(), retriedDup.Load(), inFlight, len(leased["crm"]), len(leased["bots"]))

	// B delivers everything, A's leased deliveries once their leases expire.
	crm.WaitDelivered(t, 90*time.Second, acked...)
	bots.WaitDelivered(t, 90*time.Second, acked...)
	waitAllRecorded(t, db, 2*len(acked), 90*time.Second)
	t.Logf("everything delivered %s after the kill", time.Since(killedAt).Round(100*time.Millisecond))

	// Each delivery A held a lease on was sent again by B once the lease
	// ran out: within [delivery] timeout + 30 s of the kill, plus a little
	// for scheduling.
	var takeover time.Duration
	for name, tgt := range map[string]*testutil.Target{"crm": crm, "bots": bots} {
		last := map[string]time.Time{}
		for _, req := range tgt.Requests() {
			if req.At.After(last[req.Key()]) {
				last[req.Key()] = req.At
			}
		}
		for key := range leased[name] {
			takeover = max(takeover, last[key].Sub(killedAt))
		}
	}
	t.Logf("A's leased deliveries were sent by B at most %s after the kill", takeover.Round(10*time.Millisecond))
	require.Less(t, takeover, time.Second+30*time.Second+3*time.Second)

	for _, k := range bothKeys {
		require.Equal(t, 1, crm.Delivered()[k], "%s posted to both instances reaches crm once", k)
		require.Equal(t, 1, bots.Delivered()[k], "%s posted to both instances reaches bots once", k)
	}
	for name, tgt := range map[string]*testutil.Target{"crm": crm, "bots": bots} {
		dups := 0
		for key, n := range tgt.Delivered() {
			if n > 1 {
				require.True(t, leased[name][key], "%s got %s %d times, but A held no lease on it at the kill", name, key, n)
				dups += n - 1
			}
		}
		t.Logf("%s: %d duplicate deliveries (bound: %d leases A held, at most %d workers)", name, dups, len(leased[name]), workers)
		require.LessOrEqual(t, dups, len(leased[name]))
	}
}
