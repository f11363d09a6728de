package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

// End-to-end acceptance tests of the reconciler: a fake WAMM account (its API
// and its webhook sender), the whole relay in-process on a real SQLite file,
// and recording HTTP targets. Intervals are shortened so each test runs in
// a few seconds.

const (
	// rcToken is distinctive so a leak into logs or metrics is unmistakable.
	rcToken = "wamm-TOKEN-q7Zx93kVb2-must-never-be-logged"

	rcInterval   = 500 * time.Millisecond
	rcGrace      = 300 * time.Millisecond
	rcBackoffMax = time.Second
)

// rcChats are the contacts of the fake account.
var rcChats = func() []string {
	var out []string
	for i := range 10 {
		out = append(out, fmt.Sprintf("7900111%04d", i))
	}
	return out
}()

// rcOptions shape one test's environment; zero durations take the rc* defaults.
type rcOptions struct {
	targets    []config.Target
	interval   time.Duration
	grace      time.Duration
	backoffMax time.Duration
	backfill   bool
	// seed runs against the account before the relay starts and before the
	// account has a webhook URL: its messages exist, their webhooks never go.
	seed func(a *wammfake.Account)
	// holdSender leaves the account's webhook sender stopped until
	// startSender is called: webhooks queue up meanwhile.
	holdSender bool
	// pgDSN, when set, runs the relay on that PostgreSQL schema instead of
	// a SQLite file.
	pgDSN string
	// config adjusts the relay's configuration before it starts.
	config func(c *config.Config)
}

// rcEnv is a fake WAMM account wired to a relay with the reconciler on.
type rcEnv struct {
	account *wammfake.Account
	api     *apiSpy
	relay   *relayUnderTest
	cfg     config.Config

	senderOnce sync.Once
}

func startRcEnv(t *testing.T, o rcOptions) *rcEnv {
	t.Helper()
	if o.interval == 0 {
		o.interval = rcInterval
	}
	if o.grace == 0 {
		o.grace = rcGrace
	}
	if o.backoffMax == 0 {
		o.backoffMax = max(rcBackoffMax, o.interval)
	}
	account := wammfake.New(wammfake.Options{
		Token:        rcToken,
		Chats:        rcChats,
		RetryBackoff: 20 * time.Millisecond,
	})
	if o.seed != nil {
		o.seed(account)
	}
	spy := newAPISpy(account.Handler())
	api := httptest.NewServer(spy)
	t.Cleanup(api.Close)
	t.Cleanup(spy.resume) // a blocked handler would hang api.Close

	cfg := testConfig(t, o.targets...)
	cfg.WAMM.APIURL = api.URL + "/api2"
	cfg.WAMM.Token = rcToken
	cfg.WAMM.Timeout = config.D(5 * time.Second)
	cfg.Reconcile.Enabled = true
	cfg.Reconcile.Interval = config.D(o.interval)
	cfg.Reconcile.Grace = config.D(o.grace)
	cfg.Reconcile.BackoffMax = config.D(o.backoffMax)
	cfg.Reconcile.BackfillOnStart = o.backfill
	cfg.Server.AdminToken = "admin-token-0123456789"
	if o.pgDSN != "" {
		cfg.Store.Driver, cfg.Store.DSN = config.DriverPostgres, o.pgDSN
	}
	if o.config != nil {
		o.config(&cfg)
	}

	env := &rcEnv{account: account, api: spy, cfg: cfg}
	env.relay = env.start(t)
	account.SetWebhookURL(env.relay.base + cfg.Server.WebhookPath)
	if !o.holdSender {
		env.startSender(t)
	}
	return env
}

// start runs a relay on the environment's configuration.
func (e *rcEnv) start(t *testing.T) *relayUnderTest {
	t.Helper()
	if e.cfg.Store.Driver == config.DriverPostgres {
		return startPGRelay(t, e.cfg)
	}
	return startRelay(t, e.cfg)
}

// startSender starts posting the account's webhooks; the sender stops before
// the relay does.
func (e *rcEnv) startSender(t *testing.T) {
	t.Helper()
	e.senderOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.account.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-done)
		})
	})
}

// waitFirstPass waits until a reconcile pass has succeeded: the first-run
// baseline (or backfill decision) is behind us.
func (e *rcEnv) waitFirstPass(t *testing.T) {
	t.Helper()
	e.waitMetric(t, "first successful reconcile pass", func(v float64) bool { return v >= 1 },
		"wamm_relay_reconcile_polls_total", "outcome", "ok")
}

// flush waits until every queued webhook was answered by the relay.
func (e *rcEnv) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.NoError(t, e.account.Flush(ctx))
}

// missed creates an incoming message whose webhook WAMM drops.
func (e *rcEnv) missed(phone, text string) wammfake.Message {
	e.account.DropNext(1)
	return e.account.Receive(phone, text)
}

// metric reads the series (labels as name, value pairs) from the relay's
// /metrics; an absent series reads 0.
func (e *rcEnv) metric(name string, labels ...string) (float64, error) {
	resp, err := http.Get(e.relay.base + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("get metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("get metrics: status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("parse metrics: %w", err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	// Series are summed over the labels not asked for (the channel, say).
	var sum float64
	for _, m := range fams[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		if c := m.GetCounter(); c != nil {
			sum += c.GetValue()
			continue
		}
		sum += m.GetGauge().GetValue()
	}
	return sum, nil
}

func (e *rcEnv) requireMetric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, err := e.metric(name, labels...)
	require.NoError(t, err)
	return v
}

func (e *rcEnv) waitMetric(t *testing.T, what string, cond func(float64) bool, name string, labels ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		v, err := e.metric(name, labels...)
		return err == nil && cond(v)
	}, waitLong, 10*time.Millisecond, "%s: %s%v", what, name, labels)
}

// apiSpy sits in front of the fake account's API: it can hold requests
// (pause), drop connections (broken) and counts the calls the tests wait on.
type apiSpy struct {
	next   http.Handler
	gate   sync.RWMutex
	paused atomic.Bool
	broken atomic.Bool

	mu sync.Mutex
	// started numbers the incoming msg_get_last calls (the first call of each
	// pass) as they reach the account; completed lists those numbers as the
	// calls finish.
	started   int
	completed []int
	chatReads int // msg_get calls answered
	changed   chan struct{}
}

func newAPISpy(next http.Handler) *apiSpy {
	return &apiSpy{next: next, changed: make(chan struct{})}
}

func (s *apiSpy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.broken.Load() {
		// A dropped connection: the client's error then quotes the request
		// URL, token included, which the relay must redact.
		panic(http.ErrAbortHandler)
	}
	incoming := strings.Contains(r.URL.Path, "/msg_get_last/") && r.URL.Query().Get("from_me") == "0"
	var n int
	if incoming {
		s.mu.Lock()
		s.started++
		n = s.started
		s.mu.Unlock()
	}
	s.next.ServeHTTP(w, r)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case incoming:
		s.completed = append(s.completed, n)
	case strings.Contains(r.URL.Path, "/msg_get/"):
		s.chatReads++
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// pause holds every API request until resume; requests already inside the
// account finish first.
func (s *apiSpy) pause() {
	s.gate.Lock()
	s.paused.Store(true)
}

func (s *apiSpy) resume() {
	if s.paused.Swap(false) {
		s.gate.Unlock()
	}
}

// mark returns a point to count incoming polls from: polls after it read the
// account as it is now or later.
func (s *apiSpy) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

func (s *apiSpy) chatReadCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chatReads
}

// waitPolls waits until n incoming polls that started after mark finished.
func (s *apiSpy) waitPolls(t *testing.T, mark, n int) {
	t.Helper()
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		done := 0
		for _, c := range s.completed {
			if c > mark {
				done++
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if done >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %d polls after mark %d (got %d)", waitLong, n, mark, done)
		}
	}
}

// byKey indexes a target's requests by event key.
func byKey(reqs []testutil.Request) map[string][]testutil.Request {
	out := map[string][]testutil.Request{}
	for _, r := range reqs {
		out[r.Key()] = append(out[r.Key()], r)
	}
	return out
}

// requireOncePerKey checks that the target got exactly keys, each once and
// answered 2xx.
func requireOncePerKey(t *testing.T, tgt *testutil.Target, keys []string) map[string]testutil.Request {
	t.Helper()
	want := map[string]int{}
	for _, k := range keys {
		want[k] = 1
	}
	require.Equal(t, want, tgt.Delivered())
	require.Len(t, tgt.Requests(), len(keys), "no failed or repeated requests")
	out := map[string]testutil.Request{}
	for k, rs := range byKey(tgt.Requests()) {
		out[k] = rs[0]
	}
	return out
}

// decodeBody decodes a webhook body with numbers kept as json.Number.
func decodeBody(t *testing.T, body []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v map[string]any
	require.NoError(t, dec.Decode(&v), "body %s", body)
	return v
}

// wantReconciledMsg is the body the reconciler must build for a message whose
// msg webhook (webhookBody) was lost: the same keys and values, except those
// polling does not return (from_api, phone_acc; qoute_msg_id, senderId and
// senderName are null in the webhook already) are null, and date_upd, which
// polling does return, is kept.
func wantReconciledMsg(t *testing.T, webhookBody []byte, m wammfake.Message) string {
	t.Helper()
	v := decodeBody(t, webhookBody)
	md := v["msg_data"].(map[string]any)
	md["from_api"] = nil
	md["phone_acc"] = nil
	md["date_upd"] = m.DateUpd
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// requireReconciledMsgShape checks the contract's "Events found by the
// reconciler" shape of a msg body, key by key.
func requireReconciledMsgShape(t *testing.T, body []byte, m wammfake.Message) {
	t.Helper()
	v := decodeBody(t, body)
	require.Equal(t, "msg", v["tip"])
	md, ok := v["msg_data"].(map[string]any)
	require.True(t, ok, "msg_data is an object: %s", body)
	require.Equal(t, json.Number(m.ID), md["msg_id"], "msg_id is a JSON number")
	require.Equal(t, json.Number(fmt.Sprint(m.FromMe)), md["from_me"], "from_me is a JSON number")
	for _, k := range []string{"qoute_msg_id", "from_api", "senderId", "senderName", "phone_acc", "msg_link"} {
		val, present := md[k]
		require.True(t, present, "key %s present", k)
		require.Nil(t, val, "key %s is null", k)
	}
	want := map[string]string{
		"phone": m.Phone, "chat_name": m.ChatName, "tip_msg": m.TipMsg, "msg_text": m.Text,
		"date_ins": m.DateIns, "state": m.State, "date_upd": m.DateUpd,
	}
	for k, w := range want {
		require.Equal(t, w, md[k], "key %s as the API returned it", k)
	}
}

// TestReconcileRecoversDroppedWebhooks: with one webhook in ten lost, every
// message reaches the target exactly once; the lost ones come from the
// reconciler within interval + grace + 1s of their creation, in the webhook's
// shape.
func TestReconcileRecoversDroppedWebhooks(t *testing.T) {
	tgt := testutil.NewTarget(t)
	env := startRcEnv(t, rcOptions{targets: []config.Target{target("crm", tgt.URL, "msg", "msg_state")}})
	env.waitFirstPass(t)

	const rounds, perRound = 10, 10
	created := map[string]time.Time{}
	var keys []string
	for round := range rounds {
		for i := range perRound {
			n := round*perRound + i
			if i == 3 {
				env.account.DropNext(1) // deterministically one in ten
			}
			phone := rcChats[n%4]
			var m wammfake.Message
			if n%3 == 2 {
				m = env.account.SendOut(phone, fmt.Sprintf("reply %d", n))
			} else {
				m = env.account.Receive(phone, fmt.Sprintf("question %d", n))
			}
			created[m.ID] = time.Now()
			keys = append(keys, string(event.MsgKey(m.ID)))
		}
		env.flush(t) // spreads the messages over several polls
	}
	dropped := env.account.Dropped()
	require.Len(t, dropped, rounds)

	tgt.WaitDelivered(t, waitLong, keys...)
	waitAllDelivered(t, env.relay, len(keys))
	got := requireOncePerKey(t, tgt, keys)

	bound := rcInterval + rcGrace + time.Second
	lost := map[string]bool{}
	for _, w := range dropped {
		lost[w.MsgID] = true
		req := got[string(event.MsgKey(w.MsgID))]
		m, ok := env.account.Message(w.MsgID)
		require.True(t, ok)
		require.Equal(t, "reconcile", req.Header.Get("X-Wamm-Relay-Source"), "msg %s", w.MsgID)
		took := req.At.Sub(created[w.MsgID])
		require.LessOrEqual(t, took, bound, "msg %s reached the target %s after it was created", w.MsgID, took)
		t.Logf("msg %s recovered %s after creation", w.MsgID, took.Round(time.Millisecond))
		require.JSONEq(t, wantReconciledMsg(t, w.Body, m), string(req.Body))
		requireReconciledMsgShape(t, req.Body, m)
	}
	for _, w := range env.account.Webhooks() {
		if lost[w.MsgID] {
			continue
		}
		require.Equal(t, wammfake.WebhookSent, w.Status)
		req := got[string(event.MsgKey(w.MsgID))]
		require.Equal(t, "webhook", req.Header.Get("X-Wamm-Relay-Source"), "msg %s", w.MsgID)
		require.Equal(t, string(w.Body), string(req.Body), "a webhook is relayed byte for byte")
	}
	require.Equal(t, float64(rounds), env.requireMetric(t, "wamm_relay_reconcile_gaps_filled_total", "kind", "msg"))
	require.Zero(t, env.requireMetric(t, "wamm_relay_reconcile_gaps_filled_total", "kind", "msg_state"))
	require.Zero(t, env.requireMetric(t, "wamm_relay_reconcile_window_overflows_total"))
}

// TestReconcileWebhookWithinGraceWins: a webhook that arrives after a poll saw
// its message missing, but within the grace period, is the one delivered.
func TestReconcileWebhookWithinGraceWins(t *testing.T) {
	const grace = 2 * time.Second
	tgt := testutil.NewTarget(t)
	env := startRcEnv(t, rcOptions{
		targets:    []config.Target{target("crm", tgt.URL, "msg")},
		interval:   300 * time.Millisecond,
		grace:      grace,
		holdSender: true,
	})
	env.waitFirstPass(t)

	late := env.account.Receive(rcChats[0], "my webhook is late")
	mark := env.api.mark()
	markedAt := time.Now()
	// Two incoming polls that read the account after the message existed:
	// the first pass saw it missing (the sender is stopped, so the store
	// cannot know it), and that pass was over once the second began.
	env.api.waitPolls(t, mark, 2)
	env.startSender(t)
	lateKey := string(event.MsgKey(late.ID))
	tgt.WaitDelivered(t, waitLong, lateKey)
	first := byKey(tgt.Requests())[lateKey][0]
	// The candidate's grace deadline is no earlier than markedAt + grace, so
	// this proves the webhook came while the reconciler was waiting.
	require.Less(t, first.At.Sub(markedAt), grace, "precondition: the webhook arrived within the grace period")

	// A later message whose webhook is lost: once the reconciler delivers it,
	// the grace period of the late message is long over, so anything it
	// would have done about that message it has done.
	sentinel := env.missed(rcChats[1], "lost")
	sentinelKey := string(event.MsgKey(sentinel.ID))
	tgt.WaitDelivered(t, waitLong, sentinelKey)
	waitAllDelivered(t, env.relay, 2)

	got := requireOncePerKey(t, tgt, []string{lateKey, sentinelKey})
	require.Equal(t, "webhook", got[lateKey].Header.Get("X-Wamm-Relay-Source"))
	require.Equal(t, "reconcile", got[sentinelKey].Header.Get("X-Wamm-Relay-Source"))
	require.Equal(t, 1.0, env.requireMetric(t, "wamm_relay_reconcile_gaps_filled_total", "kind", "msg"),
		"only the sentinel was filled by the reconciler")
}

// TestReconcileRecoversAfterAPIErrors: while the WAMM API fails (HTTP errors,
// error envelopes, dropped connections) the reconciler counts and backs off;
// once it recovers the gaps of the outage are filled. The token never shows
// up in the logs or metrics.
func TestReconcileRecoversAfterAPIErrors(t *testing.T) {
	tgt := testutil.NewTarget(t)
	env := startRcEnv(t, rcOptions{
		targets:    []config.Target{target("crm", tgt.URL, "msg", "msg_state")},
		interval:   300 * time.Millisecond,
		grace:      200 * time.Millisecond,
		backoffMax: time.Second,
	})
	env.waitFirstPass(t)

	env.account.SetAPIFailure(wammfake.APIFailure{Status: http.StatusServiceUnavailable})
	var lostKeys, webhookKeys []string
	for i := range 9 {
		phone := rcChats[i%3]
		if i%3 == 0 {
			m := env.account.Receive(phone, fmt.Sprintf("arrives by webhook %d", i))
			webhookKeys = append(webhookKeys, string(event.MsgKey(m.ID)))
			continue
		}
		m := env.missed(phone, fmt.Sprintf("lost during the outage %d", i))
		lostKeys = append(lostKeys, string(event.MsgKey(m.ID)))
	}
	// Webhooks keep working while the API is down.
	env.flush(t)
	tgt.WaitDelivered(t, waitLong, webhookKeys...)

	counted := func(reason string) {
		t.Helper()
		env.waitMetric(t, "api errors counted", func(v float64) bool { return v >= 1 },
			"wamm_relay_reconcile_api_errors_total", "reason", reason)
	}
	counted("http_503")
	// Each switch sets the next failure before lifting the previous one, so
	// no pass succeeds in between.
	env.account.SetAPIFailure(wammfake.APIFailure{Err: "acc not authorized"})
	counted("not_authorized")
	env.api.broken.Store(true)
	env.account.ClearAPIFailure()
	counted("network")
	require.Empty(t, byKey(tgt.Requests())[lostKeys[0]], "nothing recovered while the API fails")
	recoveredAt := time.Now()
	env.api.broken.Store(false)

	tgt.WaitDelivered(t, waitLong, lostKeys...)
	all := append(append([]string(nil), lostKeys...), webhookKeys...)
	waitAllDelivered(t, env.relay, len(all))

	t.Run("gaps filled after recovery", func(t *testing.T) {
		got := requireOncePerKey(t, tgt, all)
		for _, k := range lostKeys {
			require.Equal(t, "reconcile", got[k].Header.Get("X-Wamm-Relay-Source"), k)
			require.True(t, got[k].At.After(recoveredAt), "%s recovered only after the API came back", k)
		}
		for _, k := range webhookKeys {
			require.Equal(t, "webhook", got[k].Header.Get("X-Wamm-Relay-Source"), k)
		}
		require.Equal(t, float64(len(lostKeys)), env.requireMetric(t, "wamm_relay_reconcile_gaps_filled_total", "kind", "msg"))
		require.GreaterOrEqual(t, env.requireMetric(t, "wamm_relay_reconcile_polls_total", "outcome", "error"), 3.0)
		logs := env.relay.logs.String()
		for _, reason := range []string{"http_503", "not_authorized", "network"} {
			require.True(t, strings.Contains(logs, `"reason":"`+reason+`"`), "the %s failure was logged", reason)
		}
		require.True(t, strings.Contains(logs, "reconcile: recovered after"), "the recovery was logged")
	})

	t.Run("token never logged", func(t *testing.T) {
		logs := env.relay.logs.String()
		for _, form := range []string{rcToken, url.PathEscape(rcToken), url.QueryEscape(rcToken)} {
			for _, line := range strings.Split(logs, "\n") {
				require.False(t, strings.Contains(line, form), "the WAMM token leaked into a log line: %s", line)
			}
		}
		require.True(t, strings.Contains(logs, "reconcile: pass failed"), "the failures were logged, so the check means something")
		require.True(t, strings.Contains(logs, "/msg_get_last/***/"), "the dropped connection's error quotes the URL, redacted")
		resp, err := http.Get(env.relay.base + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NotContains(t, string(body), rcToken)
	})
}

// TestBaselineOnFirstRun: against an empty store, the messages already in the
// account are recorded as seen and not delivered, unless backfill_on_start
// asks for them; messages after that are delivered either way.
func TestBaselineOnFirstRun(t *testing.T) {
	tests := []struct {
		name         string
		backfill     bool
		wantBaseline float64
	}{
		{"history recorded as seen", false, 5},
		{"history backfilled", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tgt := testutil.NewTarget(t)
			var history []wammfake.Message
			env := startRcEnv(t, rcOptions{
				targets:  []config.Target{target("crm", tgt.URL, "msg", "msg_state")},
				backfill: tt.backfill,
				seed: func(a *wammfake.Account) {
					history = append(history,
						a.Receive(rcChats[0], "old question"),
						a.SendOut(rcChats[0], "old answer"),
						a.Receive(rcChats[1], "another old question"),
						a.SendOut(rcChats[2], "old note"),
						a.Receive(rcChats[2], "old thanks"))
					require.NoError(t, a.SetState(history[1].ID, "viewed"))
					history[1], _ = a.Message(history[1].ID)
				},
			})
			env.waitFirstPass(t)
			// The baseline is recorded once its grace period is over, so a
			// webhook still on its way for one of those messages would win.
			require.Eventually(t, func() bool {
				return env.requireMetric(t, "wamm_relay_reconcile_baseline_total") == tt.wantBaseline
			}, waitLong, 10*time.Millisecond)

			fresh := env.account.Receive(rcChats[3], "new, by webhook")
			lost := env.missed(rcChats[4], "new, webhook lost")
			freshKey, lostKey := string(event.MsgKey(fresh.ID)), string(event.MsgKey(lost.ID))
			// The lost message is delivered after its grace period: by then
			// the history, polled at the same time or earlier, would have been
			// delivered too if it were going to be.
			tgt.WaitDelivered(t, waitLong, freshKey, lostKey)

			keys := []string{freshKey, lostKey}
			if tt.backfill {
				for _, m := range history {
					keys = append(keys, string(event.MsgKey(m.ID)))
				}
				tgt.WaitDelivered(t, waitLong, keys...)
			}
			waitAllDelivered(t, env.relay, len(keys))
			got := requireOncePerKey(t, tgt, keys)
			require.Equal(t, "webhook", got[freshKey].Header.Get("X-Wamm-Relay-Source"))
			require.Equal(t, "reconcile", got[lostKey].Header.Get("X-Wamm-Relay-Source"))
			if tt.backfill {
				for _, m := range history {
					req := got[string(event.MsgKey(m.ID))]
					require.Equal(t, "reconcile", req.Header.Get("X-Wamm-Relay-Source"))
					requireReconciledMsgShape(t, req.Body, m)
				}
			}
		})
	}
}

// TestReconcileOverflowBurst: 300 messages whose webhooks are all lost, over
// ten chats and within one interval, overflow the polled window (100); the
// reconciler reads the chats one by one and delivers every message once.
func TestReconcileOverflowBurst(t *testing.T) {
	tgt := testutil.NewTarget(t)
	env := startRcEnv(t, rcOptions{targets: []config.Target{target("crm", tgt.URL, "msg", "msg_state")}})
	env.waitFirstPass(t)

	const burst = 300
	// Holding the API makes the burst fall between two polls for sure.
	env.api.pause()
	env.account.DropNext(burst)
	keys := make([]string, 0, burst)
	for i := range burst {
		phone := rcChats[i%len(rcChats)]
		var m wammfake.Message
		if i%3 == 2 {
			m = env.account.SendOut(phone, fmt.Sprintf("burst reply %d", i))
		} else {
			m = env.account.Receive(phone, fmt.Sprintf("burst %d", i))
		}
		keys = append(keys, string(event.MsgKey(m.ID)))
	}
	env.api.resume()
	require.Len(t, env.account.Dropped(), burst)

	tgt.WaitFor(t, 2*waitLong, "the whole burst", func(reqs []testutil.Request) bool {
		return len(byKey(reqs)) >= burst
	})
	waitAllDelivered(t, env.relay, burst)
	got := requireOncePerKey(t, tgt, keys)
	for k, req := range got {
		require.Equal(t, "reconcile", req.Header.Get("X-Wamm-Relay-Source"), k)
	}
	require.GreaterOrEqual(t, env.requireMetric(t, "wamm_relay_reconcile_window_overflows_total"), 1.0)
	require.Equal(t, float64(burst), env.requireMetric(t, "wamm_relay_reconcile_gaps_filled_total", "kind", "msg"))
	require.GreaterOrEqual(t, env.api.chatReadCount(), len(rcChats), "each chat was read with msg_get")
}

// TestReconcileStatusGap: an outgoing message's lost msg_state webhook is
// rebuilt by the reconciler in the webhook's shape and delivered to a target
// subscribed to msg_state.
//
// Limitation (inherent to polling, shown in the second half): msg_get_last
// shows only a message's current state, so a status overtaken by a newer one
// between two polls cannot be recovered; only the newest is.
func TestReconcileStatusGap(t *testing.T) {
	crm := testutil.NewTarget(t)
	statuses := testutil.NewTarget(t)
	env := startRcEnv(t, rcOptions{targets: []config.Target{
		target("crm", crm.URL, "msg", "msg_state"),
		target("statuses", statuses.URL, "msg_state"),
	}})
	env.waitFirstPass(t)

	out := env.account.SendOut(rcChats[0], "your order is on its way")
	msgKey := string(event.MsgKey(out.ID))
	crm.WaitDelivered(t, waitLong, msgKey)

	env.account.DropNext(1)
	require.NoError(t, env.account.SetState(out.ID, "delivered"))
	lost := env.account.Dropped()
	require.Len(t, lost, 1)
	deliveredKey := string(event.StateKey(out.ID, "delivered"))
	statuses.WaitDelivered(t, waitLong, deliveredKey)
	crm.WaitDelivered(t, waitLong, deliveredKey)

	// The next status arrives by webhook as usual.
	require.NoError(t, env.account.SetState(out.ID, "viewed"))
	viewedKey := string(event.StateKey(out.ID, "viewed"))
	statuses.WaitDelivered(t, waitLong, viewedKey)
	crm.WaitDelivered(t, waitLong, viewedKey)
	waitAllDelivered(t, env.relay, 5)

	got := requireOncePerKey(t, statuses, []string{deliveredKey, viewedKey})
	requireOncePerKey(t, crm, []string{msgKey, deliveredKey, viewedKey})
	rebuilt := got[deliveredKey]
	require.Equal(t, "reconcile", rebuilt.Header.Get("X-Wamm-Relay-Source"))
	// Exactly the webhook WAMM would have sent (the fake's msg_state shape is
	// the contract's).
	require.JSONEq(t, string(lost[0].Body), string(rebuilt.Body))
	v := decodeBody(t, rebuilt.Body)
	require.Equal(t, "msg_state", v["tip"])
	md := v["msg_data"].(map[string]any)
	require.Equal(t, json.Number(out.ID), md["msg_id"])
	require.Equal(t, json.Number("1"), md["from_me"])
	require.Equal(t, "delivered", md["state"])
	require.Equal(t, out.Phone, md["phone"])
	require.Len(t, md, 5, "msg_id, from_me, phone, state, date_upd")
	require.Equal(t, "webhook", got[viewedKey].Header.Get("X-Wamm-Relay-Source"))
	require.Equal(t, 1.0, env.requireMetric(t, "wamm_relay_reconcile_gaps_filled_total", "kind", "msg_state"))

	// Two lost statuses between two polls: only the newest can be recovered.
	second := env.account.SendOut(rcChats[1], "and here is the invoice")
	crm.WaitDelivered(t, waitLong, string(event.MsgKey(second.ID)))
	env.api.pause()
	env.account.DropNext(2)
	require.NoError(t, env.account.SetState(second.ID, "delivered"))
	require.NoError(t, env.account.SetState(second.ID, "viewed"))
	env.api.resume()
	secondViewed := string(event.StateKey(second.ID, "viewed"))
	statuses.WaitDelivered(t, waitLong, secondViewed)
	waitAllDelivered(t, env.relay, 8) // + msg and viewed to crm, viewed to statuses
	require.Equal(t, "reconcile", byKey(statuses.Requests())[secondViewed][0].Header.Get("X-Wamm-Relay-Source"))
	require.NotContains(t, statuses.Delivered(), string(event.StateKey(second.ID, "delivered")),
		"an overtaken status never shows in polling")
}

// TestReconcileAfterRestartFillsDowntime: messages whose webhooks were lost
// while the relay was down are found by the first pass after a restart (the
// store is not empty, so no baseline swallows them), and nothing delivered
// before the restart is delivered again.
func TestReconcileAfterRestartFillsDowntime(t *testing.T) {
	tgt := testutil.NewTarget(t)
	env := startRcEnv(t, rcOptions{targets: []config.Target{target("crm", tgt.URL, "msg", "msg_state")}})
	env.waitFirstPass(t)
	before := env.account.Receive(rcChats[0], "before the restart")
	beforeKey := string(event.MsgKey(before.ID))
	tgt.WaitDelivered(t, waitLong, beforeKey)
	waitAllDelivered(t, env.relay, 1)

	require.NoError(t, env.relay.stop())
	require.NoError(t, env.relay.app.Close())
	// While the relay is down WAMM cannot deliver: with no webhook URL the
	// fake never sends these, like WAMM giving up after its retries.
	env.account.SetWebhookURL("")
	var downKeys []string
	for i := range 5 {
		m := env.account.Receive(rcChats[i%3], fmt.Sprintf("while down %d", i))
		downKeys = append(downKeys, string(event.MsgKey(m.ID)))
	}

	env.relay = startRelay(t, env.cfg)
	env.account.SetWebhookURL(env.relay.base + env.cfg.Server.WebhookPath)
	after := env.account.Receive(rcChats[1], "after the restart")
	afterKey := string(event.MsgKey(after.ID))
	tgt.WaitDelivered(t, waitLong, append([]string{afterKey}, downKeys...)...)
	waitAllDelivered(t, env.relay, 2+len(downKeys))

	got := requireOncePerKey(t, tgt, append([]string{beforeKey, afterKey}, downKeys...))
	for _, k := range downKeys {
		require.Equal(t, "reconcile", got[k].Header.Get("X-Wamm-Relay-Source"), k)
	}
	require.Equal(t, "webhook", got[afterKey].Header.Get("X-Wamm-Relay-Source"))
	require.Zero(t, env.requireMetric(t, "wamm_relay_reconcile_baseline_total"), "a store with events takes no baseline")
}
