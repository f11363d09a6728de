package store

import (
	"context"
	"time"
)

// ReconcileStore is the reconciler's durable memory: each channel's
// first-run baseline, the gaps it found and could not recover, and the
// chats it can name. Channel "" means event.DefaultChannel throughout.
type ReconcileStore interface {
	// Baseline returns channel's baseline; ok is false when none was
	// recorded yet, which is what makes a run the channel's first.
	Baseline(ctx context.Context, channel string) (b Baseline, ok bool, err error)
	// SaveBaseline records b unless channel already has a baseline, and
	// returns the one stored: the first writer wins, so two instances
	// racing on a first run agree on one.
	SaveBaseline(ctx context.Context, b Baseline) (Baseline, error)
	// SavePolled records the newest msg_id of each direction's last poll
	// the reconciler took in, on channel's baseline (ErrNotFound when it
	// has none); "" leaves a direction's mark as it is.
	SavePolled(ctx context.Context, channel, in, out string) error

	// RecordGap stores g as an open gap, or widens the open gap of the same
	// channel, chat, reason and direction to cover g as well (the lower
	// After, the higher Before). created is true for a new record.
	RecordGap(ctx context.Context, g Gap) (stored Gap, created bool, err error)
	// Gaps lists gaps matching f, newest first.
	Gaps(ctx context.Context, f GapFilter) ([]Gap, error)
	// ResolveGap marks an open gap resolved at `at` with an operator's note;
	// ErrNotFound when no gap has that id. Resolving a resolved gap keeps its
	// first resolution and returns it.
	ResolveGap(ctx context.Context, id int64, note string, at time.Time) (Gap, error)

	// Chats returns the chats of channel's stored events (or only chat,
	// when set), each with its newest stored message, most recently active
	// first, at most limit (0: no limit).
	Chats(ctx context.Context, channel, chat string, limit int) ([]ChatInfo, error)
}

// Baseline is where a channel's history ends for the reconciler: messages at
// or below the high-water marks were there before the relay first polled,
// and with backfill off they are recorded as seen, never delivered.
type Baseline struct {
	Channel    string
	RecordedAt time.Time
	// HighIn and HighOut are the highest msg_id of the first poll's incoming
	// and outgoing pages; "" when the page was empty.
	HighIn, HighOut string
	// Adopted is set when the baseline was taken over a store that already
	// held the channel's events (an upgrade from a version without
	// baselines): the marks then bound nothing.
	Adopted bool
	// Backfill is set when the first run delivered its history.
	Backfill bool
	// PolledIn and PolledOut are the newest msg_id of each direction's last
	// poll the reconciler took in (SavePolled): every older message was seen
	// by a poll. A poll after a restart, or by another instance, that does
	// not reach back to them may have missed messages. "" until then.
	PolledIn, PolledOut string
}

// Gap reasons.
const (
	// GapWindow: a full msg_get_last page overlapped nothing known; chats the
	// relay cannot name may have lost messages between After and Before.
	GapWindow = "window_overflow"
	// GapChat: a full msg_get page of one chat overlapped nothing known; the
	// chat's messages between After and Before are beyond the API.
	GapChat = "chat_overflow"
)

// Gap is a range of messages the reconciler knows it missed and cannot
// recover with the API.
type Gap struct {
	ID      int64
	Channel string
	// Chat is the chat the gap is in; "" for a window gap.
	Chat   string
	Reason string
	// Direction is "incoming" or "outgoing" for a window gap, "" otherwise.
	Direction string
	// AfterMsgID and AfterTime name the newest message known before the gap
	// ("" when none is known); BeforeMsgID and BeforeTime the oldest one seen
	// after it. Times are date_ins as WAMM wrote them (zone unknown).
	AfterMsgID, AfterTime   string
	BeforeMsgID, BeforeTime string
	DetectedAt              time.Time
	UpdatedAt               time.Time
	// ResolvedAt is zero while the gap is open.
	ResolvedAt time.Time
	Note       string
}

// Open reports whether the gap is not resolved.
func (g Gap) Open() bool { return g.ResolvedAt.IsZero() }

// GapFilter selects gaps. Zero fields do not filter.
type GapFilter struct {
	Channel string
	// Open and Resolved select by state; both false means both.
	Open, Resolved bool
	Limit          int
}

// ChatInfo is one chat of a channel as the store knows it.
type ChatInfo struct {
	Chat string
	// LastMsgID is the msg_id of the chat's most recently stored message
	// event ("" when it has only other events).
	LastMsgID  string
	LastSeenAt time.Time
}

// CompareMsgIDs orders two normalised msg_ids (decimal digits, no leading
// zeros) numerically; "" sorts first.
func CompareMsgIDs(a, b string) int {
	switch {
	case len(a) != len(b):
		if len(a) < len(b) {
			return -1
		}
		return 1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// WidenGap returns open gap old widened to cover g: the older After, the
// newer Before, updated at g.DetectedAt. Both backends use it, so a repeated
// detection means the same on either.
func WidenGap(old, g Gap) Gap {
	out := old
	// An empty After is unbounded (nothing known before the gap): the widest.
	if out.AfterMsgID != "" && CompareMsgIDs(g.AfterMsgID, out.AfterMsgID) < 0 {
		out.AfterMsgID, out.AfterTime = g.AfterMsgID, g.AfterTime
	}
	if CompareMsgIDs(g.BeforeMsgID, out.BeforeMsgID) > 0 {
		out.BeforeMsgID, out.BeforeTime = g.BeforeMsgID, g.BeforeTime
	}
	out.UpdatedAt = g.DetectedAt
	return out
}
