package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// Harness opens a fresh, empty store for one test; the suite closes it.
type Harness func(t *testing.T) store.Store

// Run runs the whole conformance suite against the backend open returns.
//
// Where store.Store leaves room, the suite fixes the behaviour both backends
// share:
//   - times round-trip with at least millisecond precision;
//   - an ingested delivery is created and due at the event's ReceivedAt;
//   - a delivery is claimable when NextAttemptAt <= Now and it has no lease or
//     its lease ends at or before Now;
//   - Record needs the owner's lease; on an unknown id it returns ErrNotFound
//     (ErrLeaseLost is accepted too);
//   - LastError keeps the error of the most recent failed attempt (a later
//     success does not erase it), LastStatusCode is the last attempt's;
//   - Release leaves NextAttemptAt alone: a claimed delivery was already due;
//   - Replay without IDs needs Status dead or delivered, else it errors;
//   - TargetStats is sorted by target; KnownMessages lists each state once;
//   - HasEvents stays true once an event was stored, even after Prune;
//   - Close is idempotent and every later call fails with ErrClosed.
//
// The suite never sleeps: every time it passes is explicit, around a fixed
// base time in the past, so a backend that reads the wall clock where the
// contract gives it a time fails.
func Run(t *testing.T, open Harness) {
	t.Run("Ingest", func(t *testing.T) { testIngest(t, open) })
	t.Run("IngestConcurrent", func(t *testing.T) { testIngestConcurrent(t, open) })
	t.Run("Wake", func(t *testing.T) { testWake(t, open) })
	t.Run("IngestHandoff", func(t *testing.T) { testIngestHandoff(t, open) })
	t.Run("Claim", func(t *testing.T) { testClaim(t, open) })
	t.Run("Record", func(t *testing.T) { testRecord(t, open) })
	t.Run("Release", func(t *testing.T) { testRelease(t, open) })
	t.Run("NextDue", func(t *testing.T) { testNextDue(t, open) })
	t.Run("List", func(t *testing.T) { testList(t, open) })
	t.Run("ListByEvent", func(t *testing.T) { testListByEvent(t, open) })
	t.Run("Attempts", func(t *testing.T) { testAttempts(t, open) })
	t.Run("Replay", func(t *testing.T) { testReplay(t, open) })
	t.Run("TargetStats", func(t *testing.T) { testTargetStats(t, open) })
	t.Run("KnownMessages", func(t *testing.T) { testKnownMessages(t, open) })
	t.Run("HasEvents", func(t *testing.T) { testHasEvents(t, open) })
	t.Run("Channels", func(t *testing.T) { testChannels(t, open) })
	t.Run("Baseline", func(t *testing.T) { testBaseline(t, open) })
	t.Run("Gaps", func(t *testing.T) { testGaps(t, open) })
	t.Run("Chats", func(t *testing.T) { testChats(t, open) })
	t.Run("TargetPauses", func(t *testing.T) { testTargetPauses(t, open) })
	t.Run("HoldLeader", func(t *testing.T) { testHoldLeader(t, open) })
	t.Run("PurgePending", func(t *testing.T) { testPurgePending(t, open) })
	t.Run("ReassignPending", func(t *testing.T) { testReassignPending(t, open) })
	t.Run("Prune", func(t *testing.T) { testPrune(t, open) })
	t.Run("Ping", func(t *testing.T) { testPing(t, open) })
	t.Run("Close", func(t *testing.T) { testClose(t, open) })
}

// base is the suite's clock origin: whole milliseconds, in the past, so a
// backend substituting time.Now() for a given time is caught.
var base = time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

const (
	sec    = time.Second
	minute = time.Minute
	wait   = 5 * time.Second // upper bound for asynchronous signals
)

func newStore(t *testing.T, open Harness) store.Store {
	t.Helper()
	s := open(t)
	require.NotNil(t, s, "harness returned a nil store")
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rawEvent(key string, received time.Time) event.Event {
	return event.Event{
		Key:        event.Key(key),
		Kind:       event.KindRaw,
		Source:     event.SourceWebhook,
		Body:       []byte(`{"key":"` + key + `"}`),
		ReceivedAt: received,
	}
}

func msgEvent(msgID, state string, received time.Time) event.Event {
	return event.Event{
		Key:        event.MsgKey(msgID),
		Kind:       event.KindMsg,
		Source:     event.SourceWebhook,
		MsgID:      msgID,
		State:      state,
		Body:       []byte(`{"tip":"msg","msg_id":` + msgID + `}`),
		ReceivedAt: received,
	}
}

func stateEvent(msgID, state string, received time.Time) event.Event {
	return event.Event{
		Key:        event.StateKey(msgID, state),
		Kind:       event.KindMsgState,
		Source:     event.SourceReconcile,
		MsgID:      msgID,
		State:      state,
		Body:       []byte(`{"tip":"msg_state","msg_id":` + msgID + `,"state":"` + state + `"}`),
		ReceivedAt: received,
	}
}

func ingest(t *testing.T, s store.Store, ev event.Event, targets ...string) {
	t.Helper()
	require.NoError(t, s.Ingest(context.Background(), ev, targets), "ingest %s", ev.Key)
}

func claim(t *testing.T, s store.Store, target, owner string, limit int, lease time.Duration, now time.Time) []event.Delivery {
	t.Helper()
	ds, err := s.Claim(context.Background(), store.ClaimRequest{
		Target: target, Owner: owner, Limit: limit, Lease: lease, Now: now,
	})
	require.NoError(t, err, "claim %s for %s", target, owner)
	return ds
}

// claimOne claims exactly one delivery of target and fails otherwise.
func claimOne(t *testing.T, s store.Store, target, owner string, now time.Time) event.Delivery {
	t.Helper()
	ds := claim(t, s, target, owner, 1, time.Minute, now)
	require.Len(t, ds, 1, "claim one delivery of %s", target)
	return ds[0]
}

func record(t *testing.T, s store.Store, id int64, owner string, out event.Outcome) {
	t.Helper()
	require.NoError(t, s.Record(context.Background(), id, owner, out), "record delivery %d", id)
}

func list(t *testing.T, s store.Store, f store.ListFilter) []event.Delivery {
	t.Helper()
	ds, err := s.List(context.Background(), f)
	require.NoError(t, err, "list %+v", f)
	return ds
}

// get returns delivery id through List (the contract has no lookup by id).
func get(t *testing.T, s store.Store, id int64) event.Delivery {
	t.Helper()
	ds := list(t, s, store.ListFilter{BeforeID: id + 1, Limit: 1})
	require.Len(t, ds, 1, "delivery %d", id)
	require.Equal(t, id, ds[0].ID, "delivery %d", id)
	return ds[0]
}

func ids(ds []event.Delivery) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func keys(ds []event.Delivery) []event.Key {
	out := make([]event.Key, len(ds))
	for i, d := range ds {
		out[i] = d.EventKey
	}
	return out
}

func requireTime(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	require.Falsef(t, got.IsZero(), "%s is zero, want %s", what, want)
	require.WithinDurationf(t, want, got, time.Millisecond, "%s", what)
}

func requireClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		require.FailNow(t, "wake channel not closed", "after %s", what)
	}
}

func testIngest(t *testing.T, open Harness) {
	ctx := context.Background()

	t.Run("writes one pending delivery per target due at ReceivedAt", func(t *testing.T) {
		s := newStore(t, open)
		ev := msgEvent("1001", "sent", at(10*sec))
		ingest(t, s, ev, "a", "b")

		ds := list(t, s, store.ListFilter{})
		require.Len(t, ds, 2)
		targets := []string{ds[0].Target, ds[1].Target}
		require.ElementsMatch(t, []string{"a", "b"}, targets)
		for _, d := range ds {
			require.Equal(t, ev.Key, d.EventKey)
			require.Equal(t, event.StatusPending, d.Status)
			require.Zero(t, d.Attempts)
			requireTime(t, ev.ReceivedAt, d.NextAttemptAt, "NextAttemptAt")
			requireTime(t, ev.ReceivedAt, d.CreatedAt, "CreatedAt")
			require.True(t, d.DeliveredAt.IsZero(), "DeliveredAt of a pending delivery")
			require.Empty(t, d.LastError)
			require.Zero(t, d.LastStatusCode)
		}
		require.NotEqual(t, ds[0].ID, ds[1].ID)
	})

	t.Run("delivery is not due before ReceivedAt", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(10*sec)), "a")
		require.Empty(t, claim(t, s, "a", "w", 10, minute, at(10*sec-time.Millisecond)))
		require.Len(t, claim(t, s, "a", "w", 10, minute, at(10*sec)), 1)
	})

	t.Run("duplicate key returns ErrDuplicate and writes nothing", func(t *testing.T) {
		s := newStore(t, open)
		first := rawEvent("dup", at(0))
		ingest(t, s, first, "a")

		again := first
		again.Body = []byte(`{"other":"body"}`)
		again.ReceivedAt = at(sec)
		err := s.Ingest(ctx, again, []string{"a", "b"})
		require.ErrorIs(t, err, store.ErrDuplicate)

		ds := list(t, s, store.ListFilter{})
		require.Len(t, ds, 1, "a duplicate adds no delivery")
		require.Equal(t, "a", ds[0].Target)
		d := claimOne(t, s, "a", "w", at(sec))
		require.Equal(t, first.Body, d.Body, "the first body stays")
		require.Empty(t, claim(t, s, "b", "w", 10, minute, at(minute)))
	})

	for _, tc := range []struct {
		name    string
		targets []string
	}{
		{"nil targets", nil},
		{"empty targets", []string{}},
	} {
		t.Run(tc.name+" store the event without deliveries", func(t *testing.T) {
			s := newStore(t, open)
			ev := msgEvent("2002", "delivered", at(0))
			require.NoError(t, s.Ingest(ctx, ev, tc.targets))
			require.Empty(t, list(t, s, store.ListFilter{}))

			has, err := s.HasEvents(ctx)
			require.NoError(t, err)
			require.True(t, has)

			require.ErrorIs(t, s.Ingest(ctx, ev, []string{"a"}), store.ErrDuplicate,
				"an event stored without targets still dedups")
			require.Empty(t, list(t, s, store.ListFilter{}))
		})
	}

	t.Run("fields and binary body round-trip", func(t *testing.T) {
		s := newStore(t, open)
		body := []byte{0x00, 0xff, 0xfe, '{', '"', 0x80, '\n', 0x00, 'z'}
		ev := event.Event{
			Key:        event.StateKey("77", "not sent"),
			Kind:       event.KindMsgState,
			Source:     event.SourceReconcile,
			MsgID:      "77",
			State:      "not sent",
			Body:       body,
			ReceivedAt: at(1500 * time.Millisecond),
		}
		ingest(t, s, ev, "a")
		d := claimOne(t, s, "a", "w", at(2*sec))
		require.Equal(t, body, d.Body)
		require.Equal(t, ev.Key, d.EventKey)
		require.Equal(t, event.KindMsgState, d.Kind)
		require.Equal(t, event.SourceReconcile, d.Source)
		require.Equal(t, "a", d.Target)
		requireTime(t, ev.ReceivedAt, d.CreatedAt, "CreatedAt")
	})
}

func testIngestConcurrent(t *testing.T, open Harness) {
	ctx := context.Background()

	t.Run("same key from many goroutines succeeds exactly once", func(t *testing.T) {
		s := newStore(t, open)
		const n = 32
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				errs[i] = s.Ingest(ctx, rawEvent("same", at(0)), []string{"a"})
			}(i)
		}
		close(start)
		wg.Wait()

		ok := 0
		for i, err := range errs {
			if err == nil {
				ok++
				continue
			}
			require.ErrorIs(t, err, store.ErrDuplicate, "goroutine %d", i)
		}
		require.Equal(t, 1, ok, "exactly one ingest wins")
		require.Len(t, list(t, s, store.ListFilter{}), 1)
	})

	t.Run("distinct keys from many goroutines all succeed", func(t *testing.T) {
		s := newStore(t, open)
		const n = 200
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				errs[i] = s.Ingest(ctx, rawEvent(fmt.Sprintf("k%03d", i), at(time.Duration(i)*time.Millisecond)), []string{"a", "b"})
			}(i)
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "goroutine %d", i)
		}

		ds := list(t, s, store.ListFilter{Target: "a"})
		require.Len(t, ds, n)
		seen := map[event.Key]bool{}
		for _, d := range ds {
			require.False(t, seen[d.EventKey], "key %s twice", d.EventKey)
			seen[d.EventKey] = true
		}
		require.Len(t, list(t, s, store.ListFilter{Target: "b"}), n)
	})

	t.Run("repeats mixed with new keys", func(t *testing.T) {
		// Duplicates of one key inside the same group commit must not fail
		// the other requests of the batch.
		s := newStore(t, open)
		ingest(t, s, rawEvent("old", at(0)), "a")
		const n = 60
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				key := fmt.Sprintf("new%d", i/3) // each new key twice
				if i%3 == 0 {
					key = "old"
				}
				errs[i] = s.Ingest(ctx, rawEvent(key, at(sec)), []string{"a"})
			}(i)
		}
		close(start)
		wg.Wait()

		wins := map[int]int{}
		for i, err := range errs {
			if i%3 == 0 {
				require.ErrorIs(t, err, store.ErrDuplicate, "goroutine %d repeats an old key", i)
				continue
			}
			if err == nil {
				wins[i/3]++
				continue
			}
			require.ErrorIs(t, err, store.ErrDuplicate, "goroutine %d", i)
		}
		for k := 0; k < n/3; k++ {
			require.Equal(t, 1, wins[k], "new%d stored exactly once", k)
		}
		require.Len(t, list(t, s, store.ListFilter{}), 1+n/3)
	})
}

func testWake(t *testing.T, open Harness) {
	ctx := context.Background()

	t.Run("fires after ingest", func(t *testing.T) {
		s := newStore(t, open)
		ch := s.Wake()
		ingest(t, s, rawEvent("k", at(0)), "a")
		requireClosed(t, ch, "ingest")
	})

	t.Run("fires after ingest without targets", func(t *testing.T) {
		s := newStore(t, open)
		ch := s.Wake()
		ingest(t, s, rawEvent("k", at(0)))
		requireClosed(t, ch, "ingest")
	})

	t.Run("fires after replay", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		d := claimOne(t, s, "a", "w", at(0))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDead, Error: "http_400", StatusCode: 400, At: at(sec)})

		ch := s.Wake()
		n, err := s.Replay(ctx, store.ReplayRequest{IDs: []int64{d.ID}, Now: at(2 * sec)})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		requireClosed(t, ch, "replay")
	})
}

// testIngestHandoff runs on backends that implement store.HandoffIngester.
func testIngestHandoff(t *testing.T, open Harness) {
	ctx := context.Background()
	handoff := func(t *testing.T, s store.Store) store.HandoffIngester {
		t.Helper()
		h, ok := s.(store.HandoffIngester)
		if !ok {
			t.Skip("the backend does not implement store.HandoffIngester")
		}
		return h
	}

	t.Run("leases the chosen targets' deliveries and returns them", func(t *testing.T) {
		s := newStore(t, open)
		h := handoff(t, s)
		ev := rawEvent("k", at(0))
		got, err := h.IngestHandoff(ctx, ev, []string{"a", "b", "c"},
			store.HandoffLease{Targets: []string{"c", "a"}, Owner: "w", Until: at(minute)})
		require.NoError(t, err)
		require.Len(t, got, 2)
		for i, target := range []string{"a", "c"} {
			d := got[i]
			require.Equal(t, target, d.Target, "in the order of targets")
			require.NotZero(t, d.ID)
			require.Equal(t, ev.Key, d.EventKey)
			require.Equal(t, ev.Kind, d.Kind)
			require.Equal(t, ev.Source, d.Source)
			require.JSONEq(t, string(ev.Body), string(d.Body))
			require.Equal(t, event.StatusPending, d.Status)
			require.Zero(t, d.Attempts)
			requireTime(t, at(0), d.CreatedAt, "CreatedAt")
			requireTime(t, at(0), d.NextAttemptAt, "NextAttemptAt")
			stored := get(t, s, d.ID)
			require.Equal(t, target, stored.Target)
			require.Equal(t, event.StatusPending, stored.Status)
		}

		require.Empty(t, claim(t, s, "a", "other", 10, minute, at(sec)), "leased to w")
		require.Len(t, claim(t, s, "b", "other", 10, minute, at(sec)), 1, "b was not handed off")
		record(t, s, got[0].ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(2 * sec)})
		require.Equal(t, event.StatusDelivered, get(t, s, got[0].ID).Status)

		taken := claim(t, s, "c", "other", 10, minute, at(minute))
		require.Equal(t, []int64{got[1].ID}, ids(taken), "claimable once the handoff lease ends")
	})

	t.Run("duplicate", func(t *testing.T) {
		s := newStore(t, open)
		h := handoff(t, s)
		ingest(t, s, rawEvent("k", at(0)), "a")
		got, err := h.IngestHandoff(ctx, rawEvent("k", at(sec)), []string{"a"},
			store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: at(minute)})
		require.ErrorIs(t, err, store.ErrDuplicate)
		require.Empty(t, got)
		require.Len(t, list(t, s, store.ListFilter{}), 1, "nothing written")
	})

	t.Run("wakes claimers only for unleased deliveries", func(t *testing.T) {
		s := newStore(t, open)
		h := handoff(t, s)
		ch := s.Wake()
		_, err := h.IngestHandoff(ctx, rawEvent("k1", at(0)), []string{"a"},
			store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: at(minute)})
		require.NoError(t, err)
		select {
		case <-ch:
			t.Fatal("woke claimers for a delivery nobody can claim")
		default:
		}
		_, err = h.IngestHandoff(ctx, rawEvent("k2", at(0)), []string{"a", "b"},
			store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: at(minute)})
		require.NoError(t, err)
		requireClosed(t, ch, "ingest with an unleased delivery")
	})
}

func testClaim(t *testing.T, open Harness) {
	ctx := context.Background()

	t.Run("empty store returns nothing", func(t *testing.T) {
		s := newStore(t, open)
		require.Empty(t, claim(t, s, "a", "w", 10, minute, at(0)))
	})

	t.Run("only the requested target", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k1", at(0)), "a")
		ingest(t, s, rawEvent("k2", at(0)), "b")
		ds := claim(t, s, "a", "w", 10, minute, at(sec))
		require.Len(t, ds, 1)
		require.Equal(t, "a", ds[0].Target)
		require.Equal(t, event.Key("k1"), ds[0].EventKey)
		require.Len(t, claim(t, s, "b", "w", 10, minute, at(sec)), 1)
	})

	t.Run("oldest due first, up to Limit, only due ones", func(t *testing.T) {
		s := newStore(t, open)
		// Ingested out of due order; k3a and k3b share a due time and keep
		// their insertion order.
		ingest(t, s, rawEvent("k5", at(5*sec)), "a")
		ingest(t, s, rawEvent("k3a", at(3*sec)), "a")
		ingest(t, s, rawEvent("k1", at(1*sec)), "a")
		ingest(t, s, rawEvent("k3b", at(3*sec)), "a")
		ingest(t, s, rawEvent("k9", at(9*sec)), "a")

		for _, tc := range []struct {
			name  string
			limit int
			now   time.Time
			want  []event.Key
		}{
			{"limit cuts the oldest three", 3, at(10 * sec), []event.Key{"k1", "k3a", "k3b"}},
			{"next claim continues", 3, at(10 * sec), []event.Key{"k5", "k9"}},
			{"nothing left", 3, at(10 * sec), []event.Key{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ds := claim(t, s, "a", "w", tc.limit, minute, tc.now)
				require.Equal(t, tc.want, keys(ds))
			})
		}
	})

	t.Run("not yet due is skipped, due at exactly Now is claimed", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("early", at(2*sec)), "a")
		ingest(t, s, rawEvent("late", at(10*sec)), "a")
		require.Equal(t, []event.Key{"early"}, keys(claim(t, s, "a", "w", 10, minute, at(9*sec))))
		require.Equal(t, []event.Key{"late"}, keys(claim(t, s, "a", "w", 10, minute, at(10*sec))))
	})

	t.Run("a lease hides the delivery until it ends", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		first := claim(t, s, "a", "owner-a", 10, 30*sec, at(0))
		require.Len(t, first, 1)

		require.Empty(t, claim(t, s, "a", "owner-a", 10, 30*sec, at(sec)), "the owner itself cannot claim twice")
		require.Empty(t, claim(t, s, "a", "owner-b", 10, 30*sec, at(30*sec-time.Millisecond)), "lease still running")

		again := claim(t, s, "a", "owner-b", 10, 30*sec, at(30*sec))
		require.Len(t, again, 1, "an expired lease can be claimed by another owner")
		require.Equal(t, first[0].ID, again[0].ID)
		require.Zero(t, again[0].Attempts, "an expired lease charges no attempt")

		require.Empty(t, claim(t, s, "a", "owner-c", 10, 30*sec, at(59*sec)), "the new lease holds")
	})

	t.Run("returns every field of the delivery", func(t *testing.T) {
		s := newStore(t, open)
		ev := msgEvent("555", "sent", at(sec))
		ingest(t, s, ev, "a")
		d := claimOne(t, s, "a", "w", at(2*sec))
		require.NotZero(t, d.ID)
		require.Equal(t, "a", d.Target)
		require.Equal(t, ev.Key, d.EventKey)
		require.Equal(t, event.KindMsg, d.Kind)
		require.Equal(t, event.SourceWebhook, d.Source)
		require.Equal(t, ev.Body, d.Body)
		require.Equal(t, event.StatusPending, d.Status)
		require.Zero(t, d.Attempts)
		requireTime(t, ev.ReceivedAt, d.CreatedAt, "CreatedAt")
		requireTime(t, ev.ReceivedAt, d.NextAttemptAt, "NextAttemptAt")
	})

	t.Run("claims after a retry report the attempts made", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		for attempt := 1; attempt <= 3; attempt++ {
			now := at(time.Duration(attempt) * minute)
			d := claimOne(t, s, "a", "w", now)
			require.Equal(t, attempt-1, d.Attempts)
			record(t, s, d.ID, "w", event.Outcome{
				Result: event.ResultRetry, NextAttemptAt: now.Add(30 * sec),
				StatusCode: 503, Error: "http_503", At: now,
			})
		}
	})

	t.Run("concurrent claimers never share a delivery", func(t *testing.T) {
		s := newStore(t, open)
		const n = 40
		for i := 0; i < n; i++ {
			ingest(t, s, rawEvent(fmt.Sprintf("k%02d", i), at(0)), "a")
		}
		var (
			mu  sync.Mutex
			got = map[int64]string{}
			wg  sync.WaitGroup
		)
		errs := make(chan error, 8)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(owner string) {
				defer wg.Done()
				for {
					ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: owner, Limit: 3, Lease: minute, Now: at(sec)})
					if err != nil {
						errs <- err
						return
					}
					if len(ds) == 0 {
						return
					}
					mu.Lock()
					for _, d := range ds {
						if prev, dup := got[d.ID]; dup {
							mu.Unlock()
							errs <- fmt.Errorf("delivery %d claimed by %s and %s", d.ID, prev, owner)
							return
						}
						got[d.ID] = owner
					}
					mu.Unlock()
				}
			}(fmt.Sprintf("w%d", w))
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Len(t, got, n, "every delivery claimed once")
	})
}

func testRecord(t *testing.T, open Harness) {
	ctx := context.Background()

	for _, tc := range []struct {
		name        string
		out         event.Outcome
		wantStatus  event.Status
		claimableAt time.Time // zero: never claimable again
	}{
		{
			name:       "delivered",
			out:        event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(2 * sec)},
			wantStatus: event.StatusDelivered,
		},
		{
			name: "retry",
			out: event.Outcome{
				Result: event.ResultRetry, NextAttemptAt: at(90 * sec), StatusCode: 503,
				Error: "http_503", At: at(2 * sec),
			},
			wantStatus:  event.StatusPending,
			claimableAt: at(90 * sec),
		},
		{
			name:       "retry without a response",
			out:        event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(10 * sec), Error: "timeout", At: at(2 * sec)},
			wantStatus: event.StatusPending, claimableAt: at(10 * sec),
		},
		{
			name:       "dead",
			out:        event.Outcome{Result: event.ResultDead, StatusCode: 410, Error: "http_410", At: at(2 * sec)},
			wantStatus: event.StatusDead,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, open)
			ingest(t, s, rawEvent("k", at(0)), "a")
			c := claim(t, s, "a", "w", 1, 5*minute, at(sec))
			require.Len(t, c, 1)
			record(t, s, c[0].ID, "w", tc.out)

			d := get(t, s, c[0].ID)
			require.Equal(t, tc.wantStatus, d.Status)
			require.Equal(t, 1, d.Attempts)
			require.Equal(t, tc.out.Error, d.LastError)
			require.Equal(t, tc.out.StatusCode, d.LastStatusCode)
			requireTime(t, tc.out.At, d.UpdatedAt, "UpdatedAt")
			if tc.wantStatus == event.StatusDelivered {
				requireTime(t, tc.out.At, d.DeliveredAt, "DeliveredAt")
			} else {
				require.True(t, d.DeliveredAt.IsZero(), "DeliveredAt of an undelivered delivery")
			}
			if tc.out.Result == event.ResultRetry {
				requireTime(t, tc.out.NextAttemptAt, d.NextAttemptAt, "NextAttemptAt")
			}

			if tc.claimableAt.IsZero() {
				require.Empty(t, claim(t, s, "a", "other", 10, minute, at(24*time.Hour)), "a finished delivery is never claimed")
				return
			}
			// The lease was cleared: another owner gets it as soon as it is
			// due, although the first lease (5 minutes) has not ended.
			require.Empty(t, claim(t, s, "a", "other", 10, minute, tc.claimableAt.Add(-time.Millisecond)))
			again := claim(t, s, "a", "other", 10, minute, tc.claimableAt)
			require.Len(t, again, 1)
			require.Equal(t, 1, again[0].Attempts)
		})
	}

	t.Run("last error survives a later success", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		d := claimOne(t, s, "a", "w", at(0))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(sec), StatusCode: 502, Error: "http_502", At: at(0)})
		d = claimOne(t, s, "a", "w", at(sec))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 204, At: at(2 * sec)})

		got := get(t, s, d.ID)
		require.Equal(t, event.StatusDelivered, got.Status)
		require.Equal(t, 2, got.Attempts)
		require.Equal(t, 204, got.LastStatusCode)
		require.Equal(t, "http_502", got.LastError)
		requireTime(t, at(2*sec), got.DeliveredAt, "DeliveredAt")
	})

	t.Run("another owner after re-claim gets ErrLeaseLost", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		first := claim(t, s, "a", "owner-a", 1, 30*sec, at(0))
		require.Len(t, first, 1)
		second := claim(t, s, "a", "owner-b", 1, 30*sec, at(31*sec))
		require.Len(t, second, 1)

		err := s.Record(ctx, first[0].ID, "owner-a", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(32 * sec)})
		require.ErrorIs(t, err, store.ErrLeaseLost)
		d := get(t, s, first[0].ID)
		require.Equal(t, event.StatusPending, d.Status, "a lost lease changes nothing")
		require.Zero(t, d.Attempts)

		record(t, s, second[0].ID, "owner-b", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(33 * sec)})
		require.Equal(t, event.StatusDelivered, get(t, s, first[0].ID).Status)
	})

	t.Run("expired lease gets ErrLeaseLost although nobody re-claimed", func(t *testing.T) {
		for _, handoff := range []bool{false, true} {
			t.Run(fmt.Sprintf("handoff=%v", handoff), func(t *testing.T) {
				s := newStore(t, open)
				var d event.Delivery
				if h, ok := s.(store.HandoffIngester); ok && handoff {
					ds, err := h.IngestHandoff(ctx, rawEvent("k", at(0)), []string{"a"},
						store.HandoffLease{Targets: []string{"a"}, Owner: "w", Until: at(30 * sec)})
					require.NoError(t, err)
					require.Len(t, ds, 1)
					d = ds[0]
				} else {
					if handoff {
						t.Skip("backend has no handoff")
					}
					ingest(t, s, rawEvent("k", at(0)), "a")
					d = claim(t, s, "a", "w", 1, 30*sec, at(0))[0]
				}
				// The lease ends at 30s; an outcome at exactly its end or later
				// is refused and changes nothing, in a batch or alone.
				for _, when := range []time.Time{at(30 * sec), at(31 * sec)} {
					err := s.Record(ctx, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: when})
					require.ErrorIs(t, err, store.ErrLeaseLost, "outcome at %s", when)
				}
				got := get(t, s, d.ID)
				require.Equal(t, event.StatusPending, got.Status, "an expired lease changes nothing")
				require.Zero(t, got.Attempts)
				// The delivery is claimable again, by anyone.
				again := claimOne(t, s, "a", "other", at(31*sec))
				record(t, s, again.ID, "other", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(32 * sec)})
			})
		}
	})

	t.Run("outcome just before the lease ends is recorded", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		d := claim(t, s, "a", "w", 1, 30*sec, at(0))[0]
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(30*sec - time.Millisecond)})
		require.Equal(t, event.StatusDelivered, get(t, s, d.ID).Status)
	})

	t.Run("recording twice gets ErrLeaseLost", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		d := claimOne(t, s, "a", "w", at(0))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
		err := s.Record(ctx, d.ID, "w", event.Outcome{Result: event.ResultDead, Error: "x", At: at(2 * sec)})
		require.ErrorIs(t, err, store.ErrLeaseLost)
		got := get(t, s, d.ID)
		require.Equal(t, event.StatusDelivered, got.Status)
		require.Equal(t, 1, got.Attempts)
	})

	t.Run("never claimed gets ErrLeaseLost", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		d := list(t, s, store.ListFilter{})[0]
		err := s.Record(ctx, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
		require.ErrorIs(t, err, store.ErrLeaseLost)
		require.Equal(t, event.StatusPending, get(t, s, d.ID).Status)
	})

	t.Run("unknown id gets ErrNotFound", func(t *testing.T) {
		s := newStore(t, open)
		err := s.Record(ctx, 987654, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
		require.Error(t, err)
		require.True(t, errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrLeaseLost),
			"want ErrNotFound (or ErrLeaseLost), got %v", err)
	})

	t.Run("unknown result is rejected and changes nothing", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		d := claimOne(t, s, "a", "w", at(0))
		err := s.Record(ctx, d.ID, "w", event.Outcome{Result: "maybe", At: at(sec)})
		require.Error(t, err)
		require.False(t, errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotFound), "got %v", err)
		got := get(t, s, d.ID)
		require.Equal(t, event.StatusPending, got.Status)
		require.Zero(t, got.Attempts)
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
	})
}

func testRelease(t *testing.T, open Harness) {
	ctx := context.Background()

	t.Run("clears the lease without charging an attempt", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k1", at(0)), "a")
		ingest(t, s, rawEvent("k2", at(0)), "a")
		c := claim(t, s, "a", "owner-a", 10, 10*minute, at(sec))
		require.Len(t, c, 2)

		require.NoError(t, s.Release(ctx, "owner-a", ids(c)))
		again := claim(t, s, "a", "owner-b", 10, minute, at(sec))
		require.ElementsMatch(t, ids(c), ids(again), "released deliveries are due at once")
		for _, d := range again {
			require.Zero(t, d.Attempts)
			requireTime(t, at(0), d.NextAttemptAt, "NextAttemptAt")
		}
	})

	t.Run("only the owner's leases", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		c := claim(t, s, "a", "owner-a", 10, 10*minute, at(0))
		require.Len(t, c, 1)
		require.NoError(t, s.Release(ctx, "owner-b", ids(c)))
		require.Empty(t, claim(t, s, "a", "owner-b", 10, minute, at(sec)), "another owner's release does nothing")
		record(t, s, c[0].ID, "owner-a", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
	})

	t.Run("a released delivery cannot be recorded", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		d := claimOne(t, s, "a", "w", at(0))
		require.NoError(t, s.Release(ctx, "w", []int64{d.ID}))
		err := s.Record(ctx, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
		require.ErrorIs(t, err, store.ErrLeaseLost)
	})

	t.Run("finished, unknown and empty ids are no-ops", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		d := claimOne(t, s, "a", "w", at(0))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDead, Error: "http_400", StatusCode: 400, At: at(sec)})
		require.NoError(t, s.Release(ctx, "w", []int64{d.ID, 424242}))
		require.NoError(t, s.Release(ctx, "w", nil))
		got := get(t, s, d.ID)
		require.Equal(t, event.StatusDead, got.Status)
		require.Equal(t, 1, got.Attempts)
	})
}

func testNextDue(t *testing.T, open Harness) {
	ctx := context.Background()
	nextDue := func(t *testing.T, s store.Store, target string) (time.Time, bool) {
		t.Helper()
		due, ok, err := s.NextDue(ctx, target)
		require.NoError(t, err)
		return due, ok
	}

	t.Run("nothing pending", func(t *testing.T) {
		s := newStore(t, open)
		_, ok := nextDue(t, s, "a")
		require.False(t, ok, "empty store")
		ingest(t, s, rawEvent("k", at(0)), "b")
		_, ok = nextDue(t, s, "a")
		require.False(t, ok, "other targets do not count")
	})

	t.Run("earliest pending", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("late", at(20*sec)), "a")
		ingest(t, s, rawEvent("early", at(5*sec)), "a")
		due, ok := nextDue(t, s, "a")
		require.True(t, ok)
		requireTime(t, at(5*sec), due, "next due")
	})

	t.Run("future retry", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		d := claimOne(t, s, "a", "w", at(0))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(3 * minute), Error: "timeout", At: at(sec)})
		due, ok := nextDue(t, s, "a")
		require.True(t, ok)
		requireTime(t, at(3*minute), due, "next due")
	})

	t.Run("leased delivery is due at lease end", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k", at(0)), "a")
		require.Len(t, claim(t, s, "a", "w", 1, 45*sec, at(10*sec)), 1)
		due, ok := nextDue(t, s, "a")
		require.True(t, ok)
		requireTime(t, at(55*sec), due, "lease end")
	})

	t.Run("leased and unleased: the earlier wins", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k1", at(0)), "a")
		require.Len(t, claim(t, s, "a", "w", 1, 10*minute, at(0)), 1)
		ingest(t, s, rawEvent("k2", at(2*minute)), "a")
		due, ok := nextDue(t, s, "a")
		require.True(t, ok)
		requireTime(t, at(2*minute), due, "next due")
	})

	t.Run("only finished deliveries", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k1", at(0)), "a")
		ingest(t, s, rawEvent("k2", at(0)), "a")
		c := claim(t, s, "a", "w", 10, minute, at(0))
		require.Len(t, c, 2)
		record(t, s, c[0].ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
		record(t, s, c[1].ID, "w", event.Outcome{Result: event.ResultDead, StatusCode: 400, Error: "http_400", At: at(sec)})
		_, ok := nextDue(t, s, "a")
		require.False(t, ok)
	})
}

// fixture builds deliveries in every status across two targets and returns
// their ids by name.
func fixture(t *testing.T, s store.Store) map[string]int64 {
	t.Helper()
	ingest(t, s, rawEvent("e1", at(1*sec)), "a", "b")
	ingest(t, s, rawEvent("e2", at(2*sec)), "a")
	ingest(t, s, rawEvent("e3", at(3*sec)), "a", "b")
	ingest(t, s, rawEvent("e4", at(4*sec)), "a")

	byKey := func(target string) map[event.Key]int64 {
		m := map[event.Key]int64{}
		for _, d := range list(t, s, store.ListFilter{Target: target}) {
			m[d.EventKey] = d.ID
		}
		return m
	}
	a, b := byKey("a"), byKey("b")
	out := map[string]int64{
		"a1": a["e1"], "a2": a["e2"], "a3": a["e3"], "a4": a["e4"],
		"b1": b["e1"], "b3": b["e3"],
	}
	// a1 delivered, a2 dead, a3 retry pending, a4 pending; b1 dead, b3 delivered.
	ca := claim(t, s, "a", "w", 3, minute, at(10*sec))
	require.Equal(t, []int64{out["a1"], out["a2"], out["a3"]}, ids(ca))
	record(t, s, out["a1"], "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(11 * sec)})
	record(t, s, out["a2"], "w", event.Outcome{Result: event.ResultDead, StatusCode: 400, Error: "http_400", At: at(12 * sec)})
	record(t, s, out["a3"], "w", event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(5 * minute), StatusCode: 503, Error: "http_503", At: at(13 * sec)})
	cb := claim(t, s, "b", "w", 2, minute, at(10*sec))
	require.Equal(t, []int64{out["b1"], out["b3"]}, ids(cb))
	record(t, s, out["b1"], "w", event.Outcome{Result: event.ResultDead, Error: "connection_refused", At: at(14 * sec)})
	record(t, s, out["b3"], "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 201, At: at(15 * sec)})
	return out
}

func testList(t *testing.T, open Harness) {
	s := newStore(t, open)
	id := fixture(t, s)
	all := []int64{id["a4"], id["b3"], id["a3"], id["a2"], id["b1"], id["a1"]}
	sort.Slice(all, func(i, j int) bool { return all[i] > all[j] })

	for _, tc := range []struct {
		name string
		f    store.ListFilter
		want []int64
	}{
		{"everything, newest first", store.ListFilter{}, all},
		{"by status", store.ListFilter{Status: event.StatusDead}, desc(id["a2"], id["b1"])},
		{"pending includes retries", store.ListFilter{Status: event.StatusPending}, desc(id["a3"], id["a4"])},
		{"by target", store.ListFilter{Target: "b"}, desc(id["b1"], id["b3"])},
		{"by target and status", store.ListFilter{Target: "a", Status: event.StatusDelivered}, desc(id["a1"])},
		{"limit keeps the newest", store.ListFilter{Limit: 2}, all[:2]},
		{"before id", store.ListFilter{BeforeID: all[1]}, all[2:]},
		{"before id with limit", store.ListFilter{BeforeID: all[1], Limit: 2}, all[2:4]},
		{"before the first id", store.ListFilter{BeforeID: all[len(all)-1]}, []int64{}},
		{"unknown target", store.ListFilter{Target: "zzz"}, []int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, ids(list(t, s, tc.f)))
		})
	}

	t.Run("paging walks everything once", func(t *testing.T) {
		var got []int64
		f := store.ListFilter{Limit: 2}
		for page := 0; page < 10; page++ {
			ds := list(t, s, f)
			if len(ds) == 0 {
				break
			}
			got = append(got, ids(ds)...)
			f.BeforeID = ds[len(ds)-1].ID
		}
		require.Equal(t, all, got)
	})

	t.Run("fields", func(t *testing.T) {
		d := get(t, s, id["a3"])
		require.Equal(t, "a", d.Target)
		require.Equal(t, event.Key("e3"), d.EventKey)
		require.Equal(t, event.KindRaw, d.Kind)
		require.Equal(t, event.SourceWebhook, d.Source)
		require.Equal(t, event.StatusPending, d.Status)
		require.Equal(t, 1, d.Attempts)
		require.Equal(t, "http_503", d.LastError)
		require.Equal(t, 503, d.LastStatusCode)
		requireTime(t, at(5*minute), d.NextAttemptAt, "NextAttemptAt")
		requireTime(t, at(3*sec), d.CreatedAt, "CreatedAt")
	})
}

func desc(v ...int64) []int64 {
	sort.Slice(v, func(i, j int) bool { return v[i] > v[j] })
	return v
}

func testReplay(t *testing.T, open Harness) {
	ctx := context.Background()
	replay := func(t *testing.T, s store.Store, r store.ReplayRequest) int {
		t.Helper()
		n, err := s.Replay(ctx, r)
		require.NoError(t, err)
		return n
	}
	requireReplayed := func(t *testing.T, s store.Store, id int64, now time.Time) {
		t.Helper()
		d := get(t, s, id)
		require.Equal(t, event.StatusPending, d.Status, "delivery %d", id)
		require.Zero(t, d.Attempts, "delivery %d", id)
		requireTime(t, now, d.NextAttemptAt, "NextAttemptAt")
	}

	t.Run("by ids moves only dead and delivered", func(t *testing.T) {
		s := newStore(t, open)
		id := fixture(t, s)
		now := at(time.Hour)
		n := replay(t, s, store.ReplayRequest{IDs: []int64{id["a1"], id["a2"], id["a3"], id["a4"], 999999}, Now: now})
		require.Equal(t, 2, n)
		requireReplayed(t, s, id["a1"], now)
		requireReplayed(t, s, id["a2"], now)
		require.True(t, get(t, s, id["a1"]).DeliveredAt.IsZero(), "a replayed delivery is no longer delivered")

		a3 := get(t, s, id["a3"])
		require.Equal(t, 1, a3.Attempts, "pending delivery untouched")
		requireTime(t, at(5*minute), a3.NextAttemptAt, "untouched NextAttemptAt")

		// Replayed ones are claimable from req.Now, not before.
		require.Equal(t, []int64{id["a4"]}, ids(claim(t, s, "a", "w", 10, 2*time.Hour, at(4*minute))))
		got := claim(t, s, "a", "w", 10, minute, now)
		require.ElementsMatch(t, []int64{id["a1"], id["a2"], id["a3"]}, ids(got))
		for _, d := range got {
			if d.ID != id["a3"] {
				require.Zero(t, d.Attempts)
			}
		}
	})

	t.Run("by target and status", func(t *testing.T) {
		s := newStore(t, open)
		id := fixture(t, s)
		now := at(time.Hour)
		require.Equal(t, 1, replay(t, s, store.ReplayRequest{Target: "a", Status: event.StatusDead, Now: now}))
		requireReplayed(t, s, id["a2"], now)
		require.Equal(t, event.StatusDead, get(t, s, id["b1"]).Status, "other target untouched")
		require.Equal(t, event.StatusDelivered, get(t, s, id["a1"]).Status, "other status untouched")

		require.Equal(t, 1, replay(t, s, store.ReplayRequest{Target: "a", Status: event.StatusDelivered, Now: now}))
		requireReplayed(t, s, id["a1"], now)
		require.Equal(t, event.StatusDelivered, get(t, s, id["b3"]).Status)
	})

	t.Run("by status across targets", func(t *testing.T) {
		s := newStore(t, open)
		id := fixture(t, s)
		now := at(time.Hour)
		require.Equal(t, 2, replay(t, s, store.ReplayRequest{Status: event.StatusDead, Now: now}))
		requireReplayed(t, s, id["a2"], now)
		requireReplayed(t, s, id["b1"], now)
		require.Zero(t, replay(t, s, store.ReplayRequest{Status: event.StatusDead, Now: now}), "nothing dead any more")
	})

	t.Run("replayed delivery runs the whole course again", func(t *testing.T) {
		s := newStore(t, open)
		id := fixture(t, s)
		now := at(time.Hour)
		require.Equal(t, 1, replay(t, s, store.ReplayRequest{IDs: []int64{id["b1"]}, Now: now}))
		d := claimOne(t, s, "b", "w", now)
		require.Equal(t, id["b1"], d.ID)
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: now.Add(sec)})
		got := get(t, s, d.ID)
		require.Equal(t, event.StatusDelivered, got.Status)
		require.Equal(t, 1, got.Attempts)
	})

	for _, tc := range []struct {
		name string
		r    store.ReplayRequest
	}{
		{"pending status", store.ReplayRequest{Status: event.StatusPending, Now: at(0)}},
		{"no selector", store.ReplayRequest{Now: at(0)}},
		{"unknown status", store.ReplayRequest{Target: "a", Status: "lost", Now: at(0)}},
	} {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			s := newStore(t, open)
			fixture(t, s)
			_, err := s.Replay(ctx, tc.r)
			require.Error(t, err)
			require.Len(t, list(t, s, store.ListFilter{Status: event.StatusPending}), 2, "nothing moved")
		})
	}
}

func testTargetStats(t *testing.T, open Harness) {
	ctx := context.Background()
	stats := func(t *testing.T, s store.Store) []store.TargetStats {
		t.Helper()
		st, err := s.TargetStats(ctx)
		require.NoError(t, err)
		return st
	}

	t.Run("empty store", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("no-targets", at(0)))
		require.Empty(t, stats(t, s))
	})

	t.Run("counts, oldest pending and last error per target", func(t *testing.T) {
		s := newStore(t, open)
		fixture(t, s)
		ingest(t, s, rawEvent("c1", at(7*sec)), "c")

		st := stats(t, s)
		require.Len(t, st, 3)
		require.Equal(t, []string{"a", "b", "c"}, []string{st[0].Target, st[1].Target, st[2].Target})

		a, b, c := st[0], st[1], st[2]
		require.Equal(t, 2, a.Pending)
		require.Equal(t, 1, a.Delivered)
		require.Equal(t, 1, a.Dead)
		requireTime(t, at(3*sec), a.OldestPending, "a OldestPending")
		require.Equal(t, "http_503", a.LastError, "the latest failure of a (13s) beats http_400 (12s)")
		requireTime(t, at(13*sec), a.LastErrorAt, "a LastErrorAt")

		require.Zero(t, b.Pending)
		require.Equal(t, 1, b.Delivered)
		require.Equal(t, 1, b.Dead)
		require.True(t, b.OldestPending.IsZero(), "b has nothing pending")
		require.Equal(t, "connection_refused", b.LastError)
		requireTime(t, at(14*sec), b.LastErrorAt, "b LastErrorAt")

		require.Equal(t, 1, c.Pending)
		requireTime(t, at(7*sec), c.OldestPending, "c OldestPending")
		require.Empty(t, c.LastError)
		require.True(t, c.LastErrorAt.IsZero())
	})

	t.Run("QueueStats: the pending and dead part, without delivered-only targets", func(t *testing.T) {
		s := newStore(t, open)
		fixture(t, s)
		ingest(t, s, rawEvent("c1", at(7*sec)), "c")
		ingest(t, s, rawEvent("d1", at(8*sec)), "d")
		d := claimOne(t, s, "d", "w", at(9*sec))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(10 * sec)})

		q, err := s.QueueStats(ctx)
		require.NoError(t, err)
		require.Len(t, q, 3, "d has only a delivered delivery")
		require.Equal(t, []string{"a", "b", "c"}, []string{q[0].Target, q[1].Target, q[2].Target})
		for i, want := range []store.TargetStats{
			{Target: "a", Pending: 2, Dead: 1, OldestPending: at(3 * sec)},
			{Target: "b", Dead: 1},
			{Target: "c", Pending: 1, OldestPending: at(7 * sec)},
		} {
			got := q[i]
			require.Equal(t, want.Pending, got.Pending, "%s pending", want.Target)
			require.Equal(t, want.Dead, got.Dead, "%s dead", want.Target)
			require.Zero(t, got.Delivered, "%s: QueueStats leaves delivered out", want.Target)
			if want.OldestPending.IsZero() {
				require.True(t, got.OldestPending.IsZero(), "%s has nothing pending", want.Target)
			} else {
				requireTime(t, want.OldestPending, got.OldestPending, want.Target+" OldestPending")
			}
		}
	})

	t.Run("oldest pending moves when it is delivered", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, rawEvent("k1", at(sec)), "a")
		ingest(t, s, rawEvent("k2", at(2*sec)), "a")
		d := claimOne(t, s, "a", "w", at(5*sec))
		require.Equal(t, event.Key("k1"), d.EventKey)
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(6 * sec)})
		st := stats(t, s)
		require.Len(t, st, 1)
		requireTime(t, at(2*sec), st[0].OldestPending, "OldestPending")
		require.Equal(t, 1, st[0].Pending)
		require.Equal(t, 1, st[0].Delivered)
	})
}

func testKnownMessages(t *testing.T, open Harness) {
	ctx := context.Background()

	t.Run("msg and state events", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, msgEvent("100", "sent", at(0)), "a")
		ingest(t, s, stateEvent("100", "sent", at(sec)), "a") // same state again: listed once
		ingest(t, s, stateEvent("100", "delivered", at(2*sec)), "a")
		ingest(t, s, stateEvent("100", "not sent", at(3*sec)))
		ingest(t, s, stateEvent("200", "read", at(0)), "a")
		ingest(t, s, msgEvent("300", "", at(0)), "a")
		ingest(t, s, rawEvent("raw:x", at(0)), "a")

		got, err := s.KnownMessages(ctx, "", []string{"100", "200", "300", "999", ""})
		require.NoError(t, err)
		require.Len(t, got, 3, "unknown ids are absent: %v", got)

		require.True(t, got["100"].MsgStored)
		require.ElementsMatch(t, []string{"sent", "delivered", "not sent"}, got["100"].States)
		require.False(t, got["200"].MsgStored, "only a state event of 200 is stored")
		require.Equal(t, []string{"read"}, got["200"].States)
		require.True(t, got["300"].MsgStored)
		require.Empty(t, got["300"].States, "an empty state is no state")
		_, ok := got["999"]
		require.False(t, ok)
	})

	t.Run("no ids", func(t *testing.T) {
		s := newStore(t, open)
		ingest(t, s, msgEvent("1", "sent", at(0)), "a")
		got, err := s.KnownMessages(ctx, "", nil)
		require.NoError(t, err)
		require.Empty(t, got)
	})

	t.Run("large id list", func(t *testing.T) {
		s := newStore(t, open)
		const stored = 500
		var wg sync.WaitGroup
		errs := make([]error, stored)
		for i := 0; i < stored; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = s.Ingest(ctx, msgEvent(fmt.Sprint(10000+i), "sent", at(0)), nil)
			}(i)
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "ingest %d", i)
		}

		query := make([]string, 0, stored+700)
		for i := 0; i < stored+700; i++ { // 700 more that were never stored
			query = append(query, fmt.Sprint(10000+i))
		}
		got, err := s.KnownMessages(ctx, "", query)
		require.NoError(t, err)
		require.Len(t, got, stored)
		for i := 0; i < stored; i++ {
			m, ok := got[fmt.Sprint(10000+i)]
			require.True(t, ok, "message %d", 10000+i)
			require.True(t, m.MsgStored)
			require.Equal(t, []string{"sent"}, m.States)
		}
	})
}

func testHasEvents(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)
	has, err := s.HasEvents(ctx)
	require.NoError(t, err)
	require.False(t, has, "empty store")

	ingest(t, s, rawEvent("k", at(0)), "a")
	has, err = s.HasEvents(ctx)
	require.NoError(t, err)
	require.True(t, has)

	d := claimOne(t, s, "a", "w", at(0))
	record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
	n, err := s.Prune(ctx, at(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	has, err = s.HasEvents(ctx)
	require.NoError(t, err)
	require.True(t, has, "events were stored once, even if pruned since")
}

func testHoldLeader(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)
	for i := 0; i < 2; i++ {
		held, err := s.HoldLeader(ctx, "reconcile")
		require.NoError(t, err)
		require.True(t, held, "a lone store holds the lock (call %d)", i+1)
	}
}

func testPrune(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)

	finish := func(target string, res event.Result) {
		t.Helper()
		d := claimOne(t, s, target, "w", at(time.Hour))
		out := event.Outcome{Result: res, StatusCode: 200, At: at(time.Hour)}
		if res == event.ResultDead {
			out.StatusCode, out.Error = 400, "http_400"
		}
		record(t, s, d.ID, "w", out)
	}

	// old-done: both deliveries finished -> pruned.
	ingest(t, s, rawEvent("old-done", at(0)), "a", "b")
	finish("a", event.ResultDelivered)
	finish("b", event.ResultDead)
	// old-partial: one delivery still pending -> kept.
	ingest(t, s, rawEvent("old-partial", at(sec)), "c", "d")
	finish("c", event.ResultDelivered)
	// old-bare: stored without targets -> pruned.
	ingest(t, s, rawEvent("old-bare", at(2*sec)))
	// old-retry: pending with a future retry -> kept.
	ingest(t, s, rawEvent("old-retry", at(3*sec)), "e")
	d := claimOne(t, s, "e", "w", at(time.Hour))
	record(t, s, d.ID, "w", event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(2 * time.Hour), Error: "timeout", At: at(time.Hour)})
	// at-cutoff: received exactly at `before` -> kept.
	ingest(t, s, rawEvent("at-cutoff", at(10*sec)))
	// new-done: recent and finished -> kept.
	ingest(t, s, rawEvent("new-done", at(20*sec)), "f")
	finish("f", event.ResultDelivered)

	n, err := s.Prune(ctx, at(10*sec))
	require.NoError(t, err)
	require.Equal(t, 2, n)

	left := map[event.Key]int{}
	for _, d := range list(t, s, store.ListFilter{}) {
		left[d.EventKey]++
	}
	require.Equal(t, map[event.Key]int{"old-partial": 2, "old-retry": 1, "new-done": 1}, left,
		"the deliveries of pruned events are gone")

	for _, tc := range []struct {
		key     string
		wantDup bool
	}{
		{"old-done", false},
		{"old-bare", false},
		{"old-partial", true},
		{"old-retry", true},
		{"at-cutoff", true},
		{"new-done", true},
	} {
		t.Run("ingest "+tc.key+" again", func(t *testing.T) {
			err := s.Ingest(ctx, rawEvent(tc.key, at(time.Hour)), []string{"z"})
			if tc.wantDup {
				require.ErrorIs(t, err, store.ErrDuplicate)
				return
			}
			require.NoError(t, err, "a pruned key counts as new")
		})
	}

	n, err = s.Prune(ctx, at(10*sec))
	require.NoError(t, err)
	require.Zero(t, n, "a second prune finds nothing")
}

func testPing(t *testing.T, open Harness) {
	s := newStore(t, open)
	require.NoError(t, s.Ping(context.Background()))
}

func testClose(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)
	ingest(t, s, rawEvent("k", at(0)), "a")
	require.NoError(t, s.Close())

	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Ingest", func() error { return s.Ingest(ctx, rawEvent("k2", at(0)), []string{"a"}) }},
		{"Claim", func() error {
			_, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: 1, Lease: minute, Now: at(sec)})
			return err
		}},
		{"Record", func() error {
			return s.Record(ctx, 1, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
		}},
		{"Release", func() error { return s.Release(ctx, "w", []int64{1}) }},
		{"NextDue", func() error { _, _, err := s.NextDue(ctx, "a"); return err }},
		{"List", func() error { _, err := s.List(ctx, store.ListFilter{}); return err }},
		{"Replay", func() error {
			_, err := s.Replay(ctx, store.ReplayRequest{Status: event.StatusDead, Now: at(sec)})
			return err
		}},
		{"TargetStats", func() error { _, err := s.TargetStats(ctx); return err }},
		{"KnownMessages", func() error { _, err := s.KnownMessages(ctx, "", []string{"1"}); return err }},
		{"HasEvents", func() error { _, err := s.HasEvents(ctx); return err }},
		{"HoldLeader", func() error { _, err := s.HoldLeader(ctx, "reconcile"); return err }},
		{"Prune", func() error { _, err := s.Prune(ctx, at(time.Hour)); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	} {
		t.Run(tc.name+" after Close", func(t *testing.T) {
			require.ErrorIs(t, tc.call(), store.ErrClosed)
		})
	}

	t.Run("Close again", func(t *testing.T) {
		require.NoError(t, s.Close())
	})
}

// orphanStore holds, for target "old": e1 pending (never tried), e2 pending
// after a failed attempt, e3 leased (in flight until 1m), e4 dead; and for
// "new": e2 delivered. "keep" has one pending delivery of e1.
func orphanStore(t *testing.T, open Harness) (store.Store, map[string]int64) {
	t.Helper()
	s := newStore(t, open)
	ingest(t, s, rawEvent("e1", at(0)), "old", "keep")
	ingest(t, s, rawEvent("e2", at(sec)), "old", "new")
	ingest(t, s, rawEvent("e3", at(2*sec)), "old")
	ingest(t, s, rawEvent("e4", at(3*sec)), "old")
	ids := map[string]int64{}
	for _, d := range list(t, s, store.ListFilter{}) {
		ids[d.Target+" "+string(d.EventKey)] = d.ID
	}
	// e1 and e2 of old fail once (retry due at 10s), e4 dies, e3 is leased.
	for _, d := range claim(t, s, "old", "w", 4, minute, at(5*sec)) {
		switch d.EventKey {
		case "e1", "e2":
			record(t, s, d.ID, "w", event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(10 * sec), Error: "http_503", StatusCode: 503, At: at(6 * sec)})
		case "e4":
			record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDead, Error: "http_410", StatusCode: 410, At: at(6 * sec)})
		}
	}
	nd := claimOne(t, s, "new", "w", at(5*sec))
	record(t, s, nd.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(6 * sec)})
	return s, ids
}

func testPurgePending(t *testing.T, open Harness) {
	ctx := context.Background()
	t.Run("marks unleased pending deliveries dead, only of that target", func(t *testing.T) {
		s, ids := orphanStore(t, open)
		n, err := s.PurgePending(ctx, store.PurgeRequest{Target: "old", Now: at(20 * sec)})
		require.NoError(t, err)
		require.Equal(t, 2, n, "e1 and e2; e3 is in flight, e4 already dead")
		for _, k := range []string{"old e1", "old e2"} {
			d := get(t, s, ids[k])
			require.Equal(t, event.StatusDead, d.Status, k)
			require.Equal(t, store.PurgedError, d.LastError, k)
			require.Equal(t, 1, d.Attempts, "%s: purging charges no attempt", k)
			requireTime(t, at(20*sec), d.UpdatedAt, k+" UpdatedAt")
		}
		require.Equal(t, event.StatusPending, get(t, s, ids["old e3"]).Status, "the leased delivery is left")
		require.Equal(t, "http_410", get(t, s, ids["old e4"]).LastError)
		require.Equal(t, event.StatusPending, get(t, s, ids["keep e1"]).Status)
		require.Empty(t, claim(t, s, "old", "x", 10, minute, at(30*sec)), "nothing purged is claimable")

		// Once its lease ended, the last one goes too; purging again is a no-op.
		n, err = s.PurgePending(ctx, store.PurgeRequest{Target: "old", Now: at(2 * minute)})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = s.PurgePending(ctx, store.PurgeRequest{Target: "old", Now: at(2 * minute)})
		require.NoError(t, err)
		require.Zero(t, n)
		// A purged delivery can be replayed like any dead one.
		moved, err := s.Replay(ctx, store.ReplayRequest{IDs: []int64{ids["old e1"]}, Now: at(3 * minute)})
		require.NoError(t, err)
		require.Equal(t, 1, moved)
	})
	t.Run("no target is an error", func(t *testing.T) {
		s := newStore(t, open)
		_, err := s.PurgePending(ctx, store.PurgeRequest{Now: at(0)})
		require.Error(t, err)
	})
}

func testReassignPending(t *testing.T, open Harness) {
	ctx := context.Background()
	t.Run("moves unleased pending deliveries, due now, attempts reset", func(t *testing.T) {
		s, ids := orphanStore(t, open)
		wake := s.Wake()
		n, err := s.ReassignPending(ctx, store.ReassignRequest{From: "old", To: "new", Now: at(7 * sec)})
		require.NoError(t, err)
		require.Equal(t, 1, n, "e1 only: e2 already went to new, e3 is in flight, e4 is dead")
		requireClosed(t, wake, "wake after reassign")

		d := get(t, s, ids["old e1"])
		require.Equal(t, "new", d.Target)
		require.Equal(t, event.StatusPending, d.Status)
		require.Zero(t, d.Attempts)
		requireTime(t, at(7*sec), d.NextAttemptAt, "NextAttemptAt")
		require.Equal(t, "old", get(t, s, ids["old e2"]).Target, "an event is not sent to new twice")
		require.Equal(t, "old", get(t, s, ids["old e3"]).Target)
		require.Equal(t, event.StatusDead, get(t, s, ids["old e4"]).Status)

		got := claimOne(t, s, "new", "w2", at(7*sec))
		require.Equal(t, ids["old e1"], got.ID)
		require.Equal(t, event.Key("e1"), got.EventKey)
		record(t, s, got.ID, "w2", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(8 * sec)})
	})
	t.Run("bad requests are errors", func(t *testing.T) {
		s := newStore(t, open)
		for _, r := range []store.ReassignRequest{{From: "a"}, {To: "a"}, {From: "a", To: "a"}} {
			_, err := s.ReassignPending(ctx, r)
			require.Error(t, err, "%+v", r)
		}
	})
}

// testListByEvent covers the filters on the delivery's event (message id,
// chat, channel, id) and the event fields List reports.
func testListByEvent(t *testing.T, open Harness) {
	s := newStore(t, open)
	chatMsg := func(channel, msgID, chat string, received time.Time) event.Event {
		ev := msgEvent(msgID, "sent", received)
		ev.Chat = chat
		ev.ScopeTo(channel)
		return ev
	}
	ingest(t, s, chatMsg("", "101", "79001112233", at(sec)), "a", "b")
	ingest(t, s, chatMsg("", "102", "79004445566", at(2*sec)), "a")
	ingest(t, s, chatMsg("sales", "101", "79001112233", at(3*sec)), "a")
	ingest(t, s, rawEvent("r1", at(4*sec)), "a")
	all := list(t, s, store.ListFilter{})
	require.Len(t, all, 5)
	byKey := map[string][]int64{}
	for _, d := range all {
		byKey[d.Channel+"/"+d.MsgID+"/"+d.Target] = append(byKey[d.Channel+"/"+d.MsgID+"/"+d.Target], d.ID)
	}
	one := func(k string) int64 {
		require.Len(t, byKey[k], 1, "delivery %s among %v", k, byKey)
		return byKey[k][0]
	}

	for _, tc := range []struct {
		name string
		f    store.ListFilter
		want []int64
	}{
		{"by msg id across channels", store.ListFilter{MsgID: "101"}, desc(one("default/101/a"), one("default/101/b"), one("sales/101/a"))},
		{"by msg id and channel", store.ListFilter{MsgID: "101", Channel: "sales"}, desc(one("sales/101/a"))},
		{"by chat", store.ListFilter{Chat: "79004445566"}, desc(one("default/102/a"))},
		{"by chat and target", store.ListFilter{Chat: "79001112233", Target: "a"}, desc(one("default/101/a"), one("sales/101/a"))},
		{"by channel", store.ListFilter{Channel: "default", Target: "a"}, desc(one("default/101/a"), one("default/102/a"), one("default//a"))},
		{"by id", store.ListFilter{ID: one("default/102/a")}, []int64{one("default/102/a")}},
		{"unknown msg id", store.ListFilter{MsgID: "999"}, []int64{}},
		{"unknown chat", store.ListFilter{Chat: "7000"}, []int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, ids(list(t, s, tc.f)))
		})
	}

	t.Run("reports the event's channel, chat and msg id", func(t *testing.T) {
		ds := list(t, s, store.ListFilter{ID: one("sales/101/a")})
		require.Len(t, ds, 1)
		require.Equal(t, "sales", ds[0].Channel)
		require.Equal(t, "79001112233", ds[0].Chat)
		require.Equal(t, "101", ds[0].MsgID)
		require.Equal(t, event.ChannelKey("sales", event.MsgKey("101")), ds[0].EventKey)
	})
	t.Run("by id returns the body", func(t *testing.T) {
		ds := list(t, s, store.ListFilter{ID: one("default/102/a")})
		require.Len(t, ds, 1)
		require.JSONEq(t, `{"tip":"msg","msg_id":102}`, string(ds[0].Body))
	})
}

// testAttempts covers the log of failed attempts: failures only, numbered,
// restarted by a replay, gone with the pruned delivery.
func testAttempts(t *testing.T, open Harness) {
	ctx := context.Background()
	s := newStore(t, open)
	log, ok := s.(store.AttemptLog)
	require.True(t, ok, "the store keeps an attempt log (store.AttemptLog)")
	attempts := func(t *testing.T, id int64) []store.Attempt {
		t.Helper()
		as, err := log.Attempts(ctx, id)
		require.NoError(t, err)
		return as
	}

	t.Run("a first-try delivery logs nothing", func(t *testing.T) {
		ingest(t, s, rawEvent("ok1", at(0)), "a")
		d := claimOne(t, s, "a", "w", at(0))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(sec)})
		require.Empty(t, attempts(t, d.ID))
	})

	t.Run("failures are logged in order, the success is not", func(t *testing.T) {
		ingest(t, s, rawEvent("f1", at(0)), "b")
		d := claimOne(t, s, "b", "w", at(0))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(sec), StatusCode: 503, Error: "http_503", At: at(sec)})
		d = claimOne(t, s, "b", "w", at(2*sec))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(3 * sec), Error: "timeout", At: at(2 * sec)})
		d = claimOne(t, s, "b", "w", at(4*sec))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDead, StatusCode: 400, Error: "http_400", At: at(4 * sec)})
		as := attempts(t, d.ID)
		require.Len(t, as, 3)
		for i, want := range []store.Attempt{
			{Attempt: 1, At: at(sec), StatusCode: 503, Error: "http_503"},
			{Attempt: 2, At: at(2 * sec), Error: "timeout"},
			{Attempt: 3, At: at(4 * sec), StatusCode: 400, Error: "http_400"},
		} {
			require.Equal(t, want.Attempt, as[i].Attempt, "attempt %d", i)
			require.Equal(t, want.StatusCode, as[i].StatusCode, "attempt %d", i)
			require.Equal(t, want.Error, as[i].Error, "attempt %d", i)
			requireTime(t, want.At, as[i].At, "attempt At")
		}

		// A replay restarts the numbering and keeps the history.
		n, err := s.Replay(ctx, store.ReplayRequest{IDs: []int64{d.ID}, Now: at(5 * sec)})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		d = claimOne(t, s, "b", "w", at(5*sec))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(6 * sec), StatusCode: 500, Error: "http_500", At: at(5 * sec)})
		d = claimOne(t, s, "b", "w", at(6*sec))
		record(t, s, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: at(6 * sec)})
		as = attempts(t, d.ID)
		require.Len(t, as, 4)
		require.Equal(t, 1, as[3].Attempt)
		require.Equal(t, "http_500", as[3].Error)
	})

	t.Run("a refused outcome logs nothing", func(t *testing.T) {
		ingest(t, s, rawEvent("lost", at(0)), "c")
		d := claimOne(t, s, "c", "w", at(0))
		err := s.Record(ctx, d.ID, "someone-else", event.Outcome{Result: event.ResultRetry, NextAttemptAt: at(sec), Error: "x", At: at(sec)})
		require.ErrorIs(t, err, store.ErrLeaseLost)
		require.Empty(t, attempts(t, d.ID))
	})

	t.Run("unknown delivery", func(t *testing.T) {
		require.Empty(t, attempts(t, 1<<40))
	})

	t.Run("pruned with the delivery", func(t *testing.T) {
		ds := list(t, s, store.ListFilter{Target: "b"})
		require.Len(t, ds, 1)
		require.NotEmpty(t, attempts(t, ds[0].ID))
		_, err := s.Prune(ctx, at(time.Hour))
		require.NoError(t, err)
		require.Empty(t, list(t, s, store.ListFilter{Target: "b"}))
		require.Empty(t, attempts(t, ds[0].ID))
	})
}
