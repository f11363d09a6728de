package targets

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/logx"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/tracing"
)

// Store is what the workers need from the outbox.
type Store interface {
	Claim(ctx context.Context, req store.ClaimRequest) ([]event.Delivery, error)
	Record(ctx context.Context, id int64, owner string, out event.Outcome) error
	Release(ctx context.Context, owner string, ids []int64) error
	NextDue(ctx context.Context, target string) (time.Time, bool, error)
	Wake() <-chan struct{}
}

// Defaults applied to zero Options fields.
const (
	DefaultWorkers        = 16
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 2 * time.Hour
	// DefaultLeaseSlack: a delivery in flight on an instance that dies is
	// taken over by another within its timeout plus this.
	DefaultLeaseSlack   = 30 * time.Second
	DefaultIdlePoll     = 5 * time.Second
	DefaultDrainTimeout = 10 * time.Second
	DefaultUserAgent    = "wamm-relay"
)

const (
	// storeOpTimeout bounds each store call of the delivery loops: Claim
	// and NextDue, and Record and Release, which run on a context of their
	// own so that an outcome is still written during shutdown.
	storeOpTimeout = 5 * time.Second
	// storeRetryMin and storeRetryMax bound the pause after a failed claim.
	storeRetryMin = 100 * time.Millisecond
	storeRetryMax = 5 * time.Second
	// storeErrorLogInterval rate-limits "store unavailable" lines.
	storeErrorLogInterval = time.Minute
	// minWait keeps a loop from spinning when the store says work is due
	// but the claim found none (clock skew between instances).
	minWait = 50 * time.Millisecond
)

// Options configures a Dispatcher.
type Options struct {
	Targets []Target
	Store   Store
	// Owner identifies this instance in leases; unique per process.
	Owner string
	// Workers is the most attempts in flight at once, per target.
	Workers int
	// BackoffInitial and BackoffMax shape the retry schedule (see Backoff).
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// LeaseSlack is added to a target's timeout to make the claim lease.
	LeaseSlack time.Duration
	// IdlePoll is the fallback re-check while idle, which catches leases
	// expired on dead instances and work the wake signal cannot announce.
	IdlePoll time.Duration
	// DrainTimeout is how long in-flight attempts may finish on shutdown
	// before they are aborted and their deliveries released.
	DrainTimeout time.Duration
	// UserAgent is sent on every request, e.g. "wamm-relay/1.2.3".
	UserAgent string
	Logger    logrus.FieldLogger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock for leases, timestamps and backoff; nil is time.Now.
	Now func() time.Time
	// Rand returns a uniform draw from [0, 1) for backoff jitter; nil uses
	// math/rand/v2.
	Rand func() float64
	// Tracer records a delivery.attempt span per attempt, in the event's
	// trace, and sends its traceparent to the target; nil traces nothing.
	Tracer *tracing.Tracer
}

func (o *Options) setDefaults() {
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.BackoffInitial == 0 {
		o.BackoffInitial = DefaultBackoffInitial
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.LeaseSlack == 0 {
		o.LeaseSlack = DefaultLeaseSlack
	}
	if o.IdlePoll == 0 {
		o.IdlePoll = DefaultIdlePoll
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
}

func (o *Options) validate() error {
	switch {
	case o.Store == nil:
		return errors.New("targets: Options.Store is nil")
	case o.Logger == nil:
		return errors.New("targets: Options.Logger is nil")
	case o.Owner == "":
		return errors.New("targets: Options.Owner is empty")
	case o.Workers < 0:
		return errors.New("targets: Options.Workers must be > 0")
	case o.BackoffInitial < 0:
		return errors.New("targets: Options.BackoffInitial must be > 0")
	case o.BackoffMax < o.BackoffInitial:
		return errors.New("targets: Options.BackoffMax must be >= BackoffInitial")
	case o.LeaseSlack < 0:
		return errors.New("targets: Options.LeaseSlack must be > 0")
	case o.IdlePoll < 0:
		return errors.New("targets: Options.IdlePoll must be > 0")
	case o.DrainTimeout < 0:
		return errors.New("targets: Options.DrainTimeout must be > 0")
	}
	return nil
}

// Dispatcher delivers the outbox's pending deliveries to their targets: one
// loop and one bounded pool of attempts per target.
type Dispatcher struct {
	opts    Options
	table   *Table
	pools   []*pool
	byName  map[string]*pool
	log     logrus.FieldLogger
	running atomic.Bool

	// live is what handed-off attempts run on while Run accepts them; nil
	// before Run and from the start of the drain. Reserve adds to its
	// WaitGroup under the read lock, so the drain's Wait never races an Add.
	liveMu sync.RWMutex
	live   *runState

	randMu sync.Mutex
}

// runState is one Run's contexts and its WaitGroup of attempts.
type runState struct {
	soft, hard context.Context
	attempts   *sync.WaitGroup
}

// New validates the options and builds one HTTP client per target. It does
// not start anything; see Run.
func New(opts Options) (*Dispatcher, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	table, err := NewTable(opts.Targets)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer, table.Names())
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		opts:   opts,
		table:  table,
		byName: make(map[string]*pool),
		log:    opts.Logger,
	}
	for _, t := range table.Targets() {
		log := opts.Logger.WithField("target", t.Name)
		s, err := newSender(t, opts.Workers, opts.UserAgent)
		if err != nil {
			return nil, err
		}
		p := &pool{
			d:        d,
			target:   t,
			sender:   s,
			backoff:  Backoff{Initial: opts.BackoffInitial, Max: opts.BackoffMax},
			lease:    t.Timeout + opts.LeaseSlack,
			sem:      make(chan struct{}, opts.Workers),
			outcomes: make(chan struct{}, opts.Workers),
			freed:    make(chan struct{}, 1),
			log:      log,
			debug:    logx.DebugEnabled(log),
			storeErrs: errorStreak{
				log: log, now: opts.Now, interval: storeErrorLogInterval,
			},
			delivered:       m.deliveries.WithLabelValues(t.Name, outcomeDelivered),
			retried:         m.deliveries.WithLabelValues(t.Name, outcomeRetried),
			dead:            m.deliveries.WithLabelValues(t.Name, outcomeDead),
			latency:         m.latency.WithLabelValues(t.Name),
			requestDuration: m.requestDuration.WithLabelValues(t.Name),
			attempts:        m.attempts.MustCurryWith(prometheus.Labels{"target": t.Name}),
			inFlight:        m.inFlight.WithLabelValues(t.Name),
			rateLimited:     m.rateLimited.WithLabelValues(t.Name),
			gate:            newGate(t),
		}
		pausedG, openG, trips := m.paused.WithLabelValues(t.Name), m.breakerOpen.WithLabelValues(t.Name), m.breakerTrips.WithLabelValues(t.Name)
		p.gate.onTrip = trips.Inc
		p.gate.onChange = func(state string, paused bool) {
			pausedG.Set(boolGauge(paused))
			openG.Set(boolGauge(state != BreakerClosed))
			log.WithFields(logrus.Fields{"breaker": state, "paused": paused}).Warn("target gate changed")
		}
		d.pools = append(d.pools, p)
		d.byName[t.Name] = p
	}
	return d, nil
}

// Table returns the target table the dispatcher was built from, for
// routing events at ingest.
func (d *Dispatcher) Table() *Table { return d.table }

// Run delivers until ctx is done, then drains: no new attempt starts,
// attempts in flight get DrainTimeout to finish, and whatever is still in
// flight after that is aborted and released without charging an attempt.
// It returns nil after the drain; store trouble is logged and retried, never
// returned.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("targets: dispatcher is already running")
	}
	defer d.running.Store(false)

	// hard outlives ctx: it is what in-flight attempts run on, and it is
	// canceled only when the drain deadline passes.
	hard, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()

	if len(d.pools) == 0 {
		// Nothing to deliver to; stay up like any other component so the
		// run group does not read an early return as a stop.
		d.log.Warn("no targets configured: events are stored but delivered nowhere")
		<-ctx.Done()
		return nil
	}
	d.log.WithField("targets", len(d.pools)).Info("delivery workers started")
	var loops, attempts sync.WaitGroup
	d.liveMu.Lock()
	d.live = &runState{soft: ctx, hard: hard, attempts: &attempts}
	d.liveMu.Unlock()
	for _, p := range d.pools {
		loops.Go(func() { p.run(ctx, hard, &attempts) })
	}
	loops.Wait()
	d.liveMu.Lock()
	d.live = nil
	d.liveMu.Unlock()

	drained := make(chan struct{})
	go func() {
		attempts.Wait()
		close(drained)
	}()
	timer := time.NewTimer(d.opts.DrainTimeout)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		d.log.WithField("drain_timeout", d.opts.DrainTimeout.String()).
			Warn("drain timeout reached; aborting attempts in flight and releasing their deliveries")
		abort()
		<-drained
	}
	for _, p := range d.pools {
		p.sender.close()
	}
	d.log.Info("delivery workers stopped")
	return nil
}

// DeliverDue runs one claim-and-send round for target: it claims as many
// due deliveries as the target has free worker slots, attempts them
// concurrently, records their outcomes and returns how many it attempted
// once all are done. Canceling ctx aborts the attempts and releases their
// deliveries.
func (d *Dispatcher) DeliverDue(ctx context.Context, target string) (int, error) {
	p, ok := d.byName[target]
	if !ok {
		return 0, fmt.Errorf("deliver due: unknown target %q", target)
	}
	var wg sync.WaitGroup
	n, _, err := p.claimAndStart(ctx, ctx, &wg)
	wg.Wait()
	return n, err
}

func (d *Dispatcher) now() time.Time { return d.opts.Now() }

func (d *Dispatcher) jitter() float64 {
	d.randMu.Lock()
	defer d.randMu.Unlock()
	return d.opts.Rand()
}

// pool is one target's loop and its bounded set of attempts in flight.
type pool struct {
	d       *Dispatcher
	target  Target
	sender  *sender
	backoff Backoff
	lease   time.Duration
	// sem holds one token per attempt in flight; its capacity is Workers.
	sem chan struct{}
	// outcomes holds one token per outcome waiting for its commit after its
	// worker was freed; its capacity is Workers too, so an instance leases
	// at most twice Workers deliveries of a target, and a store slow to
	// commit holds the workers back as before.
	outcomes chan struct{}
	// freed is signaled whenever an attempt ends: a slot is free and the
	// next due time may have changed.
	freed chan struct{}
	// keepingUp: the last claim found fewer due deliveries than it had
	// room for, so a new event's delivery may skip the queue (see Reserve).
	keepingUp atomic.Bool
	// parked: the loop is waiting with every worker busy, so a worker
	// given back must wake it.
	parked atomic.Bool
	log    logrus.FieldLogger
	// debug: log writes debug lines (successful attempts are logged at debug).
	debug     bool
	storeErrs errorStreak

	delivered, retried, dead prometheus.Counter
	latency, requestDuration prometheus.Observer
	attempts                 *prometheus.CounterVec
	inFlight                 prometheus.Gauge
	rateLimited              prometheus.Counter

	// gate holds the target back while paused, while its breaker is open
	// and beyond its rate limit; gateRetryAt is when a held-back loop
	// should look again (zero: when nudged or at the idle poll).
	gate        *gate
	gateRetryAt time.Time
}

// run is the target's loop: claim what is due into the free slots, then
// wait for new work (wake), the next due time, a freed slot, or the idle
// poll. soft stops it; hard is handed to the attempts.
func (p *pool) run(soft, hard context.Context, attempts *sync.WaitGroup) {
	st := p.d.opts.Store
	var storeWait time.Duration
	for soft.Err() == nil {
		// Take the wake channel before claiming, so an ingest that commits
		// after the claim still wakes this loop.
		wake := st.Wake()
		_, more, err := p.claimAndStart(soft, hard, attempts)
		if err == nil && more {
			p.storeErrs.ok()
			storeWait = 0
			continue
		}
		wait := p.d.opts.IdlePoll
		// Parked before looking at the free slots, so that a worker given
		// back after the look sees the flag and nudges (returnSlot).
		p.parked.Store(true)
		if err == nil && !p.gateRetryAt.IsZero() {
			// Held back by the gate: due deliveries wait for it, not for
			// their due time.
			wait = max(min(wait, p.gateRetryAt.Sub(p.d.now())), minWait)
		} else if err == nil && p.freeSlots() > 0 {
			p.parked.Store(false)
			var at time.Time
			var ok bool
			dueCtx, cancel := context.WithTimeout(soft, storeOpTimeout)
			at, ok, err = st.NextDue(dueCtx, p.target.Name)
			cancel()
			if err != nil {
				err = fmt.Errorf("next due delivery: %w", err)
			} else if ok {
				if until := at.Sub(p.d.now()); until < wait {
					wait = max(until, minWait)
				}
			}
		} else if err == nil {
			// Every slot is busy: only a finished attempt can change that.
			wake = nil
		} else {
			p.parked.Store(false)
		}
		if err != nil {
			if soft.Err() != nil {
				return
			}
			p.storeErrs.fail(err)
			storeWait = min(max(2*storeWait, storeRetryMin), storeRetryMax)
			wait, wake = storeWait, nil
		} else {
			p.storeErrs.ok()
			storeWait = 0
		}
		timer := time.NewTimer(wait)
		select {
		case <-soft.Done():
		case <-wake:
		case <-p.freed:
		case <-timer.C:
		}
		timer.Stop()
		p.parked.Store(false)
	}
}

// claimAndStart claims up to the free worker slots' worth of due deliveries
// and starts an attempt for each. more reports that the claim was full, so
// more may be due.
func (p *pool) claimAndStart(soft, hard context.Context, attempts *sync.WaitGroup) (started int, more bool, err error) {
	slots := 0
acquire:
	for slots < cap(p.sem) {
		select {
		case p.sem <- struct{}{}:
			slots++
		default:
			break acquire
		}
	}
	// Reset first: a stale retry time would keep the loop in the gate's
	// wait after the gate has let go.
	p.gateRetryAt = time.Time{}
	if slots == 0 {
		return 0, false, nil
	}
	if !p.gate.unlimited() {
		allowed, retryAt, limited := p.gate.allowWhy(p.d.now(), slots)
		if limited {
			p.rateLimited.Inc()
		}
		if allowed < slots {
			p.returnSlots(slots - allowed)
			slots = allowed
		}
		if slots == 0 {
			p.gateRetryAt = retryAt
			if retryAt.IsZero() {
				// Paused or probing: a resume or the probe's end nudges.
				p.gateRetryAt = p.d.now().Add(p.d.opts.IdlePoll)
			}
			return 0, false, nil
		}
	}
	// A deadline of its own: a connection that went silent (a frozen
	// network path, a stalled database) must not hold the loop forever.
	claimCtx, cancel := context.WithTimeout(soft, storeOpTimeout)
	ds, err := p.d.opts.Store.Claim(claimCtx, store.ClaimRequest{
		Target: p.target.Name,
		Owner:  p.d.opts.Owner,
		Limit:  slots,
		Lease:  p.lease,
		Now:    p.d.now(),
	})
	cancel()
	if err != nil {
		p.returnSlots(slots)
		return 0, false, fmt.Errorf("claim deliveries: %w", err)
	}
	if len(ds) > slots {
		// The store broke its contract; hand back what there is no slot for.
		extra := ds[slots:]
		ds = ds[:slots]
		ids := make([]int64, len(extra))
		for i, dl := range extra {
			ids[i] = dl.ID
		}
		p.releaseIDs(hard, ids, "claimed beyond the limit")
	}
	p.returnSlots(slots - len(ds))
	p.gate.charge(p.d.now(), len(ds))
	p.keepingUp.Store(len(ds) < slots)
	for _, dl := range ds {
		attempts.Go(func() { p.attempt(soft, hard, dl) })
	}
	return len(ds), len(ds) == slots, nil
}

func (p *pool) returnSlots(n int) {
	for range n {
		<-p.sem
	}
}

func (p *pool) freeSlots() int { return cap(p.sem) - len(p.sem) }

// returnSlot gives one worker back and tells the loop if it is parked
// waiting for one. A loop idle with workers to spare is not woken: it would
// only find the same due time again.
func (p *pool) returnSlot() {
	p.returnSlots(1)
	if p.parked.Load() {
		p.nudge()
	}
}

// nudge wakes the loop to claim and to look at the next due time again.
func (p *pool) nudge() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// attempt makes one attempt on a claimed delivery and records its outcome,
// or releases the delivery when the relay, not the target, is the reason it
// could not be attempted.
func (p *pool) attempt(soft, hard context.Context, dl event.Delivery) {
	freed := false
	freeSlot := func() {
		if !freed {
			freed = true
			p.returnSlot()
		}
	}
	defer freeSlot()
	if soft.Err() != nil {
		// A released delivery is due again at once.
		defer p.nudge()
		p.release(hard, dl, "shutdown before the attempt started")
		return
	}

	n := dl.Attempts + 1
	at := p.d.now()
	began := time.Now()
	sendCtx, span := p.startAttemptSpan(hard, dl, n)
	p.inFlight.Inc()
	resp := p.sender.send(sendCtx, dl, n, at)
	p.inFlight.Dec()
	took := time.Since(began)
	finished := p.d.now()

	if resp.err != nil && hard.Err() != nil {
		endAttemptSpan(span, nil, codeReleased, resp.err)
		defer p.nudge()
		p.release(hard, dl, "attempt aborted by shutdown")
		return
	}

	result, code := Classify(resp.status, resp.err)
	// A retryable failure is the target's (5xx, 429, timeout, connection);
	// anything else, a 4xx refusal included, shows it answering.
	if p.gate.failures > 0 && p.gate.report(finished, result == event.ResultRetry) {
		p.nudge()
	}
	out := event.Outcome{Result: result, StatusCode: resp.status, At: finished}
	if result == event.ResultRetry && n >= p.target.MaxAttempts {
		out.Result = event.ResultDead
	}
	if out.Result == event.ResultRetry {
		var retryAfter time.Duration
		if honoursRetryAfter(resp.status) {
			retryAfter, _ = RetryAfter(resp.retryAfter, finished)
		}
		out.NextAttemptAt = finished.Add(p.backoff.Delay(n, retryAfter, p.d.jitter()))
	}
	if out.Result != event.ResultDelivered {
		out.Error = code
		var denied *PrivateAddressError
		if errors.As(resp.err, &denied) {
			// Say which address was refused and why, so an operator
			// looking at the delivery need not search the logs.
			out.Error = code + ": " + denied.Error()
		}
	}

	endAttemptSpan(span, &out, code, resp.err)
	p.observe(dl, out, code, took, finished)
	p.logAttempt(dl, n, out, code, took, resp.err)

	// The slot is free once the target has answered: waiting for the
	// outcome's commit would hold up the next attempt for a whole group
	// commit. The delivery stays leased until its outcome is durable, so
	// nobody claims it meanwhile, and Run still waits for the record.
	p.outcomes <- struct{}{}
	defer func() { <-p.outcomes }()
	freeSlot()
	err := p.record(hard, dl, out, began)
	if out.Result == event.ResultRetry {
		// The delivery's next attempt is now on record: the loop may
		// have to wake sooner than it planned.
		p.nudge()
	}
	if err != nil {
		entry := p.log.WithFields(logrus.Fields{"event_key": dl.EventKey, "delivery_id": dl.ID}).WithError(err)
		if errors.Is(err, store.ErrLeaseLost) {
			entry.Warn("outcome not recorded: the lease was lost to another worker")
			return
		}
		entry.Error("record outcome failed; the delivery will be attempted again when its lease expires")
	}
}

func (p *pool) observe(dl event.Delivery, out event.Outcome, code string, took time.Duration, finished time.Time) {
	p.attempts.WithLabelValues(code).Inc()
	p.requestDuration.Observe(took.Seconds())
	switch out.Result {
	case event.ResultDelivered:
		p.delivered.Inc()
		if !dl.CreatedAt.IsZero() {
			p.latency.Observe(max(finished.Sub(dl.CreatedAt), 0).Seconds())
		}
	case event.ResultRetry:
		p.retried.Inc()
	case event.ResultDead:
		p.dead.Inc()
	}
}

// logAttempt writes the one canonical line per attempt. It carries no
// header value, URL or secret.
func (p *pool) logAttempt(dl event.Delivery, n int, out event.Outcome, code string, took time.Duration, err error) {
	if out.Result == event.ResultDelivered && !p.debug {
		return // the line would be dropped; do not build it
	}
	entry := p.log.WithFields(logrus.Fields{
		"event_key":   dl.EventKey,
		"delivery_id": dl.ID,
		"source":      dl.Source,
		"attempt":     n,
		"status":      out.StatusCode,
		"code":        code,
		"duration":    took.Round(time.Microsecond).String(),
	})
	if err != nil {
		entry = entry.WithField("error", errorDetail(err))
	}
	const msg = "delivery.attempted"
	switch out.Result {
	case event.ResultDelivered:
		entry.Debug(msg)
	case event.ResultRetry:
		entry.WithField("next_retry", out.NextAttemptAt.UTC()).Warn(msg)
	default:
		entry.WithField("max_attempts", p.target.MaxAttempts).Error(msg)
	}
}

// release hands a claimed delivery back without charging an attempt.
func (p *pool) release(hard context.Context, dl event.Delivery, reason string) {
	p.log.WithFields(logrus.Fields{
		"event_key": dl.EventKey, "delivery_id": dl.ID, "reason": reason,
	}).Info("delivery.released")
	p.releaseIDs(hard, []int64{dl.ID}, reason)
}

func (p *pool) releaseIDs(hard context.Context, ids []int64, reason string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), storeOpTimeout)
	defer cancel()
	if err := p.d.opts.Store.Release(ctx, p.d.opts.Owner, ids); err != nil {
		p.log.WithError(err).WithFields(logrus.Fields{"delivery_ids": ids, "reason": reason}).
			Warn("release deliveries failed; they become due again when their lease expires")
	}
}

// errorStreak logs a run of store errors once, then at most once per
// interval, and says when the store recovered. It belongs to one loop.
type errorStreak struct {
	log      logrus.FieldLogger
	now      func() time.Time
	interval time.Duration
	count    int
	lastLog  time.Time
}

func (s *errorStreak) fail(err error) {
	s.count++
	now := s.now()
	if s.count > 1 && now.Sub(s.lastLog) < s.interval {
		return
	}
	s.lastLog = now
	s.log.WithError(err).WithField("errors", s.count).Error("store unavailable; deliveries paused, retrying")
}

func (s *errorStreak) ok() {
	if s.count == 0 {
		return
	}
	s.log.WithField("errors", s.count).Infof("store recovered after %d errors", s.count)
	s.count = 0
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TargetState is what the dispatcher knows of a target's gate.
type TargetState struct {
	Paused  bool
	Breaker string
	// OpenUntil is when an open breaker lets a probe through; zero when it
	// is not open.
	OpenUntil time.Time
	RateLimit float64
}

// State returns target's gate state; ok is false for an unknown target.
func (d *Dispatcher) State(target string) (TargetState, bool) {
	p, ok := d.byName[target]
	if !ok {
		return TargetState{}, false
	}
	paused, breaker, until := p.gate.snapshot(d.now())
	return TargetState{Paused: paused, Breaker: breaker, OpenUntil: until, RateLimit: p.target.RateLimit}, true
}

// SetPaused pauses or resumes target on this instance at once (the store
// holds the durable switch; SyncPauses applies it everywhere). A paused
// target keeps its queue: nothing is claimed, handed off or charged.
func (d *Dispatcher) SetPaused(target string, paused bool) bool {
	p, ok := d.byName[target]
	if !ok {
		return false
	}
	if p.gate.setPaused(paused) && !paused {
		p.nudge()
	}
	return true
}

// PauseSource lists the targets paused in the store.
type PauseSource interface {
	PausedTargets(ctx context.Context) ([]string, error)
}

// SyncPauses applies the store's pause switches to this instance every
// interval until ctx ends, so a pause made through another instance (or
// the CLI) holds here within one interval. Store errors keep the last
// known state.
func (d *Dispatcher) SyncPauses(ctx context.Context, src PauseSource, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if names, err := src.PausedTargets(ctx); err == nil {
			paused := make(map[string]bool, len(names))
			for _, n := range names {
				paused[n] = true
			}
			for _, p := range d.pools {
				d.SetPaused(p.target.Name, paused[p.target.Name])
			}
		} else if ctx.Err() == nil {
			d.log.WithError(err).Debug("read paused targets failed; keeping the last known state")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
