package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/tracing"
	"github.com/wamm-relay/wamm-relay/wamm"
)

// Defaults for zero Options fields.
const (
	// DefaultPageSize is how many messages each msg_get_last and msg_get call
	// asks for: the API's maximum.
	DefaultPageSize = 100
	// DefaultBackoffMax caps the wait between failed passes.
	DefaultBackoffMax = 5 * time.Minute
	// DefaultMaxChatsPerPass bounds the msg_get calls one pass makes to
	// recover a window overflow; the rest wait for the next pass.
	DefaultMaxChatsPerPass = 50
	// DefaultMaxCandidates bounds the in-memory set of messages waiting for
	// their grace period.
	DefaultMaxCandidates = 50000
	// DefaultMaxKnownChats bounds the stored chats an overflow queues for
	// msg_get besides the chats of the overflowing page.
	DefaultMaxKnownChats = 500
	// MinInterval is the floor the poll interval is halved down to while the
	// polled window overflows (or Interval, when that is shorter).
	MinInterval = time.Second

	// maxPageSize is the largest col the WAMM API accepts.
	maxPageSize = 100
	// forgetAfter drops a candidate not seen for this long. A healthy
	// reconciler settles every candidate right after its grace period; only a
	// long store outage leaves one behind.
	forgetAfter = 24 * time.Hour
	// leaderLock is the name of the default channel's leader lock; a named
	// channel's is leaderLock + ":" + name, so each channel has one leader.
	leaderLock = "reconcile"
	// dateLayout is how WAMM writes date_ins (time zone unknown).
	dateLayout = "2006-01-02 15:04:05"
)

// Poller reads messages from the WAMM API; *wamm.Client satisfies it.
type Poller interface {
	// LastMessages returns the newest col messages across all chats; fromMe
	// is 0 for incoming, 1 for outgoing, -1 for both.
	LastMessages(ctx context.Context, fromMe, col int) ([]wamm.Message, error)
	// ChatMessages returns the newest col messages of one chat.
	ChatMessages(ctx context.Context, phone string, col int) ([]wamm.Message, error)
}

// Store is the part of the outbox the reconciler reads.
type Store interface {
	KnownMessages(ctx context.Context, channel string, msgIDs []string) (map[string]store.KnownMessage, error)
	HasEvents(ctx context.Context) (bool, error)
	HoldLeader(ctx context.Context, name string) (bool, error)
	Baseline(ctx context.Context, channel string) (store.Baseline, bool, error)
	SaveBaseline(ctx context.Context, b store.Baseline) (store.Baseline, error)
	SavePolled(ctx context.Context, channel, in, out string) error
	RecordGap(ctx context.Context, g store.Gap) (store.Gap, bool, error)
	Gaps(ctx context.Context, f store.GapFilter) ([]store.Gap, error)
	Chats(ctx context.Context, channel, chat string, limit int) ([]store.ChatInfo, error)
}

// Ingester stores an event the way a webhook would be stored; duplicate is
// true when the event's key was already known and nothing new was written.
type Ingester interface {
	Ingest(ctx context.Context, ev event.Event) (duplicate bool, err error)
}

// Options configure a Reconciler.
type Options struct {
	// Channel names the WAMM channel polled: its events are scoped to it,
	// its leader lock, baseline and metrics label are its own. "" means
	// event.DefaultChannel.
	Channel string
	// Poller reads the WAMM API. Required.
	Poller Poller
	// Store answers which messages are known and holds the leader lock. Required.
	Store Store
	// Ingester is the dedup path webhooks take, with fan-out to targets. Required.
	Ingester Ingester
	// Seen records an event as already relayed, with no deliveries: the
	// first-run baseline. Required unless BackfillOnStart.
	Seen Ingester
	// Interval is how often msg_get_last is polled. Required.
	Interval time.Duration
	// Grace is how long a polled message may stay unknown (its webhook may
	// still be on the way) before it counts as missed. Zero means at once.
	Grace time.Duration
	// BackoffMax caps the wait after failed passes, which grows from Interval
	// by doubling. Zero means DefaultBackoffMax.
	BackoffMax time.Duration
	// BackfillOnStart delivers what the first poll against an empty store
	// returns (after the grace period, like any missed message) instead of
	// recording it as seen.
	BackfillOnStart bool
	// PageSize is the col of each API call, 1 to 100. Zero means DefaultPageSize.
	PageSize int
	// MaxChatsPerPass bounds msg_get calls per pass. Zero means DefaultMaxChatsPerPass.
	MaxChatsPerPass int
	// MaxCandidates bounds the messages waiting for their grace period.
	// Zero means DefaultMaxCandidates.
	MaxCandidates int
	// MaxKnownChats bounds the stored chats an overflow queues for msg_get
	// besides the chats of the overflowing page. Zero means
	// DefaultMaxKnownChats.
	MaxKnownChats int
	// MaxAge, when set, ignores polled messages whose date_ins is older than
	// this (with a day's slack, since WAMM's time zone is unknown). Set it
	// below the store's retention, so a message whose key was pruned is not
	// delivered a second time when a quiet chat still shows it.
	MaxAge time.Duration
	// Logger receives the reconciler's log lines. Required.
	Logger logrus.FieldLogger
	// Registerer registers the metrics; nil does not register them.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Tracer records a reconcile.pass span per pass and a reconcile.ingest
	// span, in the event's trace, per event recovered; nil traces nothing.
	Tracer *tracing.Tracer
	// Checker, when set, checks the channel (a *ChannelChecker) at the first
	// pass this instance leads and every CheckEvery-th after; what it finds
	// never fails a pass.
	Checker interface {
		Check(context.Context) ChannelStatus
	}
	// CheckEvery is how many passes apart the channel checks are. Zero
	// means DefaultCheckEvery.
	CheckEvery int
}

func (o *Options) validate() error {
	switch {
	case o.Poller == nil:
		return errors.New("missing Poller")
	case o.Store == nil:
		return errors.New("missing Store")
	case o.Ingester == nil:
		return errors.New("missing Ingester")
	case o.Seen == nil && !o.BackfillOnStart:
		return errors.New("missing Seen (required unless BackfillOnStart is set)")
	case o.Interval <= 0:
		return fmt.Errorf("invalid Interval %s: must be positive", o.Interval)
	case o.Grace < 0:
		return fmt.Errorf("invalid Grace %s: must not be negative", o.Grace)
	case o.BackoffMax < 0:
		return fmt.Errorf("invalid BackoffMax %s: must not be negative", o.BackoffMax)
	case o.BackoffMax > 0 && o.BackoffMax < o.Interval:
		return fmt.Errorf("invalid BackoffMax %s: must not be shorter than Interval %s", o.BackoffMax, o.Interval)
	case o.PageSize < 0 || o.PageSize > maxPageSize:
		return fmt.Errorf("invalid PageSize %d: must be between 1 and %d", o.PageSize, maxPageSize)
	case o.MaxChatsPerPass < 0:
		return fmt.Errorf("invalid MaxChatsPerPass %d: must not be negative", o.MaxChatsPerPass)
	case o.MaxKnownChats < 0:
		return fmt.Errorf("invalid MaxKnownChats %d: must not be negative", o.MaxKnownChats)
	case event.ReservedChannelName(o.Channel):
		return fmt.Errorf("invalid Channel %q: reserved", o.Channel)
	case o.MaxCandidates < 0:
		return fmt.Errorf("invalid MaxCandidates %d: must not be negative", o.MaxCandidates)
	case o.MaxAge < 0:
		return fmt.Errorf("invalid MaxAge %s: must not be negative", o.MaxAge)
	case o.Logger == nil:
		return errors.New("missing Logger")
	case o.CheckEvery < 0:
		return fmt.Errorf("invalid CheckEvery %d: must not be negative", o.CheckEvery)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.BackoffMax == 0 {
		o.BackoffMax = max(DefaultBackoffMax, o.Interval)
	}
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	if o.MaxChatsPerPass == 0 {
		o.MaxChatsPerPass = DefaultMaxChatsPerPass
	}
	if o.MaxCandidates == 0 {
		o.MaxCandidates = DefaultMaxCandidates
	}
	if o.MaxKnownChats == 0 {
		o.MaxKnownChats = DefaultMaxKnownChats
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Channel == "" {
		o.Channel = event.DefaultChannel
	}
}

// Reconciler polls WAMM for events whose webhook never arrived and ingests
// them. Its methods are safe for concurrent use; passes run one at a time.
type Reconciler struct {
	opts    Options
	log     logrus.FieldLogger
	metrics *metrics

	mu sync.Mutex
	// cands are the events seen missing, by event key, until they become
	// known or are ingested.
	cands map[event.Key]*candidate
	// stateCand maps a message id to its pending status candidate's key:
	// polling shows only the current state, so a newer one supersedes it.
	stateCand map[string]event.Key
	// base is the channel's durable baseline once loaded or recorded
	// (haveBase); pendingBase is the one the next successful poll records
	// when the store had none.
	base        store.Baseline
	haveBase    bool
	pendingBase *store.Baseline
	// backfilling is set from the first-run check of a backfill until a pass
	// completes: an empty store knows nothing, so it is no overflow.
	backfilling bool
	// lastNewest is the newest msg_id of the last polled page of each
	// direction: the tightest lower bound of a window gap.
	lastNewest [2]string
	// savedNewest is what the store holds of lastNewest (the baseline's
	// polled marks), so an unchanged mark is not written again.
	savedNewest [2]string
	// lastPollAt is when lastNewest was last taken in.
	lastPollAt time.Time
	// chatMark is, while chats queued by an overflow are being read, the
	// newest message seen before the overflow: each chat's page must reach
	// back to it, or the chat has a gap.
	chatMark string
	// unrecordedGaps are gaps detected while the store failed, recorded by
	// a later pass.
	unrecordedGaps []store.Gap
	// status is what Status reports, under its own lock so an API call
	// never waits for a pass.
	statusMu    sync.Mutex
	status      Status
	leaderKnown bool
	leader      bool
	// interval is the poll interval in effect: opts.Interval, halved while
	// the window overflows.
	interval       time.Duration
	overflowStreak int
	// pendingChats are the chats (phones) of overflowing pages still to be
	// read with msg_get, in order.
	pendingChats []string
	// failures counts consecutive failed passes; failReasons holds the
	// reasons already logged in this streak.
	failures    int
	failReasons map[string]struct{}
	// promoteFailing is set after a failed promote step and cleared by the
	// next pass, so the loop does not spin on a broken store.
	promoteFailing bool
	// checkPasses counts the passes led, for Options.CheckEvery.
	checkPasses int
}

// candidate is one event seen missing, waiting for its grace period.
type candidate struct {
	key       event.Key
	kind      event.Kind
	msg       wamm.Message
	firstSeen time.Time
	lastSeen  time.Time
	// baseline marks a message of the first-run baseline: once its grace is
	// over and it is still unknown it is recorded as seen, not delivered.
	baseline bool
}

func (c *candidate) deadline(grace time.Duration) time.Time { return c.firstSeen.Add(grace) }

// New returns a Reconciler for opts, or an error naming the bad field.
func New(opts Options) (*Reconciler, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("reconcile options: %w", err)
	}
	opts.setDefaults()
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register reconcile metrics: %w", err)
	}
	return &Reconciler{
		opts:        opts,
		log:         opts.Logger.WithField("channel", opts.Channel),
		metrics:     m.forChannel(opts.Channel),
		cands:       make(map[event.Key]*candidate),
		stateCand:   make(map[string]event.Key),
		interval:    opts.Interval,
		failReasons: make(map[string]struct{}),
	}, nil
}

// Run polls until ctx ends, then returns nil. A pass runs at once, then every
// Interval (sooner while the window overflows, later after failures); between
// passes the loop wakes at the earliest grace deadline to promote candidates,
// so a missed event is ingested within Interval + Grace of its appearance.
// API and store errors are counted, logged and backed off from, never returned.
func (r *Reconciler) Run(ctx context.Context) error {
	for {
		rep, _ := r.ReconcileOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		nextPass := r.opts.Now().Add(rep.Next)
		for {
			wake := nextPass
			if at, ok := r.promoteAt(); ok && at.Before(wake) {
				wake = at
			}
			if d := wake.Sub(r.opts.Now()); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
			}
			if ctx.Err() != nil {
				return nil
			}
			if !r.opts.Now().Before(nextPass) {
				break
			}
			// Errors are logged and counted by Promote; promoteAt then
			// reports nothing until the next pass.
			_, _ = r.Promote(ctx)
		}
	}
}

// ReconcileAndWait runs one pass, then waits out the grace period of what it
// found and promotes it, so a one-shot run ingests what is still missing after
// the grace period. It returns the combined report.
func (r *Reconciler) ReconcileAndWait(ctx context.Context) (Report, error) {
	rep, err := r.ReconcileOnce(ctx)
	if err != nil || rep.NotLeader {
		return rep, err
	}
	for {
		at, ok := r.promoteAt()
		if !ok {
			return rep, nil
		}
		if d := at.Sub(r.opts.Now()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return rep, fmt.Errorf("wait for grace period: %w", ctx.Err())
			case <-t.C:
			}
		}
		p, err := r.Promote(ctx)
		rep.merge(p)
		if err != nil {
			return rep, err
		}
		if p.NotLeader {
			return rep, nil
		}
	}
}

// promoteAt returns the earliest grace deadline of the candidates, unless the
// last promote step failed.
func (r *Reconciler) promoteAt() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.promoteFailing {
		return time.Time{}, false
	}
	return r.earliestDeadline()
}

func (r *Reconciler) earliestDeadline() (time.Time, bool) {
	var at time.Time
	for _, c := range r.cands {
		if d := c.deadline(r.opts.Grace); at.IsZero() || d.Before(at) {
			at = d
		}
	}
	return at, !at.IsZero()
}
