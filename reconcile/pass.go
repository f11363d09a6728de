package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/wamm"
)

// reasonStore labels failures of the store in logs.
const reasonStore = "store"

// passError is a failed pass with the short reason it is counted and logged by.
type passError struct {
	reason string
	api    bool
	err    error
}

func apiError(op string, err error) *passError {
	return &passError{reason: wamm.Reason(err), api: true, err: fmt.Errorf("%s: %w", op, err)}
}

func storeError(op string, err error) *passError {
	return &passError{reason: reasonStore, err: fmt.Errorf("%s: %w", op, err)}
}

// ReconcileOnce runs one pass: unless another instance holds the reconcile
// lock, it polls the newest incoming and outgoing messages, records the
// first-run baseline, notes what the store does not know as candidates,
// recovers overflowed windows chat by chat, and ingests every candidate whose
// grace period is over and which is still unknown. Failures are counted,
// logged once per streak and backed off from (see Report.Next), and returned.
func (r *Reconciler) ReconcileOnce(ctx context.Context) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep Report
	ctx, span := r.startPassSpan(ctx, stepPoll)
	// A pass that fails leaves the marks where they were, so the next one
	// detects again the overflow (and its gaps) this one could not settle.
	marks := r.lastNewest
	pe := r.pass(ctx, &rep)
	if pe != nil && r.leader {
		if marks == ([2]string{}) {
			marks = r.savedNewest // the pass loaded them from the store
		}
		for i := range marks {
			if marks[i] != "" { // without an earlier mark, this pass's is the best there is
				r.lastNewest[i] = marks[i]
			}
		}
	}
	if len(r.pendingChats) == 0 {
		r.chatMark = ""
	}
	r.finishPass(ctx, &rep, pe)
	endPassSpan(span, &rep, pe)
	if pe != nil {
		r.noteStatus(rep, pe.err, r.opts.Now(), true)
		return rep, pe.err
	}
	r.noteStatus(rep, nil, r.opts.Now(), true)
	return rep, nil
}

// Promote re-checks, against the store only, the candidates whose grace
// period is over and ingests those still unknown. Run calls it at the earliest
// grace deadline so a missed event does not wait for the next poll.
func (r *Reconciler) Promote(ctx context.Context) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep Report
	now := r.opts.Now()
	var due []*candidate
	for _, c := range r.cands {
		if !now.Before(c.deadline(r.opts.Grace)) {
			due = append(due, c)
		}
	}
	var err error
	if len(due) > 0 {
		pctx, span := r.startPassSpan(ctx, stepPromote)
		pe := r.promote(pctx, due, now, &rep)
		endPassSpan(span, &rep, pe)
		if rep.NotLeader {
			// The candidates wait for the lock; until the next pass Run
			// does not call Promote again, or it would spin on them.
			r.promoteFailing = true
		}
		if pe != nil {
			err = pe.err
			if ctx.Err() == nil {
				// Retried by the next pass; until then Run does not call
				// Promote again, so a broken store is not hammered.
				r.promoteFailing = true
				r.log.WithError(pe.err).WithField("reason", pe.reason).
					Warn("reconcile: promoting missed events failed; retrying with the next pass")
			}
		}
	}
	rep.Interval = r.interval
	rep.InGrace, rep.NextPromote = r.waiting(now)
	r.noteStatus(rep, err, now, false)
	return rep, err
}

func (r *Reconciler) promote(ctx context.Context, due []*candidate, now time.Time, rep *Report) *passError {
	leader, err := r.opts.Store.HoldLeader(ctx, r.lockName())
	if err != nil {
		return storeError("hold leader lock", err)
	}
	r.setLeader(leader)
	if !leader {
		rep.NotLeader = true
		return nil
	}
	ids := make([]string, 0, len(due))
	for _, c := range due {
		ids = append(ids, c.msg.MsgID)
	}
	known, err := r.opts.Store.KnownMessages(ctx, r.opts.Channel, distinct(ids))
	if err != nil {
		return storeError("look up known messages", err)
	}
	return r.settle(ctx, due, known, now, rep)
}

func (r *Reconciler) pass(ctx context.Context, rep *Report) *passError {
	r.promoteFailing = false
	leader, err := r.opts.Store.HoldLeader(ctx, r.lockName())
	if err != nil {
		return storeError("hold leader lock", err)
	}
	r.setLeader(leader)
	if !leader {
		rep.NotLeader = true
		return nil
	}
	r.checkChannel(ctx)

	// Whether this is a first run is decided before polling, from the
	// channel's durable baseline: a webhook that commits while the poll runs
	// must not turn the baseline into a backfill of the account's history.
	if !r.haveBase && r.pendingBase == nil {
		if pe := r.loadBaseline(ctx); pe != nil {
			return pe
		}
	}

	now := r.opts.Now()
	var pages [2][]wamm.Message
	for i, dir := range []int{0, 1} {
		msgs, err := r.opts.Poller.LastMessages(ctx, dir, r.opts.PageSize)
		if err != nil && !errors.Is(err, wamm.ErrNoMessages) {
			return apiError("poll "+direction(dir)+" messages", err)
		}
		pages[i] = msgs
	}
	if r.pendingBase != nil {
		if pe := r.saveBaseline(ctx, pages, now); pe != nil {
			return pe
		}
	}
	queried := make(map[string]struct{})
	polled := r.fresh(append(slices.Clip(pages[0]), pages[1]...), queried, now, rep)
	rep.Polled = len(queried)

	if r.backfilling {
		r.log.WithField("messages", len(polled)).
			Info("reconcile: first run against an empty store; backfilling the polled messages after the grace period")
	}

	// One query covers the polled messages and the waiting candidates, so
	// candidates that fell out of the window are still settled.
	ids := slices.Collect(maps.Keys(queried))
	for _, c := range r.cands {
		ids = append(ids, c.msg.MsgID)
	}
	known := map[string]store.KnownMessage{}
	if ids = distinct(ids); len(ids) > 0 {
		if known, err = r.opts.Store.KnownMessages(ctx, r.opts.Channel, ids); err != nil {
			return storeError("look up known messages", err)
		}
		if known == nil {
			known = map[string]store.KnownMessage{}
		}
	}

	// An empty store knows nothing, so a backfill would look like an overflow.
	var windowGaps []store.Gap
	if !r.backfilling {
		windowGaps = r.checkOverflow(pages, known, now, rep)
	}
	if len(windowGaps) > 0 {
		if pe := r.queueKnownChats(ctx, windowGaps); pe != nil {
			return pe
		}
	}
	r.observe(polled, known, now, rep)
	// The pages are candidates now: only then do they count as seen, so a
	// pass that fails before this point leaves the mark where it was.
	for i, page := range pages {
		switch h := highest(page); {
		case h != "":
			r.lastNewest[i] = h
		case r.lastNewest[i] == "":
			// An empty direction has seen everything there is: any later
			// page must reach back to its start.
			r.lastNewest[i] = emptyMark
		}
	}
	r.lastPollAt = now

	var chatErr *passError
	var chatGaps []store.Gap
	if len(r.pendingChats) > 0 {
		var read []chatPage
		read, chatErr = r.readChats(ctx, rep)
		var ids []string
		for i := range read {
			read[i].msgs = r.fresh(read[i].msgs, queried, now, rep)
			for _, m := range read[i].msgs {
				ids = append(ids, m.MsgID)
			}
		}
		if len(ids) > 0 {
			more, err := r.opts.Store.KnownMessages(ctx, r.opts.Channel, ids)
			if err != nil {
				return storeError("look up known messages", err)
			}
			maps.Copy(known, more)
		}
		for _, p := range read {
			// A full page of a chat that overlaps nothing known goes back
			// less far than the chat's gap: the rest is beyond msg_get.
			if p.full && !r.chatOverlaps(p.all, known, now) {
				chatGaps = append(chatGaps, r.chatGap(p, now))
			}
			r.observe(p.msgs, known, now, rep)
		}
		if len(r.pendingChats) == 0 {
			r.chatMark = ""
		}
	}

	r.bound(now)
	if pe := r.settle(ctx, slices.Collect(maps.Values(r.cands)), known, now, rep); pe != nil {
		return pe
	}
	if pe := r.recordGaps(ctx, append(windowGaps, chatGaps...), now, rep); pe != nil {
		return pe
	}
	if pe := r.savePolled(ctx); pe != nil {
		return pe
	}
	r.backfilling = false
	return chatErr
}

// savePolled makes the marks of the polls taken in durable, so a restarted
// relay or the next lock holder knows what its first poll must reach back
// to. While chats queued by an overflow wait to be read the marks are left
// where they were: the gap they would bound is not settled yet.
func (r *Reconciler) savePolled(ctx context.Context) *passError {
	if r.chatMark != "" || !r.haveBase {
		return nil
	}
	// A candidate lives in memory only: the durable mark stays at or below
	// it, so a relay restarted before it is settled polls back to it again.
	marks := r.lastNewest
	for _, c := range r.cands {
		dir := 0
		if c.msg.FromMe == 1 {
			dir = 1
		}
		if marks[dir] != "" && store.CompareMsgIDs(c.msg.MsgID, marks[dir]) < 0 {
			marks[dir] = c.msg.MsgID
		}
	}
	if marks == r.savedNewest {
		return nil
	}
	if err := r.opts.Store.SavePolled(ctx, r.opts.Channel, marks[0], marks[1]); err != nil {
		return storeError("save polled marks", err)
	}
	r.savedNewest = marks
	return nil
}

// lockName is the channel's leader lock: the default channel keeps the name
// earlier versions held, so a rolling upgrade never has two leaders.
func (r *Reconciler) lockName() string {
	if r.opts.Channel == event.DefaultChannel {
		return leaderLock
	}
	return leaderLock + ":" + r.opts.Channel
}

// loadBaseline reads the channel's baseline, or prepares the one the first
// successful poll records. A store that already holds events of the
// default channel was written by a version without baselines: its first
// poll after the upgrade is no first run.
func (r *Reconciler) loadBaseline(ctx context.Context) *passError {
	b, ok, err := r.opts.Store.Baseline(ctx, r.opts.Channel)
	if err != nil {
		return storeError("read baseline", err)
	}
	if ok {
		r.base, r.haveBase = b, true
		// The last poll taken in before a restart, or by the instance that
		// held the lock before, bounds what this one must reach back to.
		if r.lastNewest == ([2]string{}) {
			r.lastNewest = [2]string{b.PolledIn, b.PolledOut}
			r.savedNewest = r.lastNewest
		}
		return nil
	}
	adopted := false
	if r.opts.Channel == event.DefaultChannel {
		if adopted, err = r.opts.Store.HasEvents(ctx); err != nil {
			return storeError("check for stored events", err)
		}
	}
	r.pendingBase = &store.Baseline{Channel: r.opts.Channel, Adopted: adopted, Backfill: r.opts.BackfillOnStart && !adopted}
	return nil
}

// saveBaseline records the pending baseline with the high-water marks of
// the first successful poll, before anything else of the pass, so a relay
// stopped right after it still knows on its next start where history ends.
func (r *Reconciler) saveBaseline(ctx context.Context, pages [2][]wamm.Message, now time.Time) *passError {
	b := *r.pendingBase
	b.RecordedAt = now
	b.HighIn, b.HighOut = highest(pages[0]), highest(pages[1])
	stored, err := r.opts.Store.SaveBaseline(ctx, b)
	if err != nil {
		return storeError("save baseline", err)
	}
	r.base, r.haveBase, r.pendingBase = stored, true, nil
	switch {
	case stored.Adopted:
		r.log.Info("reconcile: store written by an earlier version; recorded the channel's baseline, nothing polled is treated as history")
	case stored.Backfill:
		r.backfilling = true
	default:
		r.log.WithFields(logrus.Fields{"high_incoming": stored.HighIn, "high_outgoing": stored.HighOut}).
			Info("reconcile: first run of the channel; messages up to the recorded baseline are history, recorded as seen without being delivered (set backfill_on_start to deliver them)")
	}
	return nil
}

// history reports whether m was in the channel before its first poll:
// at or below the baseline's high-water mark of m's direction. WAMM's ids
// grow over time (not promised, but every sample shows it).
func (r *Reconciler) history(m wamm.Message) bool {
	if !r.haveBase || r.base.Adopted || r.base.Backfill {
		return false
	}
	high := r.base.HighIn
	if m.FromMe == 1 {
		high = r.base.HighOut
	}
	return high != "" && store.CompareMsgIDs(m.MsgID, high) <= 0
}

func highest(msgs []wamm.Message) string {
	h := ""
	for _, m := range msgs {
		if store.CompareMsgIDs(m.MsgID, h) > 0 {
			h = m.MsgID
		}
	}
	return h
}

func oldest(msgs []wamm.Message) (wamm.Message, bool) {
	var o wamm.Message
	found := false
	for _, m := range msgs {
		if m.MsgID != "" && (!found || store.CompareMsgIDs(m.MsgID, o.MsgID) < 0) {
			o, found = m, true
		}
	}
	return o, found
}

// fresh returns the messages of msgs not already in seen (adding them),
// without those older than MaxAge.
func (r *Reconciler) fresh(msgs []wamm.Message, seen map[string]struct{}, now time.Time, rep *Report) []wamm.Message {
	var out []wamm.Message
	for _, m := range msgs {
		if m.MsgID == "" {
			continue
		}
		if _, dup := seen[m.MsgID]; dup {
			continue
		}
		seen[m.MsgID] = struct{}{}
		if r.tooOld(m, now) {
			rep.Ignored++
			continue
		}
		out = append(out, m)
	}
	return out
}

// tooOld reports whether m's date_ins is older than MaxAge. WAMM gives no
// time zone, so the date is read as UTC with a day's slack.
func (r *Reconciler) tooOld(m wamm.Message, now time.Time) bool {
	if r.opts.MaxAge == 0 {
		return false
	}
	t, err := time.Parse(dateLayout, m.DateIns)
	if err != nil {
		return false
	}
	return t.Add(24 * time.Hour).Before(now.Add(-r.opts.MaxAge))
}

// checkOverflow flags each full page that overlaps nothing known (to the
// store, as a candidate, or as history): messages older than the page may
// have been missed, so its chats are queued for msg_get and the poll
// interval is halved until a page overlaps again. It returns a window gap
// for each such page, bounded after by the newest message the store knows
// (filled in by queueKnownChats).
func (r *Reconciler) checkOverflow(pages [2][]wamm.Message, known map[string]store.KnownMessage, now time.Time, rep *Report) []store.Gap {
	var gaps []store.Gap
	for i, page := range pages {
		if len(page) < r.opts.PageSize || r.overlaps(page, known, now, r.lastNewest[i]) {
			continue
		}
		rep.Overflow = true
		r.metrics.overflows.Inc()
		r.markChats(r.lastNewest[i])
		queued := r.queueChats(page)
		r.log.WithFields(logrus.Fields{"direction": direction(i), "page_size": r.opts.PageSize, "chats_queued": queued}).
			Warn("reconcile: polled window overlaps nothing known, messages may have been missed; polling faster and reading the chats one by one")
		o, _ := oldest(page)
		g := store.Gap{
			Channel: r.opts.Channel, Reason: store.GapWindow, Direction: direction(i),
			BeforeMsgID: o.MsgID, BeforeTime: o.DateIns, DetectedAt: now,
		}
		// The newest message known below the page bounds the gap; what is
		// known above it (webhooks since) says nothing about the gap.
		if r.haveBase && !r.base.Adopted {
			high := r.base.HighIn
			if i == 1 {
				high = r.base.HighOut
			}
			g.AfterMsgID = newestBelow(g.AfterMsgID, high, o.MsgID)
		}
		g.AfterMsgID = newestBelow(g.AfterMsgID, r.lastNewest[i], o.MsgID)
		gaps = append(gaps, g)
	}
	if rep.Overflow {
		r.overflowStreak++
		r.interval = max(r.interval/2, min(MinInterval, r.opts.Interval))
		return gaps
	}
	if r.overflowStreak > 0 {
		r.log.WithField("interval", r.interval.String()).
			Info("reconcile: polled window reaches back to the last poll again")
		r.overflowStreak = 0
	}
	// The interval grows back only while a poll at twice the interval would
	// still reach back: a channel busier than a page per interval then keeps
	// the shorter interval instead of overflowing every other pass.
	// The re-poll right after an overflow says nothing about the rate.
	if r.interval < r.opts.Interval && now.Sub(r.lastPollAt) >= r.interval/2 && r.roomToDouble(pages) {
		r.interval = min(2*r.interval, r.opts.Interval)
	}
	return nil
}

// chatOverlaps is overlaps for a chat's page: the candidates this pass
// just took from the window do not count, they are the very messages the
// page repeats.
func (r *Reconciler) chatOverlaps(page []wamm.Message, known map[string]store.KnownMessage, now time.Time) bool {
	if r.chatMark != "" {
		return reachesBack(page, r.chatMark) || r.pastHistory(page, now)
	}
	for _, m := range page {
		if _, ok := known[m.MsgID]; ok || r.history(m) || r.tooOld(m, now) {
			return true
		}
		for _, key := range []event.Key{event.MsgKey(m.MsgID), r.stateCand[m.MsgID]} {
			if c, ok := r.cands[key]; ok && c.firstSeen.Before(now) {
				return true
			}
		}
	}
	return false
}

// queueChats queues the chats of msgs for msg_get and returns how many were
// new to the queue.
func (r *Reconciler) queueChats(msgs []wamm.Message) int {
	queued := 0
	for _, m := range msgs {
		if m.Phone != "" && !slices.Contains(r.pendingChats, m.Phone) {
			r.pendingChats = append(r.pendingChats, m.Phone)
			queued++
		}
	}
	return queued
}

// queueKnownChats queues, after the chats of the overflowing pages, the
// chats the store knows (most recently active first, up to MaxKnownChats):
// a chat whose messages all fell out of the window is in no page. Without
// an earlier poll to bound it, each window gap's After becomes the newest
// message the store knows, where that is newer than the baseline's mark.
func (r *Reconciler) queueKnownChats(ctx context.Context, gaps []store.Gap) *passError {
	chats, err := r.opts.Store.Chats(ctx, r.opts.Channel, "", r.opts.MaxKnownChats)
	if err != nil {
		return storeError("list known chats", err)
	}
	for _, c := range chats {
		if c.Chat != "" && !slices.Contains(r.pendingChats, c.Chat) {
			r.pendingChats = append(r.pendingChats, c.Chat)
		}
	}
	for i := range gaps {
		dir := 0
		if gaps[i].Direction == direction(1) {
			dir = 1
		}
		if r.lastNewest[dir] != "" && r.lastNewest[dir] != emptyMark {
			continue // bounded by the previous poll; what is known above it proves nothing
		}
		for _, c := range chats {
			gaps[i].AfterMsgID = newestBelow(gaps[i].AfterMsgID, c.LastMsgID, gaps[i].BeforeMsgID)
		}
	}
	return nil
}

// newestBelow returns the newer of cur and id when id is below limit, else
// cur.
func newestBelow(cur, id, limit string) string {
	if id != "" && store.CompareMsgIDs(id, limit) < 0 && store.CompareMsgIDs(id, cur) > 0 {
		return id
	}
	return cur
}

// chatGap is the gap in p's chat: between the newest message the store
// knows of the chat and the oldest the page reaches.
func (r *Reconciler) chatGap(p chatPage, now time.Time) store.Gap {
	o, _ := oldest(p.all)
	after := p.lastKnown
	// What the store knows above the mark says nothing about the gap.
	// (A direction first polled empty bounds nothing worth naming: the
	// newest message the store knows is the more useful bound then.)
	if r.chatMark != "" && r.chatMark != emptyMark && (after == "" || store.CompareMsgIDs(after, r.chatMark) > 0) {
		after = r.chatMark
	}
	return store.Gap{
		Channel: r.opts.Channel, Chat: p.chat, Reason: store.GapChat,
		AfterMsgID: after, BeforeMsgID: o.MsgID, BeforeTime: o.DateIns, DetectedAt: now,
	}
}

// recordGaps stores the gaps found by a pass (and those a failing store
// kept back before), logs each new one once and counts it. A window gap
// whose bounds show no range (the page reaches the newest known message)
// is no gap.
func (r *Reconciler) recordGaps(ctx context.Context, found []store.Gap, now time.Time, rep *Report) *passError {
	todo := append(r.unrecordedGaps, found...)
	r.unrecordedGaps = nil
	for i, g := range todo {
		if g.Reason == store.GapWindow && (g.AfterMsgID == "" || store.CompareMsgIDs(g.BeforeMsgID, g.AfterMsgID) <= 0) {
			continue
		}
		stored, created, err := r.opts.Store.RecordGap(ctx, g)
		if err != nil {
			r.unrecordedGaps = append(r.unrecordedGaps, todo[i:]...)
			return storeError("record gap", err)
		}
		rep.Gaps++
		if !created {
			continue
		}
		rep.NewGaps++
		r.metrics.gapsDetected.WithLabelValues(g.Reason).Inc()
		msg := "reconcile: messages of this chat are beyond the API (more than a page missed); recorded as a gap, see /api/v1/gaps"
		if g.Reason == store.GapWindow {
			msg = "reconcile: the polled window moved past what is known; chats the relay cannot name may have lost messages in this range; recorded as a gap, see /api/v1/gaps"
		}
		r.log.WithFields(logrus.Fields{
			"gap_id": stored.ID, "chat": g.Chat, "reason": g.Reason, "direction": g.Direction,
			"after_msg_id": g.AfterMsgID, "before_msg_id": g.BeforeMsgID,
		}).Warn(msg)
	}
	open, err := r.opts.Store.Gaps(ctx, store.GapFilter{Channel: r.opts.Channel, Open: true})
	if err != nil {
		return storeError("count open gaps", err)
	}
	r.metrics.gapsOpen.Set(float64(len(open)))
	rep.GapsOpen = len(open)
	_ = now
	return nil
}

// overlaps reports whether page reaches back to what was already seen, so
// nothing older than the page can have been skipped. With mark, the newest
// message of the previous poll of the direction (kept in the store across
// restarts and lock holders), only a page
// reaching back to the mark shows that: a known message in the page proves
// nothing about older ones, because WAMM gives up on a webhook it cannot
// deliver (while the store is down, say) and goes on with newer ones, whose
// webhooks then arrive. Without a mark (before the channel's first poll was
// taken in) a known message or candidate in the page is the best evidence.
func (r *Reconciler) overlaps(page []wamm.Message, known map[string]store.KnownMessage, now time.Time, mark string) bool {
	if mark != "" {
		return reachesBack(page, mark) || r.pastHistory(page, now)
	}
	for _, m := range page {
		if _, ok := known[m.MsgID]; ok {
			return true
		}
		if _, ok := r.cands[event.MsgKey(m.MsgID)]; ok {
			return true
		}
		if _, ok := r.stateCand[m.MsgID]; ok {
			return true
		}
		// A message past MaxAge, or of the channel's history, shows the
		// window reaches back far enough.
		if r.tooOld(m, now) || r.history(m) {
			return true
		}
	}
	return false
}

// emptyMark is the mark of a direction polled empty: below every msg_id.
const emptyMark = "0"

// roomToDouble reports whether each full page holds fewer than half a page
// of messages newer than its direction's mark.
func (r *Reconciler) roomToDouble(pages [2][]wamm.Message) bool {
	for i, page := range pages {
		if len(page) < r.opts.PageSize || r.lastNewest[i] == "" {
			continue
		}
		n := 0
		for _, m := range page {
			if store.CompareMsgIDs(m.MsgID, r.lastNewest[i]) > 0 {
				n++
			}
		}
		if 2*n >= r.opts.PageSize {
			return false
		}
	}
	return true
}

// reachesBack reports whether page holds a message at or below mark.
func reachesBack(page []wamm.Message, mark string) bool {
	o, ok := oldest(page)
	return ok && store.CompareMsgIDs(o.MsgID, mark) <= 0
}

// pastHistory reports whether page holds a message past MaxAge or of the
// channel's history: the page reaches back far enough.
func (r *Reconciler) pastHistory(page []wamm.Message, now time.Time) bool {
	for _, m := range page {
		if r.tooOld(m, now) || r.history(m) {
			return true
		}
	}
	return false
}

// markChats notes, when a window overflows, the newest message seen before
// it (the lowest of the overflowing directions' marks): the chats queued
// until the queue empties must reach back to it to prove they lost nothing.
func (r *Reconciler) markChats(mark string) {
	if mark != "" && (r.chatMark == "" || store.CompareMsgIDs(mark, r.chatMark) < 0) {
		r.chatMark = mark
	}
}

// chatPage is what msg_get returned for one chat.
type chatPage struct {
	chat string
	// all is the page as returned; msgs the part not seen earlier in the
	// pass (and not too old), which observe looks at.
	all, msgs []wamm.Message
	full      bool
	// lastKnown is the newest msg_id the store knows of the chat.
	lastKnown string
}

// readChats reads up to MaxChatsPerPass queued chats with msg_get, one call
// each at the API's largest page. A chat leaves the queue only once read,
// so an API failure or the per-pass bound leaves the rest for the next pass.
func (r *Reconciler) readChats(ctx context.Context, rep *Report) ([]chatPage, *passError) {
	var out []chatPage
	defer func() {
		rep.ChatsPending = len(r.pendingChats)
		if rep.ChatsPending > 0 {
			r.log.WithFields(logrus.Fields{"chats_read": rep.ChatsBackfilled, "chats_pending": rep.ChatsPending}).
				Warn("reconcile: chat recovery incomplete; the remaining chats are read by the next passes")
		}
	}()
	for rep.ChatsBackfilled < r.opts.MaxChatsPerPass && len(r.pendingChats) > 0 {
		chat := r.pendingChats[0]
		msgs, err := r.opts.Poller.ChatMessages(ctx, chat, r.opts.PageSize)
		if err != nil && !errors.Is(err, wamm.ErrNoMessages) {
			return out, apiError("read chat messages", err)
		}
		p := chatPage{chat: chat, all: msgs, msgs: msgs, full: len(msgs) >= r.opts.PageSize}
		if p.full {
			// Only a full page can be a gap; its lower bound is the newest
			// message the store knows of the chat.
			known, err := r.opts.Store.Chats(ctx, r.opts.Channel, chat, 1)
			if err != nil {
				return out, storeError("look up chat", err)
			}
			if len(known) == 1 {
				p.lastKnown = known[0].LastMsgID
			}
		}
		r.pendingChats = r.pendingChats[1:]
		rep.ChatsBackfilled++
		rep.Recovered += len(msgs)
		out = append(out, p)
	}
	if len(r.pendingChats) == 0 {
		r.pendingChats = nil
	}
	return out, nil
}

// observe turns what the store does not know about msgs into candidates: a
// message whose msg event is not stored (its state is inside it), or a stored
// message whose current state was never relayed.
func (r *Reconciler) observe(msgs []wamm.Message, known map[string]store.KnownMessage, now time.Time, rep *Report) {
	for _, m := range msgs {
		k := known[m.MsgID]
		if !k.MsgStored {
			r.track(event.MsgKey(m.MsgID), event.KindMsg, m, now)
			// History is recorded as seen once its grace is over, never
			// delivered; the grace keeps the webhook of a message that
			// reached WAMM just before the first poll from being answered
			// as a duplicate and lost.
			if r.history(m) {
				r.cands[event.MsgKey(m.MsgID)].baseline = true
			}
			continue
		}
		// Polling shows only the current state: a pending candidate for an
		// earlier one is overtaken and would reach targets out of order.
		if key, ok := r.stateCand[m.MsgID]; ok && m.State != "" && r.cands[key].msg.State != m.State {
			r.drop(key)
		}
		// A state StateEvent cannot key (empty, over-long) is left alone.
		if m.State != "" && len(m.State) <= wamm.MaxStateLen && !slices.Contains(k.States, m.State) {
			r.track(event.StateKey(m.MsgID, m.State), event.KindMsgState, m, now)
			continue
		}
		rep.Known++
	}
}

func (r *Reconciler) track(key event.Key, kind event.Kind, m wamm.Message, now time.Time) {
	if c, ok := r.cands[key]; ok {
		c.msg = m
		c.lastSeen = now
		return
	}
	r.cands[key] = &candidate{key: key, kind: kind, msg: m, firstSeen: now, lastSeen: now}
	if kind == event.KindMsgState {
		r.stateCand[m.MsgID] = key
	}
}

func (r *Reconciler) drop(key event.Key) {
	c, ok := r.cands[key]
	if !ok {
		return
	}
	delete(r.cands, key)
	if c.kind == event.KindMsgState && r.stateCand[c.msg.MsgID] == key {
		delete(r.stateCand, c.msg.MsgID)
	}
}

// covered reports whether the store now has c's event: a webhook arrived.
func covered(c *candidate, known map[string]store.KnownMessage) bool {
	k := known[c.msg.MsgID]
	if c.kind == event.KindMsg {
		return k.MsgStored
	}
	return slices.Contains(k.States, c.msg.State)
}

// settle drops the candidates the store now knows and ingests those whose
// grace period is over through the webhook dedup path: messages first, then
// statuses, so a message reaches targets no later than its status. Within
// each wave the ingests run concurrently, so the store's group commit writes
// a burst of gaps in a few transactions instead of one commit per event.
func (r *Reconciler) settle(ctx context.Context, cands []*candidate, known map[string]store.KnownMessage, now time.Time, rep *Report) *passError {
	slices.SortFunc(cands, func(a, b *candidate) int {
		return cmp.Or(a.firstSeen.Compare(b.firstSeen), cmp.Compare(kindOrder(a.kind), kindOrder(b.kind)), cmp.Compare(a.key, b.key))
	})
	var msgs, states []*candidate
	for _, c := range cands {
		switch {
		case covered(c, known):
			r.drop(c.key)
			rep.ArrivedInGrace++
		case now.Before(c.deadline(r.opts.Grace)):
		case c.kind == event.KindMsg:
			msgs = append(msgs, c)
		default:
			states = append(states, c)
		}
	}
	for _, wave := range [][]*candidate{msgs, states} {
		if perr := r.ingestWave(ctx, wave, now, rep); perr != nil {
			return perr
		}
	}
	return nil
}

// ingestConcurrency bounds the concurrent ingests of one wave.
const ingestConcurrency = 32

// ingestWave ingests ready candidates concurrently, then records the results
// in order. A store failure stops the pass after the wave; what was ingested
// before it is still counted and forgotten.
func (r *Reconciler) ingestWave(ctx context.Context, wave []*candidate, now time.Time, rep *Report) *passError {
	type result struct {
		ev  event.Event
		dup bool
		err error
	}
	results := make([]result, len(wave))
	sem := make(chan struct{}, ingestConcurrency)
	var wg sync.WaitGroup
	for i, c := range wave {
		if c.kind == event.KindMsg {
			results[i].ev = wamm.MessageEvent(c.msg, now)
		} else {
			results[i].ev = wamm.StateEvent(c.msg, now)
		}
		results[i].ev.ScopeTo(r.opts.Channel)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ingester := r.opts.Ingester
			if c.baseline {
				ingester = r.opts.Seen
			}
			start := time.Now()
			results[i].dup, results[i].err = ingester.Ingest(ctx, results[i].ev)
			if !c.baseline {
				r.traceIngest(ctx, start, results[i].ev, results[i].dup, results[i].err)
			}
		}()
	}
	wg.Wait()

	var firstErr *passError
	for i, c := range wave {
		res := results[i]
		if res.err != nil {
			if firstErr == nil {
				op := "ingest missed event"
				if c.baseline {
					op = "record baseline message"
				}
				firstErr = storeError(op, res.err)
			}
			continue
		}
		r.drop(c.key)
		if res.dup {
			rep.Duplicates++
			continue
		}
		if c.baseline {
			rep.Baseline++
			r.metrics.baseline.Inc()
			continue
		}
		if c.kind == event.KindMsg {
			rep.EnqueuedMsgs++
		} else {
			rep.EnqueuedStates++
		}
		r.metrics.gapsFilled.WithLabelValues(string(c.kind)).Inc()
		r.log.WithFields(logrus.Fields{
			"event_key":   string(res.ev.Key),
			"kind":        string(c.kind),
			"first_seen":  c.firstSeen.UTC().Format(time.RFC3339),
			"unknown_for": now.Sub(c.firstSeen).Round(time.Millisecond).String(),
		}).Info("reconcile: ingested an event the webhooks missed")
	}
	if firstErr != nil {
		return firstErr
	}
	return nil
}

func kindOrder(k event.Kind) int {
	if k == event.KindMsg {
		return 0
	}
	return 1
}

// bound forgets candidates not seen for a long time and caps how many wait,
// dropping the least recently seen.
func (r *Reconciler) bound(now time.Time) {
	var forgotten int
	for key, c := range r.cands {
		if c.lastSeen.Before(now.Add(-forgetAfter)) {
			r.drop(key)
			forgotten++
		}
	}
	if over := len(r.cands) - r.opts.MaxCandidates; over > 0 {
		all := slices.SortedFunc(maps.Values(r.cands), func(a, b *candidate) int {
			return cmp.Or(a.lastSeen.Compare(b.lastSeen), cmp.Compare(a.key, b.key))
		})
		for _, c := range all[:over] {
			r.drop(c.key)
		}
		forgotten += over
	}
	if forgotten > 0 {
		r.log.WithFields(logrus.Fields{"forgotten": forgotten, "waiting": len(r.cands)}).
			Warn("reconcile: forgot missing events that could not be settled; they will not be delivered unless polled again")
	}
}

// finishPass does the bookkeeping of a pass: metrics, failure streaks and
// their logs, the wait before the next pass.
func (r *Reconciler) finishPass(ctx context.Context, rep *Report, pe *passError) {
	now := r.opts.Now()
	switch {
	case pe != nil && ctx.Err() != nil:
		// Shutting down: neither WAMM nor the store failed.
		rep.Next = r.interval
	case pe != nil:
		r.failures++
		r.metrics.polls.WithLabelValues(outcomeError).Inc()
		if pe.api {
			r.metrics.apiErrors.WithLabelValues(pe.reason).Inc()
		}
		rep.Next = r.backoff()
		if _, logged := r.failReasons[pe.reason]; !logged {
			r.failReasons[pe.reason] = struct{}{}
			r.log.WithError(pe.err).WithFields(logrus.Fields{
				"reason":       pe.reason,
				"failed_polls": r.failures,
				"next_poll_in": rep.Next.String(),
			}).Warn("reconcile: pass failed; backing off")
		}
	case rep.NotLeader:
		r.metrics.polls.WithLabelValues(outcomeNotLeader).Inc()
		rep.Next = r.opts.Interval
	default:
		r.metrics.polls.WithLabelValues(outcomeOK).Inc()
		r.metrics.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
		if r.failures > 0 {
			r.log.WithField("failed_polls", r.failures).
				Infof("reconcile: recovered after %d failed polls", r.failures)
			r.failures = 0
			clear(r.failReasons)
		}
		rep.Next = r.interval
		if rep.Overflow && r.overflowStreak == 1 {
			// Poll again at once: the window moved past what we know.
			rep.Next = 0
		}
	}
	rep.Interval = r.interval
	rep.InGrace, rep.NextPromote = r.waiting(now)
}

// backoff is the wait after the current failure streak: Interval doubling
// per failure, capped at BackoffMax.
func (r *Reconciler) backoff() time.Duration {
	d := r.opts.Interval
	for i := 1; i < r.failures && d < r.opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, r.opts.BackoffMax)
}

// waiting counts the candidates still in their grace period and returns the
// earliest grace deadline (zero when none waits).
func (r *Reconciler) waiting(now time.Time) (int, time.Time) {
	n := 0
	for _, c := range r.cands {
		if now.Before(c.deadline(r.opts.Grace)) {
			n++
		}
	}
	at, _ := r.earliestDeadline()
	return n, at
}

// setLeader notes whether this instance holds the reconcile lock. Losing it
// keeps the candidates: the lock is often lost only for a moment (its
// session died with the database), and the messages they stand for may be
// out of every window by the time it is back. They wait, unpromoted, and are
// settled against the store once the lock is held again (what another holder
// ingested meanwhile is known by then). The marks of earlier polls and the
// queued chats go: another holder may have polled since, so the next poll
// starts afresh.
func (r *Reconciler) setLeader(leader bool) {
	if r.leaderKnown && leader == r.leader {
		return
	}
	r.leaderKnown, r.leader = true, leader
	if leader {
		r.log.Info("reconcile: holding the reconcile lock; polling WAMM")
		return
	}
	r.log.Info("reconcile: another instance holds the reconcile lock; not polling")
	// The baseline is read again once the lock is back: its polled marks
	// are then the other holder's.
	r.lastNewest, r.savedNewest = [2]string{}, [2]string{}
	r.haveBase, r.pendingBase = false, nil
	r.chatMark = ""
	r.pendingChats = nil
	r.overflowStreak = 0
	r.interval = r.opts.Interval
}

func direction(fromMe int) string {
	if fromMe == 1 {
		return "outgoing"
	}
	return "incoming"
}

func distinct(ids []string) []string {
	slices.Sort(ids)
	return slices.Compact(ids)
}
