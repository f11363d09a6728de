package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store"
)

// targetPaused reads GET /api/v1/targets' paused field for name.
func targetPaused(t *testing.T, r *relayUnderTest, name string) bool {
	t.Helper()
	code, body := r.admin(t, http.MethodGet, "/api/v1/targets", opsAdminToken, "")
	require.Equal(t, http.StatusOK, code, string(body))
	var resp struct {
		Targets []struct {
			Name   string `json:"name"`
			Paused bool   `json:"paused"`
		} `json:"targets"`
	}
	require.NoError(t, json.Unmarshal(body, &resp))
	for _, tg := range resp.Targets {
		if tg.Name == name {
			return tg.Paused
		}
	}
	t.Fatalf("no target %s in %s", name, body)
	return false
}

func pendingFor(t *testing.T, r *relayUnderTest, target string) int {
	t.Helper()
	ds, err := r.app.Store().List(context.Background(), store.ListFilter{Target: target, Status: event.StatusPending, Limit: 1000})
	require.NoError(t, err)
	return len(ds)
}

// A pause holds across a restart and loses nothing; a resume written to the
// store by someone else (the CLI, another instance) reaches a running relay.
func TestPausedTargetKeepsItsQueueAcrossARestart(t *testing.T) {
	crm, bots := testutil.NewTarget(t), testutil.NewTarget(t)
	cfg := testConfig(t, target("crm", crm.URL), target("bots", bots.URL))
	cfg.Server.AdminToken = opsAdminToken
	r := startRelay(t, cfg)

	code, body := r.admin(t, http.MethodPost, "/api/v1/targets/crm/pause", opsAdminToken, "")
	require.Equal(t, http.StatusOK, code, string(body))
	require.True(t, targetPaused(t, r, "crm"))
	for _, id := range []int{1, 2, 3} {
		code, _ := r.post(t, "/webhook", msgBody(id, "received"))
		require.Equal(t, http.StatusOK, code)
	}
	bots.WaitDelivered(t, waitLong, "msg:1", "msg:2", "msg:3")
	require.Empty(t, crm.Requests(), "a paused target gets nothing")
	require.Equal(t, 3, pendingFor(t, r, "crm"))

	require.NoError(t, r.stop())
	require.NoError(t, r.app.Close())
	r2 := startRelay(t, cfg)
	require.True(t, targetPaused(t, r2, "crm"), "the pause is durable")
	code, _ = r2.post(t, "/webhook", msgBody(4, "received"))
	require.Equal(t, http.StatusOK, code)
	bots.WaitDelivered(t, waitLong, "msg:4")
	require.Empty(t, crm.Requests(), "still paused after the restart")
	require.Equal(t, 4, pendingFor(t, r2, "crm"))

	// As `wamm-relay targets resume crm` does: the store only.
	require.NoError(t, r2.app.Store().ResumeTarget(context.Background(), "crm"))
	crm.WaitDelivered(t, waitLong, "msg:1", "msg:2", "msg:3", "msg:4")
	require.False(t, targetPaused(t, r2, "crm"))
	require.Eventually(t, func() bool { return pendingFor(t, r2, "crm") == 0 }, waitLong, 5*time.Millisecond)
	require.Equal(t, map[string]int{"msg:1": 1, "msg:2": 1, "msg:3": 1, "msg:4": 1}, crm.Delivered())
}

// A target that keeps failing trips its breaker: attempts stop for the
// cool-down instead of hammering it, and deliveries resume after a probe.
func TestBreakerHoldsADownTargetAndRecovers(t *testing.T) {
	crm := testutil.NewTarget(t)
	up := make(chan struct{})
	crm.Respond(func(*http.Request, []byte) int {
		select {
		case <-up:
			return http.StatusOK
		default:
			return http.StatusServiceUnavailable
		}
	})
	tc := target("crm", crm.URL)
	tc.BreakerFailures, tc.BreakerCooldown = 3, config.D(200*time.Millisecond)
	cfg := testConfig(t, tc)
	cfg.Delivery.MaxAttempts = 1000
	cfg.Server.AdminToken = opsAdminToken
	r := startRelay(t, cfg)
	for _, id := range []int{1, 2, 3, 4, 5} {
		code, _ := r.post(t, "/webhook", msgBody(id, "received"))
		require.Equal(t, http.StatusOK, code)
	}
	require.Eventually(t, func() bool {
		code, body := r.admin(t, http.MethodGet, "/api/v1/targets", opsAdminToken, "")
		return code == http.StatusOK && strings.Contains(string(body), `"breaker":"open"`)
	}, waitLong, 5*time.Millisecond)
	close(up)
	crm.WaitDelivered(t, waitLong, "msg:1", "msg:2", "msg:3", "msg:4", "msg:5")
	waitAllDelivered(t, r, 5)
	// Without the breaker, 5 deliveries retried every 5-20 ms would have
	// made hundreds of requests while the breaker held them to a few per
	// cool-down.
	require.Less(t, len(crm.Requests()), 60)
}
