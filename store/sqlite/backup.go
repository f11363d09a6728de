package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/wamm-relay/wamm-relay/store"
)

var _ store.Backuper = (*Store)(nil)

// Backup writes a consistent copy of the database to path with VACUUM INTO:
// one read transaction, so in WAL mode it runs beside a serving relay (whose
// writes go on meanwhile and are simply not in the copy) and the copy is a
// compact, ordinary database file, openable by Open like the original. It
// refuses a path that exists, so a backup never overwrites anything. The
// copy is made readable by its owner only, like the store.
func (s *Store) Backup(ctx context.Context, path string) error {
	if err := s.open("back up store"); err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("back up store to %s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("back up store to %s: %w", path, err)
	}
	// On a reader connection: VACUUM INTO only reads this database, so the
	// writer (and the group commits queued on it) never waits for the copy.
	// Readers are query_only, which SQLite applies to VACUUM INTO's output
	// too: lift it on this one connection for the copy.
	conn, err := s.r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("back up store to %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA query_only = 0"); err != nil {
		return fmt.Errorf("back up store to %s: %w", path, err)
	}
	_, verr := conn.ExecContext(ctx, "VACUUM INTO ?", path)
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA query_only = 1"); err != nil {
		// Never hand a writable connection back to the read pool.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	if verr != nil {
		return fmt.Errorf("back up store to %s: %w", path, verr)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("back up store to %s: %w", path, err)
	}
	return nil
}
