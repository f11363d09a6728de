package storetest

import (
	"context"

	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// chatMsg is msgEvent in a channel and chat.
func chatMsg(channel, chat, msgID string, received time.Time) event.Event {
	ev := msgEvent(msgID, "received", received)
	ev.Chat = chat
	ev.ScopeTo(channel)
	return ev
}

func testChannels(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)
	// The same msg_id in two channels: two events, each known only in its
	// own channel.
	ingest(t, s, chatMsg("default", "79001", "100", at(0)), "a")
	ingest(t, s, chatMsg("sales", "79002", "100", at(sec)), "a")
	ev := stateEvent("100", "read", at(2*sec))
	ev.ScopeTo("sales")
	ingest(t, s, ev, "a")
	require.ErrorIs(t, s.Ingest(ctx, chatMsg("sales", "79002", "100", at(3*sec)), []string{"a"}), store.ErrDuplicate)

	def, err := s.KnownMessages(ctx, "", []string{"100"})
	require.NoError(t, err)
	require.Equal(t, map[string]store.KnownMessage{"100": {MsgStored: true, States: []string{"received"}}}, def)
	sales, err := s.KnownMessages(ctx, "sales", []string{"100"})
	require.NoError(t, err)
	require.Equal(t, map[string]store.KnownMessage{"100": {MsgStored: true, States: []string{"received", "read"}}}, sales)
	none, err := s.KnownMessages(ctx, "tg", []string{"100"})
	require.NoError(t, err)
	require.Empty(t, none)

	ds, err := s.List(ctx, store.ListFilter{})
	require.NoError(t, err)
	keys := map[event.Key]bool{}
	for _, d := range ds {
		keys[d.EventKey] = true
	}
	require.Equal(t, map[event.Key]bool{"msg:100": true, "sales:msg:100": true, "sales:state:100:read": true}, keys)
}

func testBaseline(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)
	_, ok, err := s.Baseline(ctx, "")
	require.NoError(t, err)
	require.False(t, ok, "a new store has no baseline")

	want := store.Baseline{Channel: "default", RecordedAt: at(0), HighIn: "1234", HighOut: "999"}
	got, err := s.SaveBaseline(ctx, want)
	require.NoError(t, err)
	requireBaseline(t, want, got)

	// First writer wins: a second first run (another instance) gets the
	// stored baseline back.
	got, err = s.SaveBaseline(ctx, store.Baseline{Channel: "default", RecordedAt: at(minute), HighIn: "5000", Adopted: true})
	require.NoError(t, err)
	requireBaseline(t, want, got)
	got, ok, err = s.Baseline(ctx, "default")
	require.NoError(t, err)
	require.True(t, ok)
	requireBaseline(t, want, got)
	got, ok, err = s.Baseline(ctx, "")
	require.NoError(t, err)
	require.True(t, ok, `"" is the default channel`)
	requireBaseline(t, want, got)

	// The polled marks move with every pass; the baseline's own marks never.
	require.NoError(t, s.SavePolled(ctx, "", "2000", "1500"))
	require.NoError(t, s.SavePolled(ctx, "default", "2100", ""))
	got, _, err = s.Baseline(ctx, "default")
	require.NoError(t, err)
	want.PolledIn, want.PolledOut = "2100", "1500"
	requireBaseline(t, want, got)
	require.ErrorIs(t, s.SavePolled(ctx, "nobody", "1", "1"), store.ErrNotFound, "no baseline, no marks")

	other := store.Baseline{Channel: "sales", RecordedAt: at(sec), Adopted: true, Backfill: true}
	got, err = s.SaveBaseline(ctx, other)
	require.NoError(t, err)
	requireBaseline(t, other, got)

	t.Run("racing first runs agree", func(t *testing.T) {
		var wg sync.WaitGroup
		results := make([]store.Baseline, 8)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := s.SaveBaseline(ctx, store.Baseline{Channel: "race", RecordedAt: at(sec), HighIn: string(rune('1' + i))})
				if err == nil {
					results[i] = b
				}
			}()
		}
		wg.Wait()
		for _, b := range results {
			require.Equal(t, results[0].HighIn, b.HighIn)
			require.NotEmpty(t, b.HighIn)
		}
	})
}

func requireBaseline(t *testing.T, want, got store.Baseline) {
	t.Helper()
	require.True(t, want.RecordedAt.Equal(got.RecordedAt), "recorded at %s, want %s", got.RecordedAt, want.RecordedAt)
	got.RecordedAt = want.RecordedAt
	require.Equal(t, want, got)
}

func testGaps(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)

	g1, created, err := s.RecordGap(ctx, store.Gap{
		Channel: "sales", Chat: "79001", Reason: store.GapChat,
		AfterMsgID: "100", AfterTime: "2026-03-01 10:00:00", BeforeMsgID: "300", BeforeTime: "2026-03-01 10:05:00",
		DetectedAt: at(0),
	})
	require.NoError(t, err)
	require.True(t, created)
	require.Positive(t, g1.ID)
	require.True(t, g1.Open())

	// The same chat's gap found again, wider: one record, widened.
	g2, created, err := s.RecordGap(ctx, store.Gap{
		Channel: "sales", Chat: "79001", Reason: store.GapChat,
		AfterMsgID: "90", AfterTime: "2026-03-01 09:59:00", BeforeMsgID: "250", DetectedAt: at(minute),
	})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, g1.ID, g2.ID)
	require.Equal(t, "90", g2.AfterMsgID)
	require.Equal(t, "2026-03-01 09:59:00", g2.AfterTime)
	require.Equal(t, "300", g2.BeforeMsgID, "the higher Before is kept")
	require.True(t, g2.UpdatedAt.Equal(at(minute)))
	require.True(t, g2.DetectedAt.Equal(at(0)))

	w, created, err := s.RecordGap(ctx, store.Gap{Channel: "", Reason: store.GapWindow, Direction: "incoming",
		AfterMsgID: "5", BeforeMsgID: "50", DetectedAt: at(sec)})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "default", w.Channel)

	all, err := s.Gaps(ctx, store.GapFilter{})
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, w.ID, all[0].ID, "newest first")
	salesOnly, err := s.Gaps(ctx, store.GapFilter{Channel: "sales"})
	require.NoError(t, err)
	require.Len(t, salesOnly, 1)
	require.Equal(t, g2.AfterMsgID, salesOnly[0].AfterMsgID, "what was stored is what is listed")

	r, err := s.ResolveGap(ctx, g1.ID, "re-sent by hand", at(2*minute))
	require.NoError(t, err)
	require.False(t, r.Open())
	require.True(t, r.ResolvedAt.Equal(at(2*minute)))
	require.Equal(t, "re-sent by hand", r.Note)
	again, err := s.ResolveGap(ctx, g1.ID, "other note", at(3*minute))
	require.NoError(t, err)
	require.True(t, again.ResolvedAt.Equal(at(2*minute)), "the first resolution stands")
	require.Equal(t, "re-sent by hand", again.Note)
	_, err = s.ResolveGap(ctx, 99999, "", at(0))
	require.ErrorIs(t, err, store.ErrNotFound)

	open1, err := s.Gaps(ctx, store.GapFilter{Open: true})
	require.NoError(t, err)
	require.Len(t, open1, 1)
	require.Equal(t, w.ID, open1[0].ID)
	resolved, err := s.Gaps(ctx, store.GapFilter{Resolved: true})
	require.NoError(t, err)
	require.Len(t, resolved, 1)
	require.Equal(t, g1.ID, resolved[0].ID)

	// A resolved gap found again opens a new record.
	g3, created, err := s.RecordGap(ctx, store.Gap{Channel: "sales", Chat: "79001", Reason: store.GapChat,
		AfterMsgID: "400", BeforeMsgID: "600", DetectedAt: at(4 * minute)})
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, g1.ID, g3.ID)

	limited, err := s.Gaps(ctx, store.GapFilter{Limit: 1})
	require.NoError(t, err)
	require.Len(t, limited, 1)
}

func testChats(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)
	ingest(t, s, chatMsg("default", "79001", "10", at(0)), "a")
	ingest(t, s, chatMsg("default", "79002", "11", at(sec)), "a")
	ingest(t, s, chatMsg("default", "79001", "12", at(2*sec)), "a")
	st := stateEvent("12", "read", at(3*sec))
	st.Chat = "79001"
	ingest(t, s, st, "a")
	ingest(t, s, chatMsg("sales", "79009", "13", at(4*sec)), "a")
	ingest(t, s, msgEvent("14", "", at(5*sec)), "a") // no chat

	chats, err := s.Chats(ctx, "", "", 0)
	require.NoError(t, err)
	require.Len(t, chats, 2)
	require.Equal(t, "79001", chats[0].Chat, "most recently active first")
	require.Equal(t, "12", chats[0].LastMsgID, "the newest msg event, not the state event")
	require.True(t, chats[0].LastSeenAt.Equal(at(3*sec)))
	require.Equal(t, "79002", chats[1].Chat)
	require.Equal(t, "11", chats[1].LastMsgID)

	one, err := s.Chats(ctx, "default", "79002", 0)
	require.NoError(t, err)
	require.Len(t, one, 1)
	require.Equal(t, "11", one[0].LastMsgID)

	limited, err := s.Chats(ctx, "default", "", 1)
	require.NoError(t, err)
	require.Len(t, limited, 1)
	require.Equal(t, "79001", limited[0].Chat)

	sales, err := s.Chats(ctx, "sales", "", 0)
	require.NoError(t, err)
	require.Len(t, sales, 1)
	require.Equal(t, "79009", sales[0].Chat)

	none, err := s.Chats(ctx, "default", "nope", 0)
	require.NoError(t, err)
	require.Empty(t, none)
}

func testTargetPauses(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)
	got, err := s.PausedTargets(ctx)
	require.NoError(t, err)
	require.Empty(t, got)
	require.NoError(t, s.PauseTarget(ctx, "crm", at(0)))
	require.NoError(t, s.PauseTarget(ctx, "crm", at(sec)), "pausing twice is fine")
	require.NoError(t, s.PauseTarget(ctx, "analytics", at(sec)))
	got, err = s.PausedTargets(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"analytics", "crm"}, got)
	require.NoError(t, s.ResumeTarget(ctx, "crm"))
	require.NoError(t, s.ResumeTarget(ctx, "nope"), "resuming what is not paused does nothing")
	got, err = s.PausedTargets(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"analytics"}, got)
	require.Error(t, s.PauseTarget(ctx, "", at(0)))
}
