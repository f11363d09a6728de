package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

// storeKinds runs a test on a SQLite file and, when WAMM_RELAY_TEST_PG is
// set, on a PostgreSQL schema of its own.
func storeKinds(t *testing.T, run func(t *testing.T, pgDSN string)) {
	t.Run("sqlite", func(t *testing.T) { run(t, "") })
	t.Run("postgres", func(t *testing.T) {
		dsn, _ := testutil.PostgresSchema(t)
		run(t, dsn)
	})
}

// TestBaselineSurvivesRestartWithinGrace: the first poll records the
// baseline at once. A relay stopped before the grace period ends (a deploy,
// a crash) decides on its next start from that record, not from an empty
// store: the 300 messages that arrived while it was down are all
// delivered, once, and the history older than the first poll still is not.
func TestBaselineSurvivesRestartWithinGrace(t *testing.T) {
	storeKinds(t, func(t *testing.T, pgDSN string) {
		tgt := testutil.NewTarget(t)
		var history []wammfake.Message
		env := startRcEnv(t, rcOptions{
			targets: []config.Target{target("crm", tgt.URL, "msg")},
			// Far longer than the test: the first poll's history is never
			// recorded as seen before the stop.
			grace: time.Hour,
			pgDSN: pgDSN,
			seed: func(a *wammfake.Account) {
				for i := range 40 {
					history = append(history, a.Receive(rcChats[i%len(rcChats)], fmt.Sprintf("history %d", i)))
				}
			},
		})
		env.waitFirstPass(t)
		b, ok, err := env.relay.app.Store().Baseline(context.Background(), "")
		require.NoError(t, err)
		require.True(t, ok, "the first poll recorded the baseline")
		require.Equal(t, history[len(history)-1].ID, b.HighIn)

		require.NoError(t, env.relay.stop())
		require.NoError(t, env.relay.app.Close())
		env.account.SetWebhookURL("") // down: WAMM gives up on these webhooks
		var downKeys []string
		for i := range 300 {
			m := env.account.Receive(rcChats[i%len(rcChats)], fmt.Sprintf("while down %d", i))
			downKeys = append(downKeys, string(event.MsgKey(m.ID)))
		}

		// Restarted with a short grace (a config change, say).
		env.cfg.Reconcile.Grace = config.D(200 * time.Millisecond)
		env.relay = env.start(t)
		tgt.WaitFor(t, 2*waitLong, "every message of the downtime", func(reqs []testutil.Request) bool {
			return len(byKey(reqs)) >= len(downKeys)
		})
		waitAllDelivered(t, env.relay, len(downKeys))
		requireOncePerKey(t, tgt, downKeys)
		delivered := tgt.Delivered()
		for _, m := range history {
			require.Zero(t, delivered[string(event.MsgKey(m.ID))], "history %s is not delivered", m.ID)
		}
		// The history seen again by the chat walks is recorded as seen.
		require.Eventually(t, func() bool {
			known, err := env.relay.app.Store().KnownMessages(context.Background(), "", []string{history[0].ID, history[39].ID})
			return err == nil && known[history[0].ID].MsgStored && known[history[39].ID].MsgStored
		}, waitLong, 20*time.Millisecond)
		require.Len(t, tgt.Delivered(), len(downKeys))
	})
}

// TestChatGapIsNamed: 150 lost webhooks in one chat between two polls are
// more than msg_get can return. The 100 it sees are delivered; the rest is
// a durable gap record in /api/v1/gaps and a metric, logged once, which an
// operator resolves through the API.
func TestChatGapIsNamed(t *testing.T) {
	storeKinds(t, func(t *testing.T, pgDSN string) {
		tgt := testutil.NewTarget(t)
		env := startRcEnv(t, rcOptions{targets: []config.Target{target("crm", tgt.URL, "msg")}, pgDSN: pgDSN})
		env.waitFirstPass(t)
		chat := rcChats[3]
		known := env.account.Receive(chat, "before the flood")
		tgt.WaitDelivered(t, waitLong, string(event.MsgKey(known.ID)))

		env.api.pause()
		env.account.DropNext(150)
		var lost []wammfake.Message
		for i := range 150 {
			lost = append(lost, env.account.Receive(chat, fmt.Sprintf("flood %d", i)))
		}
		env.api.resume()

		// The newest 100 are delivered; the oldest 50 are beyond the API.
		var visible []string
		for _, m := range lost[50:] {
			visible = append(visible, string(event.MsgKey(m.ID)))
		}
		tgt.WaitDelivered(t, 2*waitLong, visible...)
		env.waitMetric(t, "the gap is counted", func(v float64) bool { return v == 1 },
			"wamm_relay_reconcile_gaps_detected_total", "reason", store.GapChat)
		env.waitMetric(t, "the chat gap and the window gap are open", func(v float64) bool { return v == 2 },
			"wamm_relay_reconcile_gaps_open", "channel", "default")

		var listed struct {
			Gaps []struct {
				ID          int64  `json:"id"`
				Channel     string `json:"channel"`
				Chat        string `json:"chat"`
				Reason      string `json:"reason"`
				AfterMsgID  string `json:"after_msg_id"`
				BeforeMsgID string `json:"before_msg_id"`
				ResolvedAt  string `json:"resolved_at"`
			} `json:"gaps"`
		}
		adminJSON(t, env, http.MethodGet, "/api/v1/gaps?status=open", "", http.StatusOK, &listed)
		// The window moved past what was known too: chats the relay never
		// saw may have lost messages there, which is named as well.
		require.Len(t, listed.Gaps, 2)
		byReason := map[string]int{}
		for i, g := range listed.Gaps {
			byReason[g.Reason] = i
		}
		require.Contains(t, byReason, store.GapWindow)
		g := listed.Gaps[byReason[store.GapChat]]
		require.Equal(t, "default", g.Channel)
		require.Equal(t, chat, g.Chat)
		require.Equal(t, store.GapChat, g.Reason)
		require.Equal(t, known.ID, g.AfterMsgID, "the gap starts after the last message the relay had")
		require.Equal(t, lost[50].ID, g.BeforeMsgID, "and ends before the oldest msg_get returned")
		require.Equal(t, 1, strings.Count(env.relay.logs.String(), "reconcile: messages of this chat are beyond the API"), "logged once")

		adminJSON(t, env, http.MethodPost, "/api/v1/gaps/"+strconv.FormatInt(g.ID, 10)+"/resolve", `{"note":"asked the customer"}`, http.StatusOK, nil)
		adminJSON(t, env, http.MethodGet, "/api/v1/gaps?status=open", "", http.StatusOK, &listed)
		require.Len(t, listed.Gaps, 1, "the chat gap is resolved")
		require.Equal(t, store.GapWindow, listed.Gaps[0].Reason)
		adminJSON(t, env, http.MethodPost, "/api/v1/gaps/999999/resolve", "", http.StatusNotFound, nil)
		for _, m := range lost[:50] {
			require.Zero(t, tgt.Delivered()[string(event.MsgKey(m.ID))], "msg %s was beyond the API", m.ID)
		}
	})
}

// adminJSON calls the admin API of env's relay and decodes the answer.
func adminJSON(t *testing.T, env *rcEnv, method, path, body string, want int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, env.relay.base+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+env.cfg.Server.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, want, resp.StatusCode)
	if out != nil {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
	}
}

// channelAccount is a fake WAMM channel behind an API server of its own.
type channelAccount struct {
	account *wammfake.Account
	calls   func() int
}

func newChannelAccount(t *testing.T, token string, chats []string) (*channelAccount, string) {
	t.Helper()
	a := wammfake.New(wammfake.Options{Token: token, Chats: chats, RetryBackoff: 20 * time.Millisecond})
	var n int
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-mu
		n++
		mu <- struct{}{}
		a.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(api.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &channelAccount{account: a, calls: func() int { <-mu; defer func() { mu <- struct{}{} }(); return n }}, api.URL + "/api2"
}

// TestTwoChannels: two WAMM channels whose msg_ids are the same numbers.
// Each posts to its own path with its own secret, each has its own
// reconciler, and their events never meet: a target filtered to one
// channel gets only that channel's events, with X-Wamm-Channel telling
// which.
func TestTwoChannels(t *testing.T) {
	all := testutil.NewTarget(t)
	sales := testutil.NewTarget(t)
	def, defAPI := newChannelAccount(t, "token-default", rcChats[:3])
	sal, salAPI := newChannelAccount(t, "token-sales", rcChats[3:6])

	cfg := testConfig(t, target("all", all.URL), config.Target{Name: "sales-crm", URL: sales.URL, Channels: []string{"sales"}})
	cfg.Server.WebhookSecret = "default-secret-0123"
	cfg.Server.AdminToken = "admin-token-0123456789"
	cfg.WAMM.APIURL, cfg.WAMM.Token = defAPI, "token-default"
	cfg.Reconcile = config.Reconcile{Enabled: true, Interval: config.D(rcInterval), Grace: config.D(rcGrace), BackoffMax: config.D(rcBackoffMax)}
	cfg.WAMM.Channels = []config.Channel{{
		Name: "sales", Token: "token-sales", APIURL: salAPI, Timeout: config.D(5 * time.Second), WebhookSecret: "sales-secret-4567",
		Reconcile: chanReconcile(cfg.Reconcile),
	}}
	r := startRelay(t, cfg)
	def.account.SetWebhookURL(r.base + "/webhook/default-secret-0123")
	sal.account.SetWebhookURL(r.base + "/webhook/sales/sales-secret-4567")

	// Both first passes behind us (empty accounts: nothing is history).
	require.Eventually(t, func() bool {
		return channelPolls(r.base, "default", "ok") >= 1 && channelPolls(r.base, "sales", "ok") >= 1
	}, waitLong, 10*time.Millisecond)

	d1 := def.account.Receive(rcChats[0], "hello default")
	s1 := sal.account.Receive(rcChats[3], "hello sales")
	require.Equal(t, d1.ID, s1.ID, "the two channels number their messages alike")
	sal.account.DropNext(1)
	s2 := sal.account.Receive(rcChats[4], "sales webhook lost")
	def.account.DropNext(1)
	d2 := def.account.Receive(rcChats[1], "default webhook lost")

	defKeys := []string{"msg:" + d1.ID, "msg:" + d2.ID}
	salesKeys := []string{"sales:msg:" + s1.ID, "sales:msg:" + s2.ID}
	all.WaitDelivered(t, waitLong, append(defKeys, salesKeys...)...)
	sales.WaitDelivered(t, waitLong, salesKeys...)
	waitAllDelivered(t, r, 6)

	got := requireOncePerKey(t, all, append(defKeys, salesKeys...))
	for _, k := range defKeys {
		require.Equal(t, "default", got[k].Header.Get("X-Wamm-Channel"), k)
	}
	for _, k := range salesKeys {
		require.Equal(t, "sales", got[k].Header.Get("X-Wamm-Channel"), k)
	}
	require.Equal(t, "reconcile", got["sales:msg:"+s2.ID].Header.Get("X-Wamm-Relay-Source"), "found by the sales reconciler")
	require.Equal(t, "reconcile", got["msg:"+d2.ID].Header.Get("X-Wamm-Relay-Source"), "found by the default reconciler")
	requireOncePerKey(t, sales, salesKeys)
	require.Len(t, sales.Delivered(), 2, "the filtered target gets the sales channel only")
	require.Positive(t, def.calls())
	require.Positive(t, sal.calls())

	// The channels report.
	resp, err := http.NewRequest(http.MethodGet, r.base+"/api/v1/channels", nil)
	require.NoError(t, err)
	resp.Header.Set("Authorization", "Bearer "+cfg.Server.AdminToken)
	res, err := http.DefaultClient.Do(resp)
	require.NoError(t, err)
	defer res.Body.Close()
	var chans struct {
		Channels []struct {
			Name        string `json:"name"`
			WebhookPath string `json:"webhook_path"`
			Reconcile   struct {
				Enabled   bool  `json:"enabled"`
				Leader    bool  `json:"leader"`
				Passes    int64 `json:"passes"`
				Recovered int64 `json:"recovered"`
			} `json:"reconcile"`
			Check struct {
				OK          bool   `json:"ok"`
				Authorized  bool   `json:"authorized"`
				CheckedAt   string `json:"checked_at"`
				HookMatches *bool  `json:"hook_matches"`
			} `json:"check"`
		} `json:"channels"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&chans))
	require.Len(t, chans.Channels, 2)
	require.Equal(t, "default", chans.Channels[0].Name)
	require.Equal(t, "/webhook", chans.Channels[0].WebhookPath)
	require.Equal(t, "sales", chans.Channels[1].Name)
	require.Equal(t, "/webhook/sales", chans.Channels[1].WebhookPath)
	for _, c := range chans.Channels {
		require.True(t, c.Reconcile.Enabled, c.Name)
		require.True(t, c.Reconcile.Leader, c.Name)
		require.Positive(t, c.Reconcile.Passes, c.Name)
		require.Equal(t, int64(1), c.Reconcile.Recovered, c.Name)
		require.NotEmpty(t, c.Check.CheckedAt, "channel_list was asked at the first pass: %s", c.Name)
		require.True(t, c.Check.Authorized, c.Name)
		require.True(t, c.Check.OK, c.Name)
		require.Nil(t, c.Check.HookMatches, "no server.public_url: hooks are not compared")
	}
}

// TestEachChannelHasOneLeader: two instances on one PostgreSQL schema,
// both serving two channels. Each channel's reconciler runs on exactly one
// instance (the lock is the channel's), and a lost webhook of each channel
// is delivered once.
func TestEachChannelHasOneLeader(t *testing.T) {
	dsn, _ := testutil.PostgresSchema(t)
	crm := testutil.NewTarget(t)
	def, defAPI := newChannelAccount(t, "token-default", rcChats[:3])
	sal, salAPI := newChannelAccount(t, "token-sales", rcChats[3:6])
	const interval = 500 * time.Millisecond
	cfgFor := func() config.Config {
		cfg := pgConfig(t, dsn, target("crm", crm.URL))
		cfg.WAMM.APIURL, cfg.WAMM.Token = defAPI, "token-default"
		cfg.Reconcile = config.Reconcile{Enabled: true, Interval: config.D(interval), Grace: config.D(200 * time.Millisecond), BackoffMax: config.D(interval)}
		cfg.WAMM.Channels = []config.Channel{{Name: "sales", Token: "token-sales", APIURL: salAPI, Timeout: config.D(5 * time.Second),
			Reconcile: chanReconcile(cfg.Reconcile)}}
		return cfg
	}
	relays := [2]*relayUnderTest{startPGRelay(t, cfgFor()), startPGRelay(t, cfgFor())}
	def.account.SetWebhookURL(relays[0].base + "/webhook")
	sal.account.SetWebhookURL(relays[1].base + "/webhook/sales")

	for _, ch := range []string{"default", "sales"} {
		require.Eventually(t, func() bool {
			for i := range relays {
				if channelPolls(relays[i].base, ch, "ok") >= 1 && channelPolls(relays[1-i].base, ch, "skipped_not_leader") >= 2 {
					return channelPolls(relays[1-i].base, ch, "ok") == 0
				}
			}
			return false
		}, waitLong, 20*time.Millisecond, "channel %s: one instance leads, the other skips", ch)
	}

	def.account.DropNext(1)
	d := def.account.Receive(rcChats[0], "default lost")
	sal.account.DropNext(1)
	s := sal.account.Receive(rcChats[3], "sales lost")
	keys := []string{"msg:" + d.ID, "sales:msg:" + s.ID}
	crm.WaitDelivered(t, waitLong, keys...)
	requireOncePerKey(t, crm, keys)
	for _, ch := range []string{"default", "sales"} {
		leaders := 0
		for i := range relays {
			if channelPolls(relays[i].base, ch, "ok") > 0 {
				leaders++
			}
		}
		require.Equal(t, 1, leaders, "channel %s polled by one instance", ch)
	}
}

// chanReconcile is a channel override equal to r.
func chanReconcile(r config.Reconcile) config.ChannelReconcile {
	return config.ChannelReconcile{Enabled: r.Enabled, Interval: r.Interval, Grace: r.Grace,
		BackfillOnStart: r.BackfillOnStart, BackoffMax: r.BackoffMax}
}
