package sqlite

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	sqlitedrv "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/wamm-relay/wamm-relay/store"
)

// diskFullLogEvery spaces the reminders while the disk stays full: the
// first failed write is logged at once, then a webhook a second must not
// become a log line a second.
const diskFullLogEvery = time.Minute

// isDiskFull reports whether err means there is no space left to write:
// SQLITE_FULL (what SQLite makes of ENOSPC on a WAL, journal or database
// write, and of max_page_count) or ENOSPC/EDQUOT from a call of our own.
func isDiskFull(err error) bool {
	if se, ok := errors.AsType[*sqlitedrv.Error](err); ok && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return true
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskState remembers that writes fail for want of space, so that the
// store logs the change rather than every failed write, Ping can report it
// (reads go on working on a full disk) and the first write that succeeds
// again says so.
type diskState struct {
	log  logrus.FieldLogger
	path string
	now  func() time.Time

	full    atomic.Bool // read on every commit; the rest under mu
	mu      sync.Mutex
	since   time.Time
	lastLog time.Time
	failed  int
}

// check classifies the outcome of one write transaction: a disk-full error
// comes back wrapped with store.ErrDiskFull (and counted), a success ends a
// disk-full spell; other errors pass through untouched.
func (d *diskState) check(err error) error {
	if err == nil {
		if d.full.Load() {
			d.recovered()
		}
		return nil
	}
	if !isDiskFull(err) {
		return err
	}
	d.failedWrite(err)
	return fmt.Errorf("%w: %w", store.ErrDiskFull, err)
}

func (d *diskState) failedWrite(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if !d.full.Load() {
		d.full.Store(true)
		d.since, d.failed = now, 0
	}
	d.failed++
	if d.failed > 1 && now.Sub(d.lastLog) < diskFullLogEvery {
		return
	}
	d.lastLog = now
	d.log.WithError(err).WithFields(logrus.Fields{
		"path": d.path, "failed_writes": d.failed, "since": d.since.UTC().Format(time.RFC3339),
	}).Error("store: disk full; webhooks answered 503 until space returns")
}

func (d *diskState) recovered() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.full.Swap(false) {
		return
	}
	d.log.WithFields(logrus.Fields{
		"path": d.path, "failed_writes": d.failed, "full_for": d.now().Sub(d.since).Round(time.Millisecond).String(),
	}).Info("store: writes succeed again; disk space returned")
}

// isFull reports whether the last write failed for want of space.
func (d *diskState) isFull() bool { return d.full.Load() }
