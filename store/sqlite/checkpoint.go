package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/store"
)

const (
	// checkpointEvery is how long the checkpointer lets commits gather in
	// the WAL before it copies them into the database file: one checkpoint
	// (and one fsync of the database file) per interval, not per 1,000
	// pages as SQLite's automatic checkpoint does.
	checkpointEvery = 250 * time.Millisecond
	// walFramesLimit is the WAL length, in frames (pages), past which the
	// writer checkpoints between two batches itself. A checkpoint beside a
	// busy writer rarely catches up with it, and the WAL restarts from its
	// beginning only once one has; the writer's own checkpoint always
	// does, so the file stays bounded under any load.
	walFramesLimit = 8192
)

// checkpointer copies committed WAL frames into the database file on a
// connection of its own, beside the writer. The writer connection has
// automatic checkpoints off (see dsn): otherwise the commit that crosses
// SQLite's threshold copies the WAL and fsyncs the database file before
// the webhooks waiting on it get their 200, which with one sequential
// sender was 2 % of the acks, 3 to 15 ms each. A commit is durable once its
// frames are synced in the WAL; a checkpoint only moves them, so no ack
// means less.
type checkpointer struct {
	db     *sql.DB
	log    logrus.FieldLogger
	every  time.Duration
	limit  int
	disk   *diskState
	poke   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// inline asks the writer to checkpoint between batches (see
	// walFramesLimit).
	inline atomic.Bool
	// runs and inlineRuns count checkpoints, for tests and benchmarks.
	runs, inlineRuns atomic.Int64
}

func newCheckpointer(db *sql.DB, log logrus.FieldLogger, disk *diskState, every time.Duration, limit int) *checkpointer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{db: db, log: log, disk: disk, every: every, limit: limit,
		poke: make(chan struct{}, 1), cancel: cancel}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(ctx)
	}()
	return c
}

// committed tells the checkpointer that the WAL has new frames.
func (c *checkpointer) committed() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.poke:
		}
		timer.Reset(c.every)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		frames, err := checkpoint(ctx, c.db)
		if errors.Is(err, errCheckpointBusy) {
			continue // the writer's own is running; the next commit pokes again
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// The frames stay in the WAL, where they are durable; the next
			// commit pokes again.
			if err := c.disk.check(err); !errors.Is(err, store.ErrDiskFull) {
				c.log.WithError(err).Warn("sqlite: checkpoint failed; the WAL keeps the commits")
			}
			continue
		}
		c.runs.Add(1)
		if frames > c.limit {
			c.inline.Store(true)
		}
	}
}

// betweenBatches is the writer's, called after it answered a batch: when
// the WAL has outgrown the limit, it checkpoints on the writer connection,
// where no commit can land meanwhile, so the checkpoint catches up and the
// next commit starts the WAL over.
func (c *checkpointer) betweenBatches(w *sql.DB) {
	if !c.inline.Load() {
		return
	}
	c.inline.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if _, err := checkpoint(ctx, w); err != nil {
		if errors.Is(err, errCheckpointBusy) {
			c.inline.Store(true) // the checkpointer's was running: next batch
			return
		}
		if err := c.disk.check(err); !errors.Is(err, store.ErrDiskFull) {
			c.log.WithError(err).Warn("sqlite: writer checkpoint failed; the WAL keeps the commits")
		}
		return
	}
	c.inlineRuns.Add(1)
}

func (c *checkpointer) close() {
	c.cancel()
	c.wg.Wait()
}

// checkpoint runs a passive checkpoint on db and returns the WAL's length
// in frames. A passive checkpoint takes no lock a writer or reader waits
// on; it copies what no reader still needs from the WAL.
func checkpoint(ctx context.Context, db *sql.DB) (walFrames int, err error) {
	var busy, log, copied int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &copied); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		// Another checkpoint (the other connection's) held the lock; SQLite
		// reports -1 frames then.
		return 0, errCheckpointBusy
	}
	return log, nil
}

// errCheckpointBusy: the other connection was checkpointing; nothing to do.
var errCheckpointBusy = errors.New("checkpoint: another checkpoint is running")
