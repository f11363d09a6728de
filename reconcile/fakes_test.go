package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/wamm"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// memStore is an in-memory outbox: the reconciler's Store, its Ingester
// (Ingest: stored with deliveries) and, through seen(), its Seen ingester
// (stored without deliveries). The function fields inject failures.
type memStore struct {
	mu        sync.Mutex
	events    map[event.Key]event.Event
	delivered []event.Event // ingested with deliveries, in order
	seenOnly  []event.Event // recorded as seen, no deliveries
	knownIDs  [][]string    // the ids of each KnownMessages call
	baselines map[string]store.Baseline
	gaps      []store.Gap
	order     []event.Key // event keys in the order they were stored

	holdLeader   func() (bool, error)
	knownErr     func() error
	ingestErr    func(event.Event) error
	beforeIngest func(event.Event) // runs unlocked, e.g. to land a racing webhook
}

func newMemStore() *memStore {
	return &memStore{events: map[event.Key]event.Event{}, baselines: map[string]store.Baseline{}}
}

func (s *memStore) Baseline(_ context.Context, channel string) (store.Baseline, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.baselines[channel]
	return b, ok, nil
}

func (s *memStore) SaveBaseline(_ context.Context, b store.Baseline) (store.Baseline, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.baselines[b.Channel]; ok {
		return old, nil
	}
	s.baselines[b.Channel] = b
	return b, nil
}

func (s *memStore) SavePolled(_ context.Context, channel, in, out string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.baselines[channel]
	if !ok {
		return store.ErrNotFound
	}
	if in != "" {
		b.PolledIn = in
	}
	if out != "" {
		b.PolledOut = out
	}
	s.baselines[channel] = b
	return nil
}

func (s *memStore) RecordGap(_ context.Context, g store.Gap) (store.Gap, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, old := range s.gaps {
		if old.Open() && old.Channel == g.Channel && old.Chat == g.Chat && old.Reason == g.Reason && old.Direction == g.Direction {
			s.gaps[i] = store.WidenGap(old, g)
			return s.gaps[i], false, nil
		}
	}
	g.ID = int64(len(s.gaps) + 1)
	s.gaps = append(s.gaps, g)
	return g, true, nil
}

func (s *memStore) Gaps(_ context.Context, f store.GapFilter) ([]store.Gap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Gap
	for _, g := range s.gaps {
		if (f.Channel == "" || g.Channel == f.Channel) && (!f.Open || g.Open()) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *memStore) openGaps() []store.Gap {
	gaps, _ := s.Gaps(context.Background(), store.GapFilter{Open: true})
	return gaps
}

// Chats lists the chats of stored events, most recently stored first.
func (s *memStore) Chats(_ context.Context, _ string, chat string, limit int) ([]store.ChatInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.ChatInfo
	seen := map[string]bool{}
	for i := len(s.order) - 1; i >= 0; i-- {
		ev := s.events[s.order[i]]
		if ev.Chat == "" || seen[ev.Chat] || (chat != "" && ev.Chat != chat) {
			continue
		}
		seen[ev.Chat] = true
		out = append(out, store.ChatInfo{Chat: ev.Chat, LastMsgID: ev.MsgID})
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

func (s *memStore) HoldLeader(_ context.Context, name string) (bool, error) {
	if name != leaderLock && !strings.HasPrefix(name, leaderLock+":") {
		return false, fmt.Errorf("unexpected lock %q", name)
	}
	if s.holdLeader != nil {
		return s.holdLeader()
	}
	return true, nil
}

func (s *memStore) HasEvents(context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events) > 0, nil
}

func (s *memStore) KnownMessages(_ context.Context, _ string, ids []string) (map[string]store.KnownMessage, error) {
	if s.knownErr != nil {
		if err := s.knownErr(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knownIDs = append(s.knownIDs, slices.Clone(ids))
	out := map[string]store.KnownMessage{}
	for _, ev := range s.events {
		if ev.MsgID == "" || !slices.Contains(ids, ev.MsgID) {
			continue
		}
		k := out[ev.MsgID]
		if ev.Kind == event.KindMsg {
			k.MsgStored = true
		}
		if ev.State != "" {
			k.States = append(k.States, ev.State)
		}
		out[ev.MsgID] = k
	}
	return out, nil
}

func (s *memStore) Ingest(_ context.Context, ev event.Event) (bool, error) {
	return s.ingest(ev, true)
}

func (s *memStore) ingest(ev event.Event, deliver bool) (bool, error) {
	if s.beforeIngest != nil {
		s.beforeIngest(ev)
	}
	if s.ingestErr != nil {
		if err := s.ingestErr(ev); err != nil {
			return false, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.events[ev.Key]; dup {
		return true, nil
	}
	s.events[ev.Key] = ev
	s.order = append(s.order, ev.Key)
	if deliver {
		s.delivered = append(s.delivered, ev)
	} else {
		s.seenOnly = append(s.seenOnly, ev)
	}
	return false, nil
}

// webhook stores ev as if its webhook arrived.
func (s *memStore) webhook(ev event.Event) {
	ev.Source = event.SourceWebhook
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events[ev.Key] = ev
	s.order = append(s.order, ev.Key)
}

func (s *memStore) deliveredKeys() []event.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []event.Key
	for _, ev := range s.delivered {
		keys = append(keys, ev.Key)
	}
	return keys
}

func (s *memStore) deliveredEvents() []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.delivered)
}

// seenIngester is the memStore's Seen path.
type seenIngester struct{ s *memStore }

func (a seenIngester) Ingest(_ context.Context, ev event.Event) (bool, error) {
	return a.s.ingest(ev, false)
}

// fakePoller is a Poller of function fields.
type fakePoller struct {
	lastMessages func(ctx context.Context, fromMe, col int) ([]wamm.Message, error)
	chatMessages func(ctx context.Context, phone string, col int) ([]wamm.Message, error)
}

func (p *fakePoller) LastMessages(ctx context.Context, fromMe, col int) ([]wamm.Message, error) {
	return p.lastMessages(ctx, fromMe, col)
}

func (p *fakePoller) ChatMessages(ctx context.Context, phone string, col int) ([]wamm.Message, error) {
	if p.chatMessages == nil {
		return nil, fmt.Errorf("unexpected msg_get for a chat")
	}
	return p.chatMessages(ctx, phone, col)
}

// account is a simulated WAMM channel: its messages, oldest first.
type account struct {
	mu        sync.Mutex
	msgs      []wamm.Message
	lastCalls int
	lastArgs  []string // "from_me=N col=N" of each msg_get_last call
	chatCalls []string
	onPoll    func() // runs (unlocked) at each msg_get_last call, e.g. to land a webhook mid-poll
}

func (a *account) add(ms ...wamm.Message) {
	a.mu.Lock()
	a.msgs = append(a.msgs, ms...)
	a.mu.Unlock()
}

// setState changes a message's state the way WAMM would.
func (a *account) setState(id, state string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, m := range a.msgs {
		if m.MsgID == id {
			a.msgs[i] = apiMsg(m.MsgID, m.FromMe, m.Phone, state)
		}
	}
}

// newest returns the newest col messages matching keep, newest first, with
// wamm.ErrNoMessages when there are none (as the API answers).
func (a *account) newest(col int, keep func(wamm.Message) bool) ([]wamm.Message, error) {
	var out []wamm.Message
	for i := len(a.msgs) - 1; i >= 0 && len(out) < col; i-- {
		if keep(a.msgs[i]) {
			out = append(out, a.msgs[i])
		}
	}
	if len(out) == 0 {
		return nil, wamm.ErrNoMessages
	}
	return out, nil
}

func (a *account) poller() *fakePoller {
	return &fakePoller{
		lastMessages: func(_ context.Context, fromMe, col int) ([]wamm.Message, error) {
			if a.onPoll != nil {
				a.onPoll()
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			a.lastCalls++
			a.lastArgs = append(a.lastArgs, fmt.Sprintf("from_me=%d col=%d", fromMe, col))
			return a.newest(col, func(m wamm.Message) bool { return fromMe < 0 || m.FromMe == fromMe })
		},
		chatMessages: func(_ context.Context, phone string, col int) ([]wamm.Message, error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.chatCalls = append(a.chatCalls, phone)
			return a.newest(col, func(m wamm.Message) bool { return m.Phone == phone })
		},
	}
}

func (a *account) polls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastCalls
}

// apiMsg decodes one message exactly as msg_get_last returns it (msg_id and
// from_me as strings).
func apiMsg(id string, fromMe int, phone, state string) wamm.Message {
	body := fmt.Sprintf(`{"err":0,"msg_data":[{"msg_id":%q,"from_me":"%d","phone":%q,"chat_name":"Ivan Petrov",`+
		`"tip_msg":"textMessage","msg_text":"Hello!","msg_link":null,"date_ins":"2026-03-01 11:59:00",`+
		`"date_upd":"2026-03-01 11:59:30","state":%q}]}`, id, fromMe, phone, state)
	ms, err := wamm.DecodeMessages([]byte(body))
	if err != nil || len(ms) != 1 {
		panic(fmt.Sprintf("decode test message: %v (%d messages)", err, len(ms)))
	}
	return ms[0]
}

// incoming returns n incoming messages with ids from, from+1, ... spread
// over chats phones.
func incoming(from, n int, phones ...string) []wamm.Message {
	var out []wamm.Message
	for i := range n {
		out = append(out, apiMsg(strconv.Itoa(from+i), 0, phones[i%len(phones)], "received"))
	}
	return out
}

type fixture struct {
	clock *clock
	store *memStore
	acct  *account
	logs  *logtest.Hook
	opts  Options
}

// newFixture returns options wired to fakes: Interval 30s, Grace 20s,
// BackoffMax 5m, and a store that already has an unrelated event (so the
// first pass is not a first run) unless empty is set.
func newFixture(t *testing.T, empty bool) *fixture {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	f := &fixture{clock: newClock(), store: newMemStore(), acct: &account{}, logs: hook}
	if !empty {
		f.store.webhook(wamm.MessageEvent(apiMsg("1", 0, "79000000000", "received"), t0))
	}
	f.opts = Options{
		Poller:     f.acct.poller(),
		Store:      f.store,
		Ingester:   f.store,
		Seen:       seenIngester{f.store},
		Interval:   30 * time.Second,
		Grace:      20 * time.Second,
		BackoffMax: 5 * time.Minute,
		Logger:     logger,
		Now:        f.clock.Now,
	}
	return f
}

func (f *fixture) new(t *testing.T) *Reconciler {
	t.Helper()
	r, err := New(f.opts)
	require.NoError(t, err)
	return r
}

func once(t *testing.T, r *Reconciler) Report {
	t.Helper()
	rep, err := r.ReconcileOnce(context.Background())
	require.NoError(t, err)
	return rep
}

func promote(t *testing.T, r *Reconciler) Report {
	t.Helper()
	rep, err := r.Promote(context.Background())
	require.NoError(t, err)
	return rep
}

// logsAt returns the messages logged at level.
func (f *fixture) logsAt(level logrus.Level) []string {
	var out []string
	for _, e := range f.logs.AllEntries() {
		if e.Level == level {
			out = append(out, e.Message)
		}
	}
	return out
}
