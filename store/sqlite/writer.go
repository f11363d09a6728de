package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wamm-relay/wamm-relay/store"
)

// DefaultMaxWriteBatch caps the operations (ingests and recorded outcomes
// together) one group commit writes.
const DefaultMaxWriteBatch = 1024

// writeOp is one Ingest, Record or Claim waiting for a group commit;
// exactly one of ingest, record and claim is set.
type writeOp struct {
	ingest *store.IngestRequest
	record *recordRequest
	claim  *claimRequest
	ctx    context.Context
	res    chan error
	// state settles, for a handoff, who acts on a commit its caller may
	// have given up on: the writer (opPending -> opTaken, then it takes the
	// leases and the caller waits for its answer) or the caller
	// (opPending -> opAbandoned, then the writer leaves the deliveries
	// unleased and wakes the claimers).
	state atomic.Int32
}

const (
	opPending int32 = iota
	opTaken
	opAbandoned
)

// writer turns concurrent Ingest, Record and Claim calls into group commits: while
// one transaction is being written and fsynced, the calls that arrive queue
// up and go into the next transaction together, so durability costs one
// fsync per batch rather than one per webhook or per delivery attempt. A
// lone ingest or claim is committed at once; only outcomes alone linger a
// little (see lingerFor). SQLite has one writer, so there is one committer;
// while it is idle with outcomes not yet synced, it syncs them once their
// time is up (flushIn, flush).
//
// Ingests and outcomes share transactions: a delivery worker that waits for
// its outcome's fsync and a webhook that waits for its ingest's fsync can
// wait for the same one. The claims of a batch run first and write nothing
// (leases live in memory), so a worker waiting for work never waits for the
// disk; running them on this goroutine orders them with the commits that
// drop and take leases.
type writer struct {
	commit func(ctx context.Context, ops []*writeOp, durable bool) []error
	// flushIn says how long the committer may stay idle before flush must
	// make earlier commits durable; ok is false when nothing waits.
	flushIn func() (in time.Duration, ok bool)
	flush   func()
	// afterBatch, when set, runs after each batch was answered, before the
	// next is taken.
	afterBatch func()
	maxIngests int
	maxOps     int
	queue      chan *writeOp
	wg         sync.WaitGroup
	closeMu    sync.RWMutex
	closed     bool
}

func newWriter(commit func(ctx context.Context, ops []*writeOp, durable bool) []error,
	flushIn func() (time.Duration, bool), flush, afterBatch func(), maxIngests, maxOps int) *writer {
	w := &writer{
		commit:     commit,
		flushIn:    flushIn,
		flush:      flush,
		afterBatch: afterBatch,
		maxIngests: maxIngests,
		maxOps:     max(maxOps, maxIngests),
		queue:      make(chan *writeOp, max(maxOps, maxIngests)),
	}
	w.wg.Add(1)
	go w.loop()
	return w
}

// do queues op and waits for its commit. If ctx ends first it returns the
// context's error; the operation may still commit (a retried ingest then
// sees a duplicate; an outcome is simply recorded).
func (w *writer) do(ctx context.Context, op *writeOp) error {
	op.ctx = ctx
	op.res = make(chan error, 1)
	w.closeMu.RLock()
	if w.closed {
		w.closeMu.RUnlock()
		return store.ErrClosed
	}
	select {
	case w.queue <- op:
		w.closeMu.RUnlock()
	case <-ctx.Done():
		w.closeMu.RUnlock()
		return fmt.Errorf("queue write: %w", ctx.Err())
	}
	select {
	case err := <-op.res:
		return err
	case <-ctx.Done():
		if op.state.CompareAndSwap(opPending, opAbandoned) {
			return fmt.Errorf("wait for commit: %w", ctx.Err())
		}
		// The committer has taken the operation on: its answer is what
		// happened, and it is on its way.
		return <-op.res
	}
}

// close commits what is queued, then stops the committer.
func (w *writer) close() {
	w.closeMu.Lock()
	if w.closed {
		w.closeMu.Unlock()
		return
	}
	w.closed = true
	close(w.queue)
	w.closeMu.Unlock()
	w.wg.Wait()
}

func (w *writer) loop() {
	defer w.wg.Done()
	batch := make([]*writeOp, 0, w.maxOps)
	var claims, durable []*writeOp
	var carry *writeOp // the ingest that did not fit the last batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var first *writeOp
		if carry != nil {
			first, carry = carry, nil
		} else {
			var ok bool
			if first, ok = w.next(timer); !ok {
				if _, due := w.flushIn(); due {
					w.flush()
				}
				return
			}
		}
		batch = append(batch[:0], first)
		ingests := 0
		if first.ingest != nil {
			ingests++
		}
	fill:
		for len(batch) < w.maxOps {
			select {
			case op, ok := <-w.queue:
				if !ok {
					break fill
				}
				if op.ingest != nil {
					if ingests == w.maxIngests {
						carry = op
						break fill
					}
					ingests++
				}
				batch = append(batch, op)
			default:
				break fill
			}
		}
		if ingests == 0 && onlyOutcomes(batch) && len(batch) < lingerOps {
			carry = w.linger(&batch, &ingests, timer)
		}
		// Drop calls whose callers gave up before the commit started: they
		// got an error already.
		live := batch[:0]
		for _, op := range batch {
			if op.ctx.Err() != nil {
				op.res <- fmt.Errorf("wait for commit: %w", op.ctx.Err())
				continue
			}
			live = append(live, op)
		}
		if len(live) == 0 {
			continue
		}
		// Claims go first: they only read. The rest (ingests and outcomes)
		// share the durable commit. Both run on their own context: once
		// started they must finish (or fail) as a whole regardless of one
		// caller leaving.
		claims, durable = splitClaims(live, claims[:0], durable[:0])
		w.commitAndAnswer(claims, false)
		w.commitAndAnswer(durable, true)
		if w.afterBatch != nil {
			w.afterBatch()
		}
	}
}

// next waits for the next operation. While earlier commits wait to be
// made durable, it waits no longer than they may, and flushes them.
func (w *writer) next(timer *time.Timer) (*writeOp, bool) {
	for {
		in, ok := w.flushIn()
		if !ok {
			op, ok := <-w.queue
			return op, ok
		}
		if in <= 0 {
			w.flush()
			continue
		}
		timer.Reset(in)
		select {
		case op, ok := <-w.queue:
			timer.Stop()
			return op, ok
		case <-timer.C:
		}
	}
}

// A batch of nothing but outcomes waits up to lingerFor for more, up to
// lingerOps: nobody waits on an outcome (the worker is free once the target
// answered, and most outcome commits skip the fsync), while every commit
// costs its transaction and the WAL frames of the pages it touched, which
// ten commits of three outcomes pay ten times over. An ingest or a claim
// ends the wait at once, so neither is held up.
const (
	lingerFor = 2 * time.Millisecond
	lingerOps = 64
)

// linger adds to *batch what arrives within lingerFor, up to lingerOps,
// stopping at the first ingest or claim. It returns an ingest that did not
// fit the batch.
func (w *writer) linger(batch *[]*writeOp, ingests *int, timer *time.Timer) (carry *writeOp) {
	timer.Reset(lingerFor)
	defer timer.Stop()
	for len(*batch) < min(lingerOps, w.maxOps) {
		select {
		case op, ok := <-w.queue:
			if !ok {
				return nil
			}
			if op.ingest != nil {
				if *ingests == w.maxIngests {
					return op
				}
				*ingests++
			}
			*batch = append(*batch, op)
			if op.record == nil {
				return nil
			}
		case <-timer.C:
			return nil
		}
	}
	return nil
}

func onlyOutcomes(ops []*writeOp) bool {
	for _, op := range ops {
		if op.record == nil {
			return false
		}
	}
	return true
}

// splitClaims sorts ops into claims and the rest, keeping their order.
func splitClaims(ops, claims, rest []*writeOp) ([]*writeOp, []*writeOp) {
	for _, op := range ops {
		if op.claim != nil {
			claims = append(claims, op)
		} else {
			rest = append(rest, op)
		}
	}
	return claims, rest
}

func (w *writer) commitAndAnswer(ops []*writeOp, durable bool) {
	if len(ops) == 0 {
		return
	}
	results := w.commit(context.Background(), ops, durable)
	for i, op := range ops {
		var err error
		if i < len(results) {
			err = results[i]
		} else {
			err = fmt.Errorf("commit batch: no result for operation %d", i)
		}
		op.res <- err
	}
}

// stmts are the statements of the hot paths (group commit and claim),
// prepared once on the writer connection and bound to each transaction:
// parsing the claim query alone cost a fifth of the store's CPU.
type stmts struct {
	insEvent, insDelivery, record, exists, byIDs, insAttempt *sql.Stmt

	mu       sync.Mutex
	claimDue map[string]*sql.Stmt // by target; see claimDueSQL
}

// claimDueFor returns the claim query of target, preparing it on db the
// first time.
func (s *stmts) claimDueFor(ctx context.Context, db *sql.DB, target string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.claimDue[target]; ok {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, fmt.Sprintf(claimDueSQL, sqlString(target)))
	if err != nil {
		return nil, fmt.Errorf("prepare claim of %s: %w", target, err)
	}
	s.claimDue[target] = st
	return st, nil
}

func prepareStmts(ctx context.Context, db *sql.DB) (*stmts, error) {
	s := stmts{claimDue: map[string]*sql.Stmt{}}
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.insEvent, `
			INSERT INTO events (key, kind, source, msg_id, state, body, received_at, channel, chat)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (key) DO NOTHING`},
		{&s.insDelivery, `
			INSERT INTO deliveries (event_id, target, status, next_attempt_at, created_at, updated_at)
			VALUES (?1, ?2, 'pending', ?3, ?3, ?3)`},
		{&s.record, recordSQL},
		{&s.insAttempt, insAttemptSQL},
		{&s.exists, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = ?)`},
		{&s.byIDs, byIDsSQL},
	} {
		st, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("prepare statement: %w", err)
		}
		*p.dst = st
	}
	return &s, nil
}

func (s *stmts) close() {
	for _, st := range []*sql.Stmt{s.insEvent, s.insDelivery, s.record, s.exists, s.byIDs, s.insAttempt} {
		if st != nil {
			_ = st.Close()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.claimDue {
		_ = st.Close()
	}
}

// commitWrites is the writer's commit function. With durable, the ingests
// and outcomes of a batch go into one transaction and one fsync: a
// duplicate ingest, or an outcome whose lease is lost or whose delivery does
// not exist, gets its own error and writes nothing; any other failure rolls
// the batch back and fails every call in it. Once committed, the outcomes'
// leases are dropped and the handoffs' leases taken. Without durable, the
// batch is claims, which only read and lease in memory.
func (s *Store) commitWrites(ctx context.Context, ops []*writeOp, durable bool) []error {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	// The statements run on a context that cannot end: the driver starts a
	// watcher goroutine per statement for one that can, a cost paid several
	// times per event. A transaction still ends at commitTimeout, rolled
	// back by database/sql.
	bg := context.WithoutCancel(ctx)

	results := make([]error, len(ops))
	if !durable {
		for i, op := range ops {
			results[i] = s.claimOne(bg, op.claim)
		}
		return results
	}
	// Outcomes alone need not wait for the disk: they reach the operating
	// system at once, and the next synced commit (an ingest's, or this
	// pacing's) makes them durable too.
	sync := s.outcomeSync < 0 || time.Since(s.lastSync) >= s.outcomeSync
	for _, op := range ops {
		sync = sync || op.ingest != nil
	}
	commit := s.unsyncedTx
	if sync {
		commit = s.writeTx
	}
	started := time.Now()
	wake := false
	err := commit(ctx, func(tx *sql.Tx) error {
		ins := ingestStmts{
			event:    tx.StmtContext(bg, s.stmts.insEvent),
			delivery: tx.StmtContext(bg, s.stmts.insDelivery),
		}
		record := tx.StmtContext(bg, s.stmts.record)
		exists := tx.StmtContext(bg, s.stmts.exists)
		// Bound to the transaction only when a failure needs it.
		var attemptStmt *sql.Stmt
		attempt := func() *sql.Stmt {
			if attemptStmt == nil {
				attemptStmt = tx.StmtContext(bg, s.stmts.insAttempt)
			}
			return attemptStmt
		}
		wake = false
		for i, op := range ops {
			var err error
			switch {
			case op.ingest != nil:
				var unleased bool
				_, unleased, err = ingestOne(bg, ins, op.ingest)
				if unleased {
					wake = true
				}
			case op.record != nil:
				err = s.recordOne(bg, record, exists, attempt, op.record)
			}
			if err != nil && !isOwnError(err) {
				return err
			}
			results[i] = err
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("commit write batch: %w", err)
		for i := range results {
			results[i] = err
		}
		return results
	}
	if sync {
		s.lastSync = started
	}
	s.unsynced.Store(!sync)
	s.ckpt.committed()
	now := ms(time.Now())
	var done []int64
	for i, op := range ops {
		switch {
		case results[i] != nil:
		case op.record != nil:
			done = append(done, op.record.id)
		case op.ingest != nil && op.ingest.Handoff != nil && len(op.ingest.Leased) > 0:
			if !op.state.CompareAndSwap(opPending, opTaken) {
				// Its caller gave up and will not attempt them: leave
				// them to the claimers.
				op.ingest.Leased = nil
				wake = true
				continue
			}
			h := op.ingest.Handoff
			s.leases.take(deliveryIDs(op.ingest.Leased), h.Owner, ms(h.Until), now)
		}
	}
	s.leases.drop(done)
	if wake {
		s.wake.Notify()
	}
	return results
}
