package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
)

// IngestRequest is one Ingest call waiting for a group commit.
type IngestRequest struct {
	Event   event.Event
	Targets []string
	// Handoff, when set, leases the deliveries of its targets (see
	// HandoffIngester); the committed, leased deliveries go to Leased.
	Handoff *HandoffLease
	Leased  []event.Delivery
}

// CommitFunc writes a batch of requests in one transaction and returns one
// result per request, in order. For ingests: nil, ErrDuplicate, or another
// error, and a request whose key repeats an earlier one in the same batch
// must get ErrDuplicate. When the transaction itself fails it returns that
// error for every request.
type CommitFunc[R any] func(ctx context.Context, batch []R) []error

// Batcher turns concurrent calls (ingests, delivery outcomes) into group
// commits: while one transaction is being written, the requests that arrive
// queue up and go into the next transaction together, so durability costs
// one fsync per batch rather than one per call. A lone request is committed
// at once, unless the batcher lingers (NewLingeringBatcher).
type Batcher[R any] struct {
	commit   CommitFunc[R]
	maxBatch int
	// linger is how long a batch that is not full waits for more requests
	// (up to lingerMax of them); zero commits what is there at once.
	linger    time.Duration
	lingerMax int
	queue     chan *pending[R]
	// collectMu lets one committer at a time take requests off the queue,
	// so that requests arriving together are not split among committers
	// that each commit a few.
	collectMu sync.Mutex
	wg        sync.WaitGroup
	closeMu   sync.RWMutex
	closed    bool
}

type pending[R any] struct {
	req R
	ctx context.Context
	res chan error
}

// NewBatcher starts `committers` goroutines (at least one) that each commit
// up to maxBatch queued requests per transaction. Use one committer for a
// single-writer database such as SQLite.
func NewBatcher[R any](commit CommitFunc[R], maxBatch, committers int) *Batcher[R] {
	return NewLingeringBatcher(commit, maxBatch, committers, 0, 0)
}

// NewLingeringBatcher is NewBatcher whose batches, when not full, wait up to
// linger for more requests, up to lingerMax (capped at maxBatch). For calls
// nobody waits on, such as delivery outcomes recorded after the worker was
// freed: three outcomes of one webhook, which arrive within a millisecond of
// each other, then cost one transaction and one WAL flush, not three.
func NewLingeringBatcher[R any](commit CommitFunc[R], maxBatch, committers int, linger time.Duration, lingerMax int) *Batcher[R] {
	if maxBatch < 1 {
		maxBatch = 1
	}
	if committers < 1 {
		committers = 1
	}
	b := &Batcher[R]{
		commit:    commit,
		maxBatch:  maxBatch,
		linger:    linger,
		lingerMax: min(max(lingerMax, 1), maxBatch),
		queue:     make(chan *pending[R], maxBatch*committers),
	}
	for i := 0; i < committers; i++ {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

// Do queues req and waits for its commit. If ctx ends first it returns the
// context's error; the request may still commit, which a retry of the same
// event then sees as a duplicate.
func (b *Batcher[R]) Do(ctx context.Context, req R) error {
	b.closeMu.RLock()
	if b.closed {
		b.closeMu.RUnlock()
		return ErrClosed
	}
	p := &pending[R]{req: req, ctx: ctx, res: make(chan error, 1)}
	select {
	case b.queue <- p:
		b.closeMu.RUnlock()
	case <-ctx.Done():
		b.closeMu.RUnlock()
		return fmt.Errorf("queue for commit: %w", ctx.Err())
	}
	select {
	case err := <-p.res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for commit: %w", ctx.Err())
	}
}

// Close commits what is queued, then stops the committers.
func (b *Batcher[R]) Close() {
	b.closeMu.Lock()
	if b.closed {
		b.closeMu.Unlock()
		return
	}
	b.closed = true
	close(b.queue)
	b.closeMu.Unlock()
	b.wg.Wait()
}

func (b *Batcher[R]) loop() {
	defer b.wg.Done()
	batch := make([]*pending[R], 0, b.maxBatch)
	reqs := make([]R, 0, b.maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var ok bool
		if batch, ok = b.collect(batch[:0], timer); !ok {
			return
		}
		// Drop requests whose callers gave up before the commit started:
		// they got an error already and WAMM will retry them.
		live := batch[:0]
		for _, p := range batch {
			if p.ctx.Err() != nil {
				p.res <- fmt.Errorf("wait for commit: %w", p.ctx.Err())
				continue
			}
			live = append(live, p)
		}
		if len(live) == 0 {
			continue
		}
		reqs = reqs[:0]
		for _, p := range live {
			reqs = append(reqs, p.req)
		}
		// The commit runs on its own context: once started it must finish
		// (or fail) as a whole regardless of one caller leaving.
		results := b.commit(context.Background(), reqs)
		for i, p := range live {
			var err error
			if i < len(results) {
				err = results[i]
			} else {
				err = fmt.Errorf("commit batch: no result for request %d", i)
			}
			p.res <- err
		}
	}
}

// collect takes the next batch off the queue: what is queued, and with
// linger what arrives meanwhile. ok is false once the queue is closed and
// empty.
func (b *Batcher[R]) collect(batch []*pending[R], timer *time.Timer) (_ []*pending[R], ok bool) {
	b.collectMu.Lock()
	defer b.collectMu.Unlock()
	first, ok := <-b.queue
	if !ok {
		return batch, false
	}
	batch = append(batch, first)
fill:
	for len(batch) < b.maxBatch {
		select {
		case p, ok := <-b.queue:
			if !ok {
				return batch, true
			}
			batch = append(batch, p)
		default:
			break fill
		}
	}
	if b.linger <= 0 || len(batch) >= b.lingerMax {
		return batch, true
	}
	timer.Reset(b.linger)
	defer timer.Stop()
	for len(batch) < b.lingerMax {
		select {
		case p, ok := <-b.queue:
			if !ok {
				return batch, true
			}
			batch = append(batch, p)
		case <-timer.C:
			return batch, true
		}
	}
	return batch, true
}
