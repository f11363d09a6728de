package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	sqlitedrv "modernc.org/sqlite" // also registers the "sqlite" database/sql driver

	"github.com/wamm-relay/wamm-relay/store"
)

const (
	// DefaultBusyTimeout is how long a connection waits for a lock another
	// process holds on the file before failing with SQLITE_BUSY.
	DefaultBusyTimeout = 5 * time.Second
	// DefaultMaxBatch is how many ingests at most share one transaction.
	DefaultMaxBatch = 256

	// commitTimeout bounds one group commit: the batcher commits on a
	// background context, and a wedged disk must fail the waiting webhooks
	// (503, WAMM retries) rather than hang them.
	commitTimeout = 30 * time.Second
	// readConns is the size of the read pool; WAL lets readers run beside
	// the one writer.
	readConns = 4
	// idChunk caps the ids bound into one IN (...) list.
	idChunk = 500
)

// Options configures Open.
type Options struct {
	// Path is the database file. Its directory is created when missing.
	Path string
	// Logger receives the store's few log lines (migrations, open).
	Logger logrus.FieldLogger
	// BusyTimeout is how long to wait on a lock held by another process;
	// zero means DefaultBusyTimeout.
	BusyTimeout time.Duration
	// MaxBatch caps the ingests per group commit; zero means DefaultMaxBatch.
	// Recorded outcomes share those commits, up to DefaultMaxWriteBatch
	// operations in all.
	MaxBatch int
	// OutcomeSync bounds how long a recorded outcome may stay unsynced: a
	// commit of nothing but outcomes skips the fsync unless the last
	// synced commit is older than this. Zero means DefaultOutcomeSync; a
	// negative value syncs every outcome commit. An ingest always syncs.
	OutcomeSync time.Duration
}

// DefaultOutcomeSync: see Options.OutcomeSync. An outcome reaches the
// operating system at once, so a crash of the relay loses none; only a
// crash of the machine within this window can make its deliveries go out
// again (at least once, never lost).
const DefaultOutcomeSync = 100 * time.Millisecond

func (o Options) validate() error {
	switch {
	case o.Path == "":
		return errors.New("sqlite options: Path is empty")
	case strings.HasPrefix(o.Path, ":memory:") || strings.HasPrefix(o.Path, "file:"):
		return fmt.Errorf("sqlite options: Path %q must be a plain file path", o.Path)
	case strings.ContainsRune(o.Path, '?'):
		return fmt.Errorf("sqlite options: Path %q must not contain '?'", o.Path)
	case o.Logger == nil:
		return errors.New("sqlite options: Logger is nil")
	case o.BusyTimeout < 0:
		return fmt.Errorf("sqlite options: BusyTimeout %s is negative", o.BusyTimeout)
	case o.MaxBatch < 0:
		return fmt.Errorf("sqlite options: MaxBatch %d is negative", o.MaxBatch)
	}
	return nil
}

// Store is the SQLite outbox. It is safe for concurrent use.
type Store struct {
	log logrus.FieldLogger
	w   *sql.DB // exactly one connection: every write, in order
	r   *sql.DB // read pool for List, stats and lookups
	// writer group-commits Ingest and Record through stmts.
	writer *writer
	stmts  *stmts
	// nextDue is NextDue's statement, on the read pool (see nextDueSQL).
	nextDue *sql.Stmt
	wake    *store.Signal
	// leases are the deliveries in flight, in memory; lock makes this
	// process the only one delivering from the file.
	leases *leaseTable
	lock   *claimLock
	// outcomeSync, lastSync and unsynced (the last two the writer
	// goroutine's) pace the fsyncs of outcome-only commits.
	outcomeSync time.Duration
	lastSync    time.Time
	unsynced    atomic.Bool
	// schemaVersion is rewritten by flush: a write of one page that makes
	// a synced commit of its own.
	schemaVersion int
	// disk says whether writes fail for want of space (see diskState).
	disk *diskState
	// ckptDB is the checkpointer's connection; see checkpointer.
	ckptDB *sql.DB
	ckpt   *checkpointer

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at opts.Path and migrates its
// schema to the latest version.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.BusyTimeout == 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	useFdatasync(opts.Logger)
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o750); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	// The store holds message texts and phone numbers: create it readable
	// by its owner only (SQLite gives the -wal and -shm files the same mode).
	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create store file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("create store file: %w", err)
	}

	// undo closes, newest first, what Open has opened, when a later step
	// fails.
	var undo []func()
	fail := func(err error) (*Store, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}

	w, err := openSingle(opts.Path, opts.BusyTimeout)
	if err != nil {
		return nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	undo = append(undo, func() { _ = w.Close() })
	if err := migrate(ctx, w, opts.Logger); err != nil {
		return fail(fmt.Errorf("migrate %s: %w", opts.Path, err))
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail(fmt.Errorf("read journal mode: %w", err))
	}
	if !strings.EqualFold(mode, "wal") {
		opts.Logger.WithField("journal_mode", mode).Warn("sqlite store is not in WAL mode; readers will wait for writers")
	}

	r, err := sql.Open("sqlite", dsn(opts.Path, opts.BusyTimeout, true))
	if err != nil {
		return fail(fmt.Errorf("open sqlite readers: %w", err))
	}
	undo = append(undo, func() { _ = r.Close() })
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	if err := r.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("open sqlite readers: %w", err))
	}

	st, err := prepareStmts(ctx, w)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, st.close)
	nextDue, err := r.PrepareContext(ctx, nextDueSQL)
	if err != nil {
		return fail(fmt.Errorf("prepare next-due query: %w", err))
	}
	undo = append(undo, func() { _ = nextDue.Close() })
	s := &Store{log: opts.Logger, w: w, r: r, stmts: st, nextDue: nextDue, wake: store.NewSignal(),
		leases: newLeaseTable(), lock: &claimLock{path: lockPath(opts.Path)},
		outcomeSync: opts.OutcomeSync,
		disk:        &diskState{log: opts.Logger, path: opts.Path, now: time.Now}}
	if s.outcomeSync == 0 {
		s.outcomeSync = DefaultOutcomeSync
	}
	if err := w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&s.schemaVersion); err != nil {
		return fail(fmt.Errorf("read schema version: %w", err))
	}
	if s.ckptDB, err = openSingle(opts.Path, opts.BusyTimeout); err != nil {
		return fail(fmt.Errorf("open sqlite checkpointer: %w", err))
	}
	s.ckpt = newCheckpointer(s.ckptDB, opts.Logger, s.disk, checkpointEvery, walFramesLimit)
	s.writer = newWriter(s.commitWrites, s.flushIn, s.flush, func() { s.ckpt.betweenBatches(s.w) },
		opts.MaxBatch, DefaultMaxWriteBatch)
	return s, nil
}

// openSingle opens path as a pool of exactly one writable connection, kept
// for good: the writer's, whose transactions must run in order, and the
// checkpointer's.
func openSingle(path string, busy time.Duration) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path, busy, false))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// useFdatasync makes SQLite sync with fdatasync(2) rather than fsync(2),
// process-wide, as SQLite's own Linux builds do (the transpiled library
// keeps the source default). fdatasync writes the data and the size, all a
// commit needs read back; it skips the file's timestamps, whose update
// made every fsync of the WAL wait for a journal commit of ext4 too. Where
// the call is missing (macOS) fsync stays.
func useFdatasync(log logrus.FieldLogger) {
	if _, err := sqlitedrv.Fdatasync(true); err != nil {
		log.WithError(err).Debug("sqlite: fdatasync unavailable; commits sync with fsync")
	}
}

// dsn builds a modernc.org/sqlite DSN. Every connection gets the busy
// timeout and foreign keys; the writer also turns on WAL, makes every commit
// durable (synchronous=FULL: the webhook's 200 waits for the fsync), leaves
// checkpoints to the checkpointer (wal_autocheckpoint=0) and starts
// transactions with BEGIN IMMEDIATE, so a transaction that reads before it
// writes cannot fail halfway on a lock upgrade.
func dsn(path string, busy time.Duration, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Add("_pragma", "wal_autocheckpoint(0)")
		q.Set("_txlock", "immediate")
	}
	return path + "?" + q.Encode()
}

// Close commits the ingests and outcomes already queued, then closes the database. Later
// calls of any method fail with store.ErrClosed; Close itself is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.writer.close()
		s.ckpt.close()
		s.stmts.close()
		_ = s.nextDue.Close()
		// The checkpointer's connection closes first: the last connection
		// to close (the writer's) checkpoints what is left and removes the
		// WAL.
		s.closeErr = errors.Join(s.ckptDB.Close(), s.r.Close(), s.w.Close(), s.lock.close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close sqlite store: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// Ping checks that both pools can reach the file and, after a write failed
// for want of space, that a write succeeds again: reads go on working on a
// full disk, so only a write can tell (wrapping store.ErrDiskFull when it
// cannot).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.open("ping store"); err != nil {
		return err
	}
	if err := s.w.PingContext(ctx); err != nil {
		return s.fail("ping store writer", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return s.fail("ping store readers", err)
	}
	if s.disk.isFull() {
		if err := s.writeProbe(ctx); err != nil {
			return s.fail("ping store: write", err)
		}
	}
	return nil
}

// DiskFull reports whether the store's last write failed for want of space
// (and no write has succeeded since).
func (s *Store) DiskFull() bool { return s.disk.isFull() }

// writeProbe makes a synced commit of one page: the schema version,
// rewritten unchanged.
func (s *Store) writeProbe(ctx context.Context) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(s.schemaVersion))
		return err
	})
}

// HoldLeader always holds: an embedded store has one instance.
func (s *Store) HoldLeader(_ context.Context, _ string) (bool, error) {
	if err := s.open("hold leader lock"); err != nil {
		return false, err
	}
	return true, nil
}

// Wake returns the channel the next committed ingest or replay closes.
func (s *Store) Wake() <-chan struct{} { return s.wake.Wait() }

// open returns ErrClosed, wrapped with op, once Close has begun.
func (s *Store) open(op string) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	return nil
}

// fail wraps err with op; a call racing Close reports ErrClosed rather than
// database/sql's "database is closed".
func (s *Store) fail(op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// writeTx runs fn in one write transaction (BEGIN IMMEDIATE) on the writer
// connection. fn must use only tx: the writer has a single connection.
// Running out of space fails it with store.ErrDiskFull.
func (s *Store) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.disk.check(runTx(ctx, s.w, fn))
}

// runTx runs fn in a transaction begun on b, committing unless fn fails.
func runTx(ctx context.Context, b interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}, fn func(tx *sql.Tx) error) error {
	tx, err := b.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// unsyncedTx runs fn in one write transaction whose commit is not fsynced
// (synchronous=NORMAL for this transaction only: in WAL mode a commit then
// skips its fsync, while a checkpoint it triggers still syncs the WAL
// before copying it and the database after). Its WAL frames reach the
// operating system at once and the disk with the next synced commit (or
// flush). The connection is pinned, so no other transaction runs unsynced;
// one that cannot be put back to synchronous=FULL is discarded rather than
// reused.
func (s *Store) unsyncedTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("get writer connection: %w", err)
	}
	defer conn.Close()
	// Like the statements of a batch, the pragmas run on a context that
	// cannot end, which spares the driver a watcher goroutine each.
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = NORMAL"); err != nil {
		return fmt.Errorf("relax sync: %w", err)
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = FULL"); err != nil {
			s.log.WithError(err).Error("sqlite: cannot restore synchronous=FULL; discarding the writer connection")
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return s.disk.check(runTx(ctx, conn, fn))
}

// flushIn is the writer's: how long it may stay idle before the unsynced
// outcome commits must be flushed.
func (s *Store) flushIn() (time.Duration, bool) {
	if !s.unsynced.Load() {
		return 0, false
	}
	return s.outcomeSync - time.Since(s.lastSync), true
}

// flush is the writer's: it makes every earlier commit durable with a
// synced commit of one page (the schema version, rewritten unchanged).
func (s *Store) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	started := time.Now()
	if err := s.writeProbe(ctx); err != nil {
		// The next commit tries again; outcomes are in the OS meanwhile.
		// A full disk is logged by diskState, once, not every 100 ms here.
		if !errors.Is(err, store.ErrDiskFull) {
			s.log.WithError(err).Warn("sqlite: flush of recorded outcomes failed")
		}
		s.lastSync = started
		return
	}
	s.lastSync = started
	s.unsynced.Store(false)
}

// ms stores a time as unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

// fromMS reads unix milliseconds back; NULL reads as the zero time.
func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// nowOr returns t, or the wall clock when t is zero.
func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// inList returns "?,?,?" for n parameters.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// chunks splits ids into slices of at most idChunk.
func chunks[T any](v []T) [][]T {
	var out [][]T
	for len(v) > idChunk {
		out = append(out, v[:idChunk])
		v = v[idChunk:]
	}
	if len(v) > 0 {
		out = append(out, v)
	}
	return out
}
