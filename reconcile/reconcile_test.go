package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/wamm"
)

func TestNewRejectsBadOptions(t *testing.T) {
	f := newFixture(t, false)
	tests := []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"no poller", func(o *Options) { o.Poller = nil }, "Poller"},
		{"no store", func(o *Options) { o.Store = nil }, "Store"},
		{"no ingester", func(o *Options) { o.Ingester = nil }, "Ingester"},
		{"no seen without backfill", func(o *Options) { o.Seen = nil }, "Seen"},
		{"zero interval", func(o *Options) { o.Interval = 0 }, "Interval"},
		{"negative grace", func(o *Options) { o.Grace = -time.Second }, "Grace"},
		{"backoff below interval", func(o *Options) { o.BackoffMax = time.Second }, "BackoffMax"},
		{"page size above API max", func(o *Options) { o.PageSize = 101 }, "PageSize"},
		{"negative chats bound", func(o *Options) { o.MaxChatsPerPass = -1 }, "MaxChatsPerPass"},
		{"negative candidates bound", func(o *Options) { o.MaxCandidates = -1 }, "MaxCandidates"},
		{"negative max age", func(o *Options) { o.MaxAge = -time.Hour }, "MaxAge"},
		{"no logger", func(o *Options) { o.Logger = nil }, "Logger"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := f.opts
			tc.mutate(&opts)
			_, err := New(opts)
			require.ErrorContains(t, err, tc.want)
		})
	}

	t.Run("seen optional with backfill", func(t *testing.T) {
		opts := f.opts
		opts.Seen, opts.BackfillOnStart = nil, true
		_, err := New(opts)
		require.NoError(t, err)
	})
	t.Run("channels share one registry", func(t *testing.T) {
		opts := f.opts
		reg := prometheus.NewRegistry()
		opts.Registerer = reg
		_, err := New(opts)
		require.NoError(t, err)
		opts.Channel = "sales"
		_, err = New(opts)
		require.NoError(t, err)
		n, err := testutil.GatherAndCount(reg, "wamm_relay_reconcile_polls_total")
		require.NoError(t, err)
		require.Equal(t, 6, n, "three outcomes for each of two channels")
	})
	t.Run("reserved channel name", func(t *testing.T) {
		opts := f.opts
		opts.Channel = "msg"
		_, err := New(opts)
		require.ErrorContains(t, err, "Channel")
	})
}

// decodeBody parses a target-bound body keeping numbers as json.Number.
func decodeBody(t *testing.T, body []byte) (string, map[string]any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var env struct {
		Tip     string         `json:"tip"`
		MsgData map[string]any `json:"msg_data"`
	}
	require.NoError(t, dec.Decode(&env))
	return env.Tip, env.MsgData
}

func TestMissedMessageIngestedAfterGrace(t *testing.T) {
	tests := []struct {
		name string
		// settle runs after the grace period: a promote step, or the next pass.
		settle func(t *testing.T, r *Reconciler) Report
	}{
		{"promote step at the grace deadline", promote},
		{"next pass after the grace period", once},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			f.acct.add(apiMsg("1234567", 0, "79001234567", "received"))
			r := f.new(t)

			rep := once(t, r)
			require.Equal(t, 1, rep.Polled)
			require.Equal(t, 1, rep.InGrace)
			require.Equal(t, t0.Add(20*time.Second), rep.NextPromote)
			require.Empty(t, f.store.deliveredKeys(), "nothing is delivered within the grace period")

			f.clock.Advance(20*time.Second - time.Millisecond)
			rep = promote(t, r)
			require.Zero(t, rep.EnqueuedMsgs)
			require.Equal(t, 1, rep.InGrace)

			f.clock.Advance(time.Millisecond)
			rep = tc.settle(t, r)
			require.Equal(t, 1, rep.EnqueuedMsgs)
			require.Zero(t, rep.InGrace)
			require.True(t, rep.NextPromote.IsZero())

			evs := f.store.deliveredEvents()
			require.Len(t, evs, 1)
			ev := evs[0]
			require.Equal(t, event.Key("msg:1234567"), ev.Key)
			require.Equal(t, event.KindMsg, ev.Kind)
			require.Equal(t, event.SourceReconcile, ev.Source)
			require.Equal(t, "received", ev.State)

			tip, data := decodeBody(t, ev.Body)
			require.Equal(t, "msg", tip)
			require.Equal(t, json.Number("1234567"), data["msg_id"], "msg_id is a JSON number, as in the webhook")
			require.Equal(t, json.Number("0"), data["from_me"], "from_me is a JSON number, as in the webhook")
			require.Equal(t, "79001234567", data["phone"])
			require.Equal(t, "Hello!", data["msg_text"])
			require.Equal(t, "2026-03-01 11:59:00", data["date_ins"])
			require.Equal(t, "2026-03-01 11:59:30", data["date_upd"])
			for _, k := range []string{"qoute_msg_id", "from_api", "phone_acc", "senderId", "senderName", "msg_link"} {
				v, ok := data[k]
				require.True(t, ok, "key %s present", k)
				require.Nil(t, v, "key %s is null", k)
			}

			// Settled: later passes and promote steps do nothing more.
			f.clock.Advance(time.Minute)
			rep = once(t, r)
			require.Zero(t, rep.EnqueuedMsgs)
			require.Equal(t, 1, rep.Known)
			require.Len(t, f.store.deliveredKeys(), 1)
		})
	}
}

func TestPassPollsBothDirectionsAndQueriesTheStoreOnce(t *testing.T) {
	f := newFixture(t, false)
	f.acct.add(apiMsg("10", 0, "79001234567", "received"), apiMsg("11", 1, "79001234567", "sent"))
	r := f.new(t)
	rep := once(t, r)
	require.Equal(t, 2, rep.Polled)
	require.Equal(t, []string{"from_me=0 col=100", "from_me=1 col=100"}, f.acct.lastArgs)
	require.Equal(t, [][]string{{"10", "11"}}, f.store.knownIDs)
	require.Empty(t, f.acct.chatCalls)
}

func TestWebhookWithinGraceWins(t *testing.T) {
	msg := apiMsg("500", 1, "79001234567", "sent")
	tests := []struct {
		name string
		// arrange makes the webhook arrive during the grace period.
		arrange func(f *fixture)
		want    func(t *testing.T, rep Report)
	}{
		{
			name:    "webhook during grace: promote re-checks the store and leaves it",
			arrange: func(f *fixture) { f.store.webhook(wamm.MessageEvent(msg, t0)) },
			want: func(t *testing.T, rep Report) {
				require.Equal(t, 1, rep.ArrivedInGrace)
				require.Zero(t, rep.EnqueuedMsgs)
				require.Zero(t, rep.Duplicates)
			},
		},
		{
			name: "webhook lands between the re-check and the ingest: the dedup path reports a duplicate",
			arrange: func(f *fixture) {
				f.store.beforeIngest = func(ev event.Event) { f.store.webhook(ev) }
			},
			want: func(t *testing.T, rep Report) {
				require.Equal(t, 1, rep.Duplicates)
				require.Zero(t, rep.EnqueuedMsgs)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			f.acct.add(msg)
			r := f.new(t)
			require.Equal(t, 1, once(t, r).InGrace)

			tc.arrange(f)
			f.clock.Advance(20 * time.Second)
			rep := promote(t, r)
			tc.want(t, rep)
			require.Empty(t, f.store.deliveredKeys())
			require.Zero(t, rep.InGrace)
			require.Equal(t, event.SourceWebhook, f.store.events["msg:500"].Source, "delivered once, as the webhook")
		})
	}
}

func TestStatusGaps(t *testing.T) {
	const id = "700"
	tests := []struct {
		name string
		// relayed are the states the store already has for the message (the
		// first one arrived as the msg webhook).
		relayed []string
		// polled are the states successive passes see, 10s apart; grace ends
		// 20s after the first sighting of each state.
		polled    []string
		wantKeys  []event.Key
		wantKnown int
	}{
		{"new state after the msg webhook", []string{"sent"}, []string{"delivered"}, []event.Key{"state:700:delivered"}, 0},
		{"state already relayed by msg_state webhook", []string{"sent", "delivered"}, []string{"delivered"}, nil, 1},
		{"state the msg webhook carried", []string{"sent"}, []string{"sent"}, nil, 1},
		{"state with a space is percent-encoded in the key", []string{"sending"}, []string{"not sent"}, []event.Key{"state:700:not%20sent"}, 0},
		{"overtaken state is not relayed out of order", []string{"sent"}, []string{"delivered", "viewed"}, []event.Key{"state:700:viewed"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			m := apiMsg(id, 1, "79001234567", tc.relayed[0])
			f.store.webhook(wamm.MessageEvent(m, t0))
			for _, s := range tc.relayed[1:] {
				f.store.webhook(wamm.StateEvent(apiMsg(id, 1, "79001234567", s), t0))
			}
			f.acct.add(m)
			r := f.new(t)

			var rep Report
			for i, s := range tc.polled {
				if i > 0 {
					f.clock.Advance(10 * time.Second)
				}
				f.acct.setState(id, s)
				rep = once(t, r)
			}
			require.Equal(t, tc.wantKnown, rep.Known)
			f.clock.Advance(20 * time.Second)
			rep = promote(t, r)
			require.Equal(t, len(tc.wantKeys), rep.EnqueuedStates)
			require.Zero(t, rep.EnqueuedMsgs)
			require.Equal(t, tc.wantKeys, f.store.deliveredKeys())

			for _, ev := range f.store.deliveredEvents() {
				require.Equal(t, event.KindMsgState, ev.Kind)
				tip, data := decodeBody(t, ev.Body)
				require.Equal(t, "msg_state", tip)
				require.Equal(t, json.Number(id), data["msg_id"])
				require.Equal(t, json.Number("1"), data["from_me"])
				require.Equal(t, "79001234567", data["phone"])
				require.Equal(t, tc.polled[len(tc.polled)-1], data["state"])
				require.Equal(t, "2026-03-01 11:59:30", data["date_upd"])
			}
		})
	}
}

func TestUnknownMessageGetsOnlyItsMsgEvent(t *testing.T) {
	f := newFixture(t, false)
	f.acct.add(apiMsg("800", 1, "79001234567", "viewed"))
	r := f.new(t)
	once(t, r)
	f.clock.Advance(20 * time.Second)
	rep := once(t, r)
	require.Equal(t, 1, rep.EnqueuedMsgs)
	require.Zero(t, rep.EnqueuedStates)
	require.Equal(t, []event.Key{"msg:800"}, f.store.deliveredKeys())

	// The state travels inside the msg event, so the next pass sees it relayed.
	f.clock.Advance(30 * time.Second)
	rep = once(t, r)
	require.Zero(t, rep.InGrace)
	require.Len(t, f.store.deliveredKeys(), 1)
}

func TestFirstRun(t *testing.T) {
	tests := []struct {
		name         string
		backfill     bool
		wantBaseline int
		wantSeen     int
		wantEnqueued int
	}{
		{"empty store: baseline recorded as seen, nothing delivered", false, 150, 150, 0},
		{"empty store with backfill: delivered after the grace period", true, 0, 0, 150},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, true)
			f.opts.BackfillOnStart = tc.backfill
			reg := prometheus.NewRegistry()
			f.opts.Registerer = reg
			// A full incoming page: with backfill it must not count as an overflow.
			f.acct.add(incoming(1000, 100, "79001111111", "79002222222")...)
			for i := range 50 {
				f.acct.add(apiMsg(strconv.Itoa(2000+i), 1, "79001111111", "delivered"))
			}
			r := f.new(t)

			// Both wait out the grace period: a webhook on its way wins.
			rep := once(t, r)
			require.Equal(t, 150, rep.Polled)
			require.Equal(t, 150, rep.InGrace)
			require.Zero(t, rep.Baseline)
			require.False(t, rep.Overflow)
			require.Zero(t, rep.ChatsBackfilled)
			require.Empty(t, f.store.seenOnly)
			require.Empty(t, f.store.deliveredKeys())

			f.clock.Advance(20 * time.Second)
			rep = promote(t, r)
			require.Equal(t, tc.wantBaseline, rep.Baseline)
			require.Len(t, f.store.seenOnly, tc.wantSeen)
			require.InDelta(t, float64(tc.wantBaseline), testutil.ToFloat64(r.metrics.baseline), 0)
			require.Len(t, f.store.deliveredKeys(), tc.wantEnqueued)

			// Afterwards a new message is a gap like any other.
			f.acct.add(apiMsg("3000", 0, "79003333333", "received"))
			f.clock.Advance(10 * time.Second)
			rep = once(t, r)
			require.Equal(t, 1, rep.InGrace)
			require.Zero(t, rep.Baseline)
			f.clock.Advance(20 * time.Second)
			promote(t, r)
			require.Len(t, f.store.deliveredKeys(), tc.wantEnqueued+1)
			require.Equal(t, event.Key("msg:3000"), f.store.deliveredKeys()[tc.wantEnqueued])
		})
	}
}

func TestFirstRunBaselineSurvivesStoreFailure(t *testing.T) {
	f := newFixture(t, true)
	f.acct.add(incoming(10, 3, "79001111111")...)
	failing := true
	f.store.ingestErr = func(ev event.Event) error {
		if failing && ev.Key == "msg:11" {
			return errors.New("disk full")
		}
		return nil
	}
	r := f.new(t)
	once(t, r)
	f.clock.Advance(20 * time.Second)
	_, err := r.Promote(context.Background())
	require.ErrorContains(t, err, "record baseline message: disk full")
	require.Len(t, f.store.seenOnly, 2)

	// The store now has events, but the baseline is finished, not delivered.
	failing = false
	rep := once(t, r)
	require.Equal(t, 1, rep.Baseline, "the one not yet recorded")
	f.clock.Advance(time.Hour)
	once(t, r)
	require.Empty(t, f.store.deliveredKeys())
	require.Len(t, f.store.seenOnly, 3)
}

func TestFirstRunWebhookDuringBaselineWins(t *testing.T) {
	f := newFixture(t, true)
	f.acct.add(incoming(10, 3, "79001111111")...)
	r := f.new(t)
	once(t, r)
	// The webhook of a message WAMM had just before the first poll lands
	// during the baseline's grace: it must stay a delivery, not be recorded
	// as already seen.
	dup, err := f.store.ingest(event.Event{Key: "msg:12", Kind: event.KindMsg, MsgID: "12"}, true)
	require.NoError(t, err)
	require.False(t, dup)
	f.clock.Advance(20 * time.Second)
	rep := promote(t, r)
	require.Equal(t, 2, rep.Baseline)
	require.Equal(t, 1, rep.ArrivedInGrace)
	require.Equal(t, []event.Key{"msg:12"}, f.store.deliveredKeys())
}

func TestFirstRunDecidedBeforePolling(t *testing.T) {
	f := newFixture(t, true)
	f.acct.add(incoming(10, 3, "79001111111")...)
	// A webhook commits while the first poll runs: the run is still a first
	// run, so the polled history is not delivered.
	f.acct.onPoll = func() { _, _ = f.store.ingest(event.Event{Key: "raw:ping", Kind: event.KindRaw}, true) }
	r := f.new(t)
	once(t, r)
	f.clock.Advance(20 * time.Second)
	rep := promote(t, r)
	require.Equal(t, 3, rep.Baseline)
	require.Equal(t, []event.Key{"raw:ping"}, f.store.deliveredKeys())
}

func TestNotLeader(t *testing.T) {
	f := newFixture(t, false)
	reg := prometheus.NewRegistry()
	f.opts.Registerer = reg
	leader := true
	f.store.holdLeader = func() (bool, error) { return leader, nil }
	f.acct.add(apiMsg("900", 0, "79001234567", "received"))
	r := f.new(t)

	require.Equal(t, 1, once(t, r).InGrace)
	require.Equal(t, 2, f.acct.polls())

	leader = false
	rep := once(t, r)
	require.True(t, rep.NotLeader)
	require.Equal(t, 2, f.acct.polls(), "nothing polled without the lock")
	require.Equal(t, 30*time.Second, rep.Next)
	require.Contains(t, rep.String(), "another instance holds the reconcile lock")

	f.clock.Advance(time.Minute)
	rep = promote(t, r)
	require.True(t, rep.NotLeader)
	require.Empty(t, f.store.deliveredKeys(), "nothing is promoted without the lock")
	require.InDelta(t, 1, testutil.ToFloat64(r.metrics.polls.WithLabelValues(outcomeNotLeader)), 0)
	require.InDelta(t, 1, testutil.ToFloat64(r.metrics.polls.WithLabelValues(outcomeOK)), 0)
}

// TestCandidatesWaitOutALostLock: the lock's session died with the database
// for a moment. The message seen before is out of the window by the time
// the lock is back; the candidate waited and is delivered, and what another
// holder ingested meanwhile is not delivered twice.
func TestCandidatesWaitOutALostLock(t *testing.T) {
	f := newFixture(t, false)
	leader := true
	f.store.holdLeader = func() (bool, error) { return leader, nil }
	f.acct.add(apiMsg("901", 0, "79001234567", "received"), apiMsg("902", 0, "79001234567", "received"))
	r := f.new(t)
	once(t, r)
	leader = false
	f.clock.Advance(20 * time.Second)
	rep := promote(t, r)
	require.True(t, rep.NotLeader)
	require.Empty(t, f.store.deliveredKeys(), "nothing is promoted without the lock")
	_, due := r.promoteAt()
	require.False(t, due, "Run waits for the next pass instead of promoting again at once (it would spin)")

	// Both left the window; another holder got 902's webhook meanwhile.
	f.acct.msgs = nil
	f.store.webhook(wamm.MessageEvent(apiMsg("902", 0, "79001234567", "received"), t0))
	leader = true
	rep = once(t, r)
	require.False(t, rep.NotLeader)
	require.Equal(t, []event.Key{"msg:901"}, f.store.deliveredKeys())
	require.Equal(t, 1, rep.ArrivedInGrace, "902 became known meanwhile")
}

func TestNoMessagesIsEmpty(t *testing.T) {
	tests := []struct {
		name       string
		in, out    error
		wantPolled int
	}{
		{"both directions empty", wamm.ErrNoMessages, wamm.ErrNoMessages, 0},
		{"no incoming", wamm.ErrNoMessages, nil, 1},
		{"no outgoing", nil, wamm.ErrNoMessages, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			f.opts.Poller = &fakePoller{lastMessages: func(_ context.Context, fromMe, _ int) ([]wamm.Message, error) {
				err := tc.in
				if fromMe == 1 {
					err = tc.out
				}
				if err != nil {
					return nil, fmt.Errorf("msg_get_last: %w", err)
				}
				return []wamm.Message{apiMsg(strconv.Itoa(40+fromMe), fromMe, "79001234567", "received")}, nil
			}}
			r := f.new(t)
			rep := once(t, r)
			require.Equal(t, tc.wantPolled, rep.Polled)
			require.Equal(t, 30*time.Second, rep.Next)
		})
	}
}

func TestFailureBackoffAndRecovery(t *testing.T) {
	f := newFixture(t, false)
	f.opts.Registerer = prometheus.NewRegistry()
	var pollErr error
	f.opts.Poller = &fakePoller{lastMessages: func(context.Context, int, int) ([]wamm.Message, error) {
		if pollErr != nil {
			return nil, pollErr
		}
		return []wamm.Message{apiMsg("1", 0, "79000000000", "received")}, nil
	}}
	r := f.new(t)

	steps := []struct {
		err      error
		wantNext time.Duration
	}{
		{wamm.ErrTokenFail, 30 * time.Second},
		{wamm.ErrTokenFail, time.Minute},
		{wamm.ErrNotAuthorized, 2 * time.Minute},
		{wamm.ErrTokenFail, 4 * time.Minute},
		{&wamm.HTTPError{Status: 502}, 5 * time.Minute},
		{wamm.ErrTokenFail, 5 * time.Minute},
		{nil, 30 * time.Second}, // recovery resets the interval
		{wamm.ErrTokenFail, 30 * time.Second},
	}
	for i, s := range steps {
		pollErr = s.err
		rep, err := r.ReconcileOnce(context.Background())
		if s.err != nil {
			require.ErrorIs(t, err, s.err, "step %d", i)
			require.ErrorContains(t, err, "poll incoming messages", "step %d", i)
		} else {
			require.NoError(t, err)
		}
		require.Equal(t, s.wantNext, rep.Next, "step %d", i)
		f.clock.Advance(rep.Next)
	}

	require.InDelta(t, 5, testutil.ToFloat64(r.metrics.apiErrors.WithLabelValues("token_fail")), 0)
	require.InDelta(t, 1, testutil.ToFloat64(r.metrics.apiErrors.WithLabelValues("not_authorized")), 0)
	require.InDelta(t, 1, testutil.ToFloat64(r.metrics.apiErrors.WithLabelValues("http_502")), 0)
	require.InDelta(t, 7, testutil.ToFloat64(r.metrics.polls.WithLabelValues(outcomeError)), 0)
	require.InDelta(t, float64(t0.Add(17*time.Minute+30*time.Second).Unix()), testutil.ToFloat64(r.metrics.lastSuccess), 0)

	var failed []string
	for _, e := range f.logs.AllEntries() {
		if e.Level == logrus.WarnLevel {
			failed = append(failed, fmt.Sprint(e.Data["reason"]))
		}
	}
	require.Equal(t, []string{"token_fail", "not_authorized", "http_502", "token_fail"}, failed,
		"each reason once per failure streak")
	require.Equal(t, []string{"reconcile: recovered after 6 failed polls"}, filter(f.logsAt(logrus.InfoLevel), "recovered"))
}

func filter(lines []string, sub string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

func TestStoreFailures(t *testing.T) {
	tests := []struct {
		name    string
		arrange func(s *memStore)
		wantErr string
	}{
		{"leader lock", func(s *memStore) {
			s.holdLeader = func() (bool, error) { return false, errors.New("connection reset") }
		}, "hold leader lock: connection reset"},
		{"known lookup", func(s *memStore) {
			s.knownErr = func() error { return errors.New("database is locked") }
		}, "look up known messages: database is locked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			f.acct.add(apiMsg("50", 0, "79001234567", "received"))
			tc.arrange(f.store)
			r := f.new(t)
			for _, want := range []time.Duration{30 * time.Second, time.Minute} {
				rep, err := r.ReconcileOnce(context.Background())
				require.ErrorContains(t, err, tc.wantErr)
				require.Equal(t, want, rep.Next)
			}
			require.Len(t, f.logsAt(logrus.WarnLevel), 1, "logged once per streak")
			require.Equal(t, reasonStore, f.logs.LastEntry().Data["reason"])
		})
	}
}

func TestIngestFailureKeepsCandidate(t *testing.T) {
	f := newFixture(t, false)
	f.acct.add(apiMsg("60", 0, "79001234567", "received"))
	fail := true
	f.store.ingestErr = func(event.Event) error {
		if fail {
			return errors.New("disk full")
		}
		return nil
	}
	r := f.new(t)
	once(t, r)
	f.clock.Advance(20 * time.Second)

	_, err := r.Promote(context.Background())
	require.ErrorContains(t, err, "ingest missed event: disk full")
	_, ok := r.promoteAt()
	require.False(t, ok, "no promote retries until the next pass")

	fail = false
	f.clock.Advance(10 * time.Second)
	rep := once(t, r)
	require.Equal(t, 1, rep.EnqueuedMsgs)
	require.Equal(t, []event.Key{"msg:60"}, f.store.deliveredKeys())
}

func TestCandidateOutOfWindowStillSettled(t *testing.T) {
	f := newFixture(t, false)
	f.acct.add(apiMsg("70", 0, "79001234567", "received"))
	r := f.new(t)
	once(t, r)
	f.acct.msgs = nil // the message left the window (or WAMM stopped listing it)
	f.clock.Advance(20 * time.Second)
	rep := once(t, r)
	require.Zero(t, rep.Polled)
	require.Equal(t, 1, rep.EnqueuedMsgs)
	require.Equal(t, []event.Key{"msg:70"}, f.store.deliveredKeys())
}

func TestOverflowRecoversChats(t *testing.T) {
	f := newFixture(t, false)
	reg := prometheus.NewRegistry()
	f.opts.Registerer = reg
	phones := make([]string, 10)
	for i := range phones {
		phones[i] = fmt.Sprintf("7900100000%d", i)
	}
	// 300 messages arrived while no webhook came through: 150 each way, over
	// 10 chats of 30; each page shows only the newest 100 of its direction.
	for i := range 300 {
		f.acct.add(apiMsg(strconv.Itoa(10000+i), i%2, phones[i%10], "received"))
	}
	r := f.new(t)

	rep := once(t, r)
	require.True(t, rep.Overflow)
	require.Equal(t, 200, rep.Polled)
	require.Equal(t, 11, rep.ChatsBackfilled, "the 10 chats of the pages, then the one the store knows")
	require.Equal(t, 300, rep.Recovered)
	require.Zero(t, rep.ChatsPending)
	require.Equal(t, 300, rep.InGrace)
	require.Zero(t, rep.Next, "poll again at once")
	require.Equal(t, 15*time.Second, rep.Interval, "interval halved")
	require.Len(t, f.acct.chatCalls, 11)
	require.Equal(t, "79000000000", f.acct.chatCalls[10])
	// Every chat it can name was read back to known messages; what the
	// window skipped in chats it cannot name is recorded, once a direction.
	gaps := f.store.openGaps()
	require.Len(t, gaps, 2)
	for _, g := range gaps {
		require.Equal(t, store.GapWindow, g.Reason)
		require.Equal(t, "1", g.AfterMsgID, "the newest message the store knew")
	}
	require.Equal(t, 2, rep.NewGaps)
	require.InDelta(t, 2, testutil.ToFloat64(r.metrics.overflows), 0, "both pages overflowed")
	require.Len(t, filter(f.logsAt(logrus.WarnLevel), "overlaps nothing known"), 2)

	// The immediate re-poll overlaps the candidates; the interval grows back
	// only once a pass at the shorter one shows room for twice as much.
	rep = once(t, r)
	require.False(t, rep.Overflow)
	require.Equal(t, 15*time.Second, rep.Interval)
	require.Equal(t, 15*time.Second, rep.Next)
	require.Zero(t, rep.ChatsBackfilled)
	require.Empty(t, f.store.deliveredKeys())

	f.clock.Advance(20 * time.Second)
	rep = promote(t, r)
	require.Equal(t, 300, rep.EnqueuedMsgs)
	require.Zero(t, rep.InGrace)
	keys := map[event.Key]bool{}
	for _, k := range f.store.deliveredKeys() {
		keys[k] = true
	}
	for i := range 300 {
		require.True(t, keys[event.MsgKey(strconv.Itoa(10000+i))], "message %d", 10000+i)
	}
	require.InDelta(t, 300, testutil.ToFloat64(r.metrics.gapsFilled.WithLabelValues("msg")), 0)
}

func TestOverflowStreakHalvesToFloorAndBoundsChats(t *testing.T) {
	f := newFixture(t, false)
	f.opts.MaxChatsPerPass = 50
	next := 100000
	var chatCalls int
	f.opts.Poller = &fakePoller{
		// A flood: every call returns a full page of new messages, each in a new chat.
		lastMessages: func(_ context.Context, fromMe, col int) ([]wamm.Message, error) {
			var ms []wamm.Message
			for range col {
				ms = append(ms, apiMsg(strconv.Itoa(next), fromMe, fmt.Sprintf("7%010d", next), "received"))
				next++
			}
			return ms, nil
		},
		chatMessages: func(context.Context, string, int) ([]wamm.Message, error) {
			chatCalls++
			return nil, wamm.ErrNoMessages
		},
	}
	r := f.new(t)

	wants := []struct {
		interval, next time.Duration
	}{
		{15 * time.Second, 0},
		{7500 * time.Millisecond, 7500 * time.Millisecond},
		{3750 * time.Millisecond, 3750 * time.Millisecond},
		{1875 * time.Millisecond, 1875 * time.Millisecond},
		{time.Second, time.Second},
		{time.Second, time.Second},
	}
	for i, w := range wants {
		rep := once(t, r)
		require.True(t, rep.Overflow, "pass %d", i)
		require.Equal(t, w.interval, rep.Interval, "pass %d", i)
		require.Equal(t, w.next, rep.Next, "pass %d", i)
		require.Equal(t, 50, rep.ChatsBackfilled, "pass %d: bounded per pass", i)
		require.Positive(t, rep.ChatsPending, "pass %d", i)
	}
	require.Equal(t, 300, chatCalls)
	require.NotEmpty(t, filter(f.logsAt(logrus.WarnLevel), "chat recovery incomplete"))
}

func TestChatRecoveryFailureKeepsChatsQueued(t *testing.T) {
	f := newFixture(t, false)
	for i := range 100 {
		f.acct.add(apiMsg(strconv.Itoa(20000+i), 0, fmt.Sprintf("790020000%02d", i%4), "received"))
	}
	base := f.acct.poller()
	failChats := true
	f.opts.Poller = &fakePoller{
		lastMessages: base.lastMessages,
		chatMessages: func(ctx context.Context, phone string, col int) ([]wamm.Message, error) {
			if failChats {
				return nil, &wamm.HTTPError{Status: 503}
			}
			return base.chatMessages(ctx, phone, col)
		},
	}
	r := f.new(t)
	rep, err := r.ReconcileOnce(context.Background())
	require.ErrorContains(t, err, "read chat messages")
	require.True(t, rep.Overflow)
	require.Equal(t, 5, rep.ChatsPending, "4 chats of the page and the one the store knows")
	require.Equal(t, 100, rep.InGrace, "the polled page is still tracked")

	failChats = false
	f.clock.Advance(rep.Next)
	rep = once(t, r)
	require.False(t, rep.Overflow)
	require.Equal(t, 5, rep.ChatsBackfilled, "queued chats are read once the API is back")
	require.Zero(t, rep.ChatsPending)
}

func TestCandidatesAreBounded(t *testing.T) {
	f := newFixture(t, false)
	f.opts.MaxCandidates = 5
	f.acct.add(incoming(30000, 8, "79001234567")...)
	r := f.new(t)
	rep := once(t, r)
	require.Equal(t, 5, rep.InGrace)
	require.Len(t, filter(f.logsAt(logrus.WarnLevel), "forgot"), 1)
}

func TestLongUnsettledCandidatesAreForgotten(t *testing.T) {
	f := newFixture(t, false)
	f.acct.add(apiMsg("31000", 0, "79001234567", "received"))
	f.store.ingestErr = func(event.Event) error { return errors.New("disk full") }
	r := f.new(t)
	once(t, r)
	f.acct.msgs = nil // it left the window while the store kept failing

	f.clock.Advance(time.Hour)
	_, err := r.ReconcileOnce(context.Background())
	require.ErrorContains(t, err, "disk full")

	// Last seen over a day ago: forgotten, so memory stays bounded.
	f.clock.Advance(forgetAfter)
	rep := once(t, r)
	require.Zero(t, rep.InGrace)
	require.True(t, rep.NextPromote.IsZero())
	require.Len(t, filter(f.logsAt(logrus.WarnLevel), "forgot"), 1)
	f.store.ingestErr = nil
	once(t, r)
	require.Empty(t, f.store.deliveredKeys())
}

func TestMaxAgeIgnoresOldMessages(t *testing.T) {
	f := newFixture(t, false)
	f.opts.MaxAge = 30 * 24 * time.Hour
	old := apiMsg("32000", 0, "79001234567", "received")
	old.DateIns = "2025-12-01 10:00:00"
	f.acct.add(old, apiMsg("32001", 0, "79001234567", "received"))
	r := f.new(t)
	rep := once(t, r)
	require.Equal(t, 1, rep.Ignored)
	require.Equal(t, 1, rep.InGrace)
}

func TestReportString(t *testing.T) {
	rep := Report{Polled: 200, Known: 190, InGrace: 5, EnqueuedMsgs: 3, EnqueuedStates: 2, Overflow: true, ChatsBackfilled: 4, Recovered: 40}
	require.Equal(t, "polled=200 known=190 in_grace=5 arrived_in_grace=0 enqueued_msgs=3 enqueued_states=2 duplicates=0 overflow=true chats_backfilled=4 recovered=40 chats_pending=0", rep.String())
}

func TestRunDeliversMissedMessageWithinIntervalPlusGrace(t *testing.T) {
	f := newFixture(t, false)
	f.opts.Now = nil // real clock
	f.opts.Interval = 200 * time.Millisecond
	f.opts.Grace = 300 * time.Millisecond
	f.opts.BackoffMax = time.Second
	r := f.new(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, func() bool { return f.acct.polls() >= 2 }, 5*time.Second, 5*time.Millisecond)

	f.acct.add(apiMsg("40000", 0, "79001234567", "received"))
	added := time.Now()
	limit := f.opts.Interval + f.opts.Grace + time.Second
	require.Eventually(t, func() bool { return len(f.store.deliveredKeys()) == 1 }, limit, 5*time.Millisecond)
	took := time.Since(added)
	require.Less(t, took, limit)
	require.GreaterOrEqual(t, took, f.opts.Grace, "not before the grace period")
	require.Equal(t, []event.Key{"msg:40000"}, f.store.deliveredKeys())

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestReconcileAndWait(t *testing.T) {
	f := newFixture(t, false)
	f.opts.Now = nil
	f.opts.Grace = 20 * time.Millisecond
	f.acct.add(apiMsg("41000", 0, "79001234567", "received"), apiMsg("41001", 1, "79001234567", "sent"))
	f.store.webhook(wamm.MessageEvent(apiMsg("41001", 1, "79001234567", "sent"), t0))
	r := f.new(t)
	rep, err := r.ReconcileAndWait(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, rep.EnqueuedMsgs)
	require.Zero(t, rep.InGrace)
	require.Equal(t, []event.Key{"msg:41000"}, f.store.deliveredKeys())
}

// TestHoleBelowKnownMessagesIsRecoveredOrNamed: while the store was down
// WAMM gave up on the webhooks of 110-114 (chat A) and went on; once the store
// was back the webhooks of 150 newer messages (chat B) arrived before the next
// poll, so the window is all known messages. That proves nothing about the
// messages older than the window: they are read from their chat when the
// relay knows the chat, and named as a gap when it cannot.
func TestHoleBelowKnownMessagesIsRecoveredOrNamed(t *testing.T) {
	const chatA, chatB = "79001110000", "79001110001"
	tests := []struct {
		name      string
		chatKnown bool // the store knows chat A from an earlier message
		restart   bool // the relay restarted in between: the marks come from the store
	}{
		{"chat known: read back and recovered", true, false},
		{"chat unknown: named as a window gap", false, false},
		{"after a restart, chat known: recovered", true, true},
		{"after a restart, chat unknown: named", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			webhook := func(ms ...wamm.Message) {
				f.acct.add(ms...)
				for _, m := range ms {
					f.store.webhook(wamm.MessageEvent(m, t0))
				}
			}
			if tc.chatKnown {
				webhook(apiMsg("99", 0, chatA, "received"))
			}
			webhook(incoming(100, 10, chatB)...)
			r := f.new(t)
			rep := once(t, r)
			require.False(t, rep.Overflow)

			f.acct.add(incoming(110, 5, chatA)...) // their webhooks never came
			webhook(incoming(115, 150, chatB)...)
			f.clock.Advance(30 * time.Second)
			if tc.restart {
				b, _, _ := f.store.Baseline(context.Background(), "default")
				require.Equal(t, "109", b.PolledIn, "the last poll's mark is durable")
				r = f.new(t)
			}
			rep = once(t, r)
			require.True(t, rep.Overflow, "a window of known messages that does not reach the last poll is an overflow")

			gaps := map[string]store.Gap{}
			for _, g := range f.store.openGaps() {
				gaps[g.Reason+"/"+g.Chat] = g
			}
			window := gaps[store.GapWindow+"/"]
			require.Equal(t, "109", window.AfterMsgID, "bounded by the last poll, not by the newest known message")
			require.Equal(t, "165", window.BeforeMsgID)
			chat := gaps[store.GapChat+"/"+chatB]
			require.Equal(t, "109", chat.AfterMsgID, "chat B's page does not reach back to the last poll")
			require.Equal(t, "165", chat.BeforeMsgID)

			f.clock.Advance(20 * time.Second)
			promote(t, r)
			got := f.store.deliveredKeys()
			if !tc.chatKnown {
				require.Empty(t, got, "nothing to find them by; the window gap names the range")
				require.NotContains(t, gaps, store.GapChat+"/"+chatA)
				return
			}
			require.ElementsMatch(t, []event.Key{"msg:110", "msg:111", "msg:112", "msg:113", "msg:114"}, got,
				"chat A's page reaches back to the last poll: the hole is recovered")
			require.NotContains(t, gaps, store.GapChat+"/"+chatA, "chat A lost nothing")
		})
	}
}

// TestBusyChannelSettlesOnAShorterInterval: 5 messages a second, every
// webhook arriving, is more than a page per 30 s interval. The first pass
// that does not reach back overflows once; the interval then stays short
// enough to reach back, instead of growing back and overflowing again.
func TestBusyChannelSettlesOnAShorterInterval(t *testing.T) {
	f := newFixture(t, false)
	chats := []string{"7900000001", "7900000002", "7900000003"}
	next := 100
	arrive := func(n int) {
		ms := incoming(next, n, chats...)
		next += n
		f.acct.add(ms...)
		for _, m := range ms {
			f.store.webhook(wamm.MessageEvent(m, t0))
		}
	}
	arrive(50)
	r := f.new(t)
	rep := once(t, r)
	overflows := 0
	for elapsed := time.Duration(0); elapsed < 10*time.Minute; {
		wait := max(rep.Next, time.Second)
		arrive(int(wait / (200 * time.Millisecond)))
		f.clock.Advance(wait)
		elapsed += wait
		rep = once(t, r)
		if rep.Overflow {
			overflows++
		}
	}
	require.LessOrEqual(t, overflows, 1, "a busy channel overflows once, then polls often enough")
	require.Less(t, rep.Interval, 30*time.Second)
	require.Empty(t, f.store.deliveredKeys(), "every webhook arrived: nothing to deliver")
}
