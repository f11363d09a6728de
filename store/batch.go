package store

import (
	"context"
	"fmt"
	"sync"

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
// at once; there is no timer.
type Batcher[R any] struct {
	commit   CommitFunc[R]
	maxBatch int
	queue    chan *pending[R]
	wg       sync.WaitGroup
	closeMu  sync.RWMutex
	closed   bool
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
	if maxBatch < 1 {
		maxBatch = 1
	}
	if committers < 1 {
		committers = 1
	}
	b := &Batcher[R]{
		commit:   commit,
		maxBatch: maxBatch,
		queue:    make(chan *pending[R], maxBatch*committers),
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
	for first := range b.queue {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < b.maxBatch {
			select {
			case p, ok := <-b.queue:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
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
