package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/wamm-relay/wamm-relay/store"
)

// errLocked: another process delivers from this database file.
var errLocked = errors.New("another process is delivering from this database (its lock file is held)")

// claimLock is an exclusive lock on a file beside the database, taken by the
// first Claim or handoff and held until Close. Leases live in memory, so two
// processes delivering from one file would send every delivery twice; other
// commands (deliveries list and replay, reconcile --once) open the file
// without taking it and run beside a serving relay.
type claimLock struct {
	path string

	mu     sync.Mutex
	file   *os.File
	closed bool // by Close: a call racing it must not take the lock again
}

// lockPath names the lock file after the database file's real path, so two
// relays that reach one file through a symlink to it still exclude each
// other (SQLite resolves symlinks too, so they share one WAL). A hard link
// is not caught.
func lockPath(dbPath string) string {
	if real, err := filepath.EvalSymlinks(dbPath); err == nil {
		dbPath = real
	}
	return dbPath + "-deliver.lock"
}

// hold takes the lock if this store does not hold it yet.
func (l *claimLock) hold() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return store.ErrClosed
	}
	if l.file != nil {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open delivery lock %s: %w", l.path, err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("take delivery lock %s: %w", l.path, err)
	}
	l.file = f
	return nil
}

func (l *claimLock) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.file == nil {
		return nil
	}
	err := l.file.Close() // closing the descriptor releases the lock
	l.file = nil
	return err
}
