package reconcile

import (
	"fmt"
	"strings"
	"time"
)

// Report says what one pass (or promote step) found and did.
type Report struct {
	// NotLeader: another instance holds the reconcile lock; nothing was polled.
	NotLeader bool
	// Polled is how many distinct messages msg_get_last returned (both directions).
	Polled int
	// Recovered is how many messages the per-chat msg_get calls returned.
	Recovered int
	// Known is how many polled or recovered messages had nothing missing.
	Known int
	// Ignored is how many were older than MaxAge and not looked at.
	Ignored int
	// InGrace is how many missing events still wait for their grace period.
	InGrace int
	// ArrivedInGrace is how many missing events became known (their webhook
	// arrived) during their grace period, so the reconciler left them alone.
	ArrivedInGrace int
	// EnqueuedMsgs and EnqueuedStates count the msg and msg_state events the
	// reconciler ingested.
	EnqueuedMsgs   int
	EnqueuedStates int
	// Duplicates counts events whose ingest found the key already stored.
	Duplicates int
	// Baseline is how many messages the first run recorded as seen without
	// delivering them.
	Baseline int
	// Overflow: a full page overlapped nothing known, so messages older than
	// the window may have been missed.
	Overflow bool
	// ChatsBackfilled is how many chats were read with msg_get;
	// ChatsPending how many still wait for a later pass.
	ChatsBackfilled int
	ChatsPending    int
	// Gaps is how many gap records the pass wrote or widened, NewGaps how
	// many of them are new; GapsOpen how many of the channel's gaps are not
	// resolved.
	Gaps, NewGaps, GapsOpen int
	// Interval is the poll interval in effect after the pass.
	Interval time.Duration
	// Next is how long Run waits before the next pass.
	Next time.Duration
	// NextPromote is the earliest grace deadline of the waiting events; zero
	// when none waits.
	NextPromote time.Time
}

// String renders the report on one line for the CLI and logs.
func (r Report) String() string {
	if r.NotLeader {
		return "skipped: another instance holds the reconcile lock"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "polled=%d known=%d in_grace=%d arrived_in_grace=%d enqueued_msgs=%d enqueued_states=%d duplicates=%d",
		r.Polled, r.Known, r.InGrace, r.ArrivedInGrace, r.EnqueuedMsgs, r.EnqueuedStates, r.Duplicates)
	if r.Baseline > 0 {
		fmt.Fprintf(&b, " baseline=%d", r.Baseline)
	}
	if r.Ignored > 0 {
		fmt.Fprintf(&b, " ignored_too_old=%d", r.Ignored)
	}
	if r.Overflow || r.ChatsBackfilled > 0 || r.ChatsPending > 0 {
		fmt.Fprintf(&b, " overflow=%t chats_backfilled=%d recovered=%d chats_pending=%d",
			r.Overflow, r.ChatsBackfilled, r.Recovered, r.ChatsPending)
	}
	if r.Gaps > 0 || r.GapsOpen > 0 {
		fmt.Fprintf(&b, " gaps_new=%d gaps_open=%d", r.NewGaps, r.GapsOpen)
	}
	return b.String()
}

// merge adds a promote step's counts to a pass's report and takes its view
// of what still waits.
func (r *Report) merge(p Report) {
	r.ArrivedInGrace += p.ArrivedInGrace
	r.EnqueuedMsgs += p.EnqueuedMsgs
	r.EnqueuedStates += p.EnqueuedStates
	r.Duplicates += p.Duplicates
	r.InGrace = p.InGrace
	r.NextPromote = p.NextPromote
}
