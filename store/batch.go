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
}

// CommitFunc writes a batch of ingests in one transaction and returns one
// result per request, in order: nil, ErrDuplicate, or another error. When the
// transaction itself fails it returns that error for every request. A request
// whose key repeats an earlier one in the same batch must get ErrDuplicate.
type CommitFunc func(ctx context.Context, batch []IngestRequest) []error

// Batcher turns concurrent Ingest calls into group commits: while one
// transaction is being written, the requests that arrive queue up and go
// into the next transaction together, so durability costs one fsync per
// batch rather than one per webhook. A lone request is committed at once;
// there is no timer.
type Batcher struct {
	commit   CommitFunc
	maxBatch int
	queue    chan *pending
	done     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.RWMutex
	closed   bool
}

type pending struct {
	req IngestRequest
	ctx context.Context
	res chan error
}

// NewBatcher starts `committers` goroutines (at least one) that each commit
// up to maxBatch queued requests per transaction. Use one committer for a
// single-writer database such as SQLite.
func NewBatcher(commit CommitFunc, maxBatch, committers int) *Batcher {
	if maxBatch < 1 {
		maxBatch = 1
	}
	if committers < 1 {
		committers = 1
	}
	b := &Batcher{
		commit:   commit,
		maxBatch: maxBatch,
		queue:    make(chan *pending, maxBatch*committers),
		done:     make(chan struct{}),
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
func (b *Batcher) Do(ctx context.Context, req IngestRequest) error {
	b.closeMu.RLock()
	if b.closed {
		b.closeMu.RUnlock()
		return ErrClosed
	}
	p := &pending{req: req, ctx: ctx, res: make(chan error, 1)}
	select {
	case b.queue <- p:
		b.closeMu.RUnlock()
	case <-ctx.Done():
		b.closeMu.RUnlock()
		return fmt.Errorf("queue ingest: %w", ctx.Err())
	}
	select {
	case err := <-p.res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for commit: %w", ctx.Err())
	}
}

// Close commits what is queued, then stops the committers.
func (b *Batcher) Close() {
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

func (b *Batcher) loop() {
	defer b.wg.Done()
	batch := make([]*pending, 0, b.maxBatch)
	reqs := make([]IngestRequest, 0, b.maxBatch)
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
