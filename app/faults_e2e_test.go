package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/internal/testutil"
)

// acks records what a sequential sender was answered, per message id.
type acks struct {
	mu      sync.Mutex
	ok      []string // keys answered 200
	refused int      // answers 503
	other   []int
}

func (a *acks) add(key string, code int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch code {
	case http.StatusOK:
		a.ok = append(a.ok, key)
	case http.StatusServiceUnavailable:
		a.refused++
	default:
		a.other = append(a.other, code)
	}
}

// sendUntil posts one message after another (WAMM's own pattern) from id
// up, until stop is closed.
func sendUntil(t *testing.T, r *relayUnderTest, first int, stop <-chan struct{}, a *acks) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for id := first; ; id++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Post(r.base+"/webhook", "application/json", stringsReader(msgBody(id, "received")))
			if err != nil {
				t.Errorf("post: %v", err)
				return
			}
			resp.Body.Close()
			a.add(fmt.Sprintf("msg:%d", id), resp.StatusCode)
		}
	}()
	return done
}

// TestStalledDatabase holds the relay's tables under an ACCESS EXCLUSIVE
// lock for 10 s (what a long migration or a VACUUM FULL does): every query
// waits. Ingest answers 503 within its timeout instead of hanging (never
// 200 for what is not committed), and when the lock goes everything
// acknowledged is delivered once, within seconds.
func TestStalledDatabase(t *testing.T) {
	dsn, _ := testutil.PostgresSchema(t)
	crm := testutil.NewTarget(t)
	cfg := pgConfig(t, dsn, target("crm", crm.URL))
	r := startPGRelay(t, cfg)

	code, _ := r.post(t, "/webhook", msgBody(1, "received"))
	require.Equal(t, http.StatusOK, code)
	crm.WaitDelivered(t, waitLong, "msg:1")

	ctx := context.Background()
	locker, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = locker.Close(ctx) })
	tx, err := locker.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE events, deliveries IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	lockedAt := time.Now()

	var a acks
	stop := make(chan struct{})
	sent := sendUntil(t, r, 100, stop, &a)
	// The stall lasts 10 s; the first webhook of it is refused at the
	// ingest timeout (8 s).
	require.Eventually(t, func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.refused > 0 },
		15*time.Second, 20*time.Millisecond, "a webhook is refused while the tables are locked")
	if wait := 10*time.Second - time.Since(lockedAt); wait > 0 {
		<-time.After(wait) // the stall's length is the scenario, not a wait for a condition
	}
	a.mu.Lock()
	okDuringStall := len(a.ok)
	a.mu.Unlock()
	require.NoError(t, tx.Rollback(ctx))
	releasedAt := time.Now()

	// Ingest and delivery resume at once.
	require.Eventually(t, func() bool { a.mu.Lock(); defer a.mu.Unlock(); return len(a.ok) > okDuringStall+5 },
		waitLong, 10*time.Millisecond, "webhooks are accepted again")
	close(stop)
	<-sent
	a.mu.Lock()
	defer a.mu.Unlock()
	require.Empty(t, a.other, "only 200 or 503")
	crm.WaitDelivered(t, waitLong, a.ok...)
	resumed := time.Since(releasedAt)
	want := map[string]int{"msg:1": 1}
	for _, k := range a.ok {
		want[k] = 1
	}
	require.Equal(t, want, crm.Delivered(), "every acknowledged webhook delivered once, nothing else")
	t.Logf("stall 10 s: %d refused (503), %d acknowledged during it, %d after; all delivered %s after the lock went",
		a.refused, okDuringStall, len(a.ok)-okDuringStall, resumed.Round(time.Millisecond))
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
