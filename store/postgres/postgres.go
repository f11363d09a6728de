package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/store"
)

// Defaults for zero Options fields.
const (
	DefaultMaxConns        = 16
	DefaultMaxBatch        = 256
	DefaultCommitters      = 4
	DefaultCommitTimeout   = 10 * time.Second
	DefaultReconnectMax    = 5 * time.Second
	DefaultApplicationName = "wamm-relay"
	// DefaultMigrationLockTimeout bounds each lock wait of a migration.
	DefaultMigrationLockTimeout = 30 * time.Second
	// DefaultCloseTimeout bounds Close: past it the store gives up on a
	// database that does not answer and abandons its connections.
	DefaultCloseTimeout = 10 * time.Second
	// pingTimeout bounds the liveness ping of a connection taken from the
	// pool after a second idle: a half-open connection (a partition, a dead
	// NAT entry) is then replaced in a second instead of holding a commit
	// until its timeout.
	pingTimeout = time.Second
)

// ErrCloseTimeout: Close gave up waiting for the database.
var ErrCloseTimeout = errors.New("close timed out")

// Options configures Open.
type Options struct {
	// DSN is a PostgreSQL URL or key=value string. Its search_path decides
	// the schema the relay's tables live in; application_name defaults to
	// DefaultApplicationName.
	DSN    string
	Logger logrus.FieldLogger
	// MaxConns caps the pool; 0 means DefaultMaxConns unless the DSN sets
	// pool_max_conns. The wake listener and each held leader lock use one
	// connection more each, outside the pool.
	MaxConns int32
	// MaxBatch is the most ingests, or recorded outcomes, one group commit
	// writes.
	MaxBatch int
	// Committers is how many group commits of ingests may run at once, and
	// as many again of outcomes.
	Committers int
	// CommitTimeout bounds one group commit.
	CommitTimeout time.Duration
	// ReconnectMax caps the backoff between attempts to re-establish the
	// wake listener's connection.
	ReconnectMax time.Duration
	// VacuumEvery is how many outcomes this Store records between the
	// VACUUMs it runs on the deliveries table (see vacuum.go); 0 means
	// DefaultVacuumEvery, negative never.
	VacuumEvery int
	// Now is the clock for the timestamps the store sets itself.
	Now func() time.Time
	// MigrationLockTimeout bounds each lock a migration waits for (the
	// migration lock another instance holds, the tables' locks a long
	// transaction or VACUUM holds); past it Open fails with
	// ErrMigrationLock. 0 means DefaultMigrationLockTimeout.
	MigrationLockTimeout time.Duration
	// CloseTimeout bounds Close; 0 means DefaultCloseTimeout.
	CloseTimeout time.Duration
}

func (o Options) validate() error {
	switch {
	case o.DSN == "":
		return errors.New("postgres options: DSN is empty")
	case o.Logger == nil:
		return errors.New("postgres options: Logger is nil")
	case o.MaxConns < 0:
		return fmt.Errorf("postgres options: MaxConns is negative (%d)", o.MaxConns)
	case o.MaxBatch < 0:
		return fmt.Errorf("postgres options: MaxBatch is negative (%d)", o.MaxBatch)
	case o.Committers < 0:
		return fmt.Errorf("postgres options: Committers is negative (%d)", o.Committers)
	case o.CommitTimeout < 0:
		return fmt.Errorf("postgres options: CommitTimeout is negative (%s)", o.CommitTimeout)
	case o.ReconnectMax < 0:
		return fmt.Errorf("postgres options: ReconnectMax is negative (%s)", o.ReconnectMax)
	case o.MigrationLockTimeout < 0:
		return fmt.Errorf("postgres options: MigrationLockTimeout is negative (%s)", o.MigrationLockTimeout)
	case o.CloseTimeout < 0:
		return fmt.Errorf("postgres options: CloseTimeout is negative (%s)", o.CloseTimeout)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Committers == 0 {
		o.Committers = DefaultCommitters
	}
	if o.CommitTimeout == 0 {
		o.CommitTimeout = DefaultCommitTimeout
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = DefaultReconnectMax
	}
	if o.VacuumEvery == 0 {
		o.VacuumEvery = DefaultVacuumEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MigrationLockTimeout == 0 {
		o.MigrationLockTimeout = DefaultMigrationLockTimeout
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
}

// Store is the PostgreSQL outbox. It is safe for concurrent use, and several
// Stores (in one process or many) may share one schema.
type Store struct {
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig // for the connections kept outside the pool
	log     logrus.FieldLogger
	now     func() time.Time
	opts    Options
	schema  string
	channel string // NOTIFY channel of this schema

	batcher  *store.Batcher[*ingestOp]
	recorder *store.Batcher[recordRequest]
	signal   *store.Signal
	closed   atomic.Bool

	stopListen context.CancelFunc
	// background is the context of the work the store starts on its own
	// (the VACUUMs); Close cancels it.
	background     context.Context
	stopBackground context.CancelFunc
	wg             sync.WaitGroup
	// notifyPoke queues one NOTIFY for the notifier (see notify.go).
	notifyPoke chan struct{}
	// uncertain are the failed ingest batches whose handoff leases the
	// releaser gives back if they committed after all (uncertain.go).
	uncertainMu   sync.Mutex
	uncertain     []uncertainBatch
	uncertainPoke chan struct{}
	// sinceVacuum counts outcomes since the last VACUUM ended; vacuuming
	// is set while one runs; vacuums counts those that ran without error.
	// cannotVacuum is set once the role or server turned out unable to, and
	// vacuumChecked (used only by the running VACUUM) once that was checked.
	sinceVacuum   atomic.Int64
	vacuuming     atomic.Bool
	vacuums       atomic.Int64
	cannotVacuum  atomic.Bool
	vacuumChecked bool
	// listenCheck and sessionCheck copy listenCheckInterval and
	// sessionCheckTimeout at Open.
	listenCheck, sessionCheck time.Duration
	// listenGen counts successful LISTENs, so tests can tell the listener
	// came back after its connection was killed.
	listenGen atomic.Int64

	leaderMu sync.Mutex
	leaders  map[string]*leaderLock
	closeMu  sync.Mutex
}

var (
	_ store.Store           = (*Store)(nil)
	_ store.HandoffIngester = (*Store)(nil)
)

// Open connects, applies pending migrations (serialised across instances by
// an advisory lock) and starts the wake listener. The schema named first in
// the DSN's search_path must exist.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()

	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse postgres dsn: %w", err)
	}
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(opts.DSN, "pool_max_conns"):
		cfg.MaxConns = DefaultMaxConns
	}
	cfg.PingTimeout = pingTimeout
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = DefaultApplicationName
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create postgres pool: %w", err)
	}
	s, err := open(ctx, pool, cfg.ConnConfig.Copy(), opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

func open(ctx context.Context, pool *pgxpool.Pool, connCfg *pgx.ConnConfig, opts Options) (*Store, error) {
	var schema *string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if schema == nil {
		return nil, fmt.Errorf("connect to postgres: %w", errNoSchema)
	}
	if err := migrate(ctx, pool, *schema, opts.MigrationLockTimeout); err != nil {
		return nil, err
	}
	s := &Store{
		pool:    pool,
		connCfg: connCfg,
		log:     opts.Logger,
		now:     opts.Now,
		opts:    opts,
		schema:  *schema,
		channel: wakeChannel(*schema),
		signal:  store.NewSignal(),
		leaders: make(map[string]*leaderLock),

		notifyPoke:    make(chan struct{}, 1),
		uncertainPoke: make(chan struct{}, 1),

		listenCheck:  listenCheckInterval,
		sessionCheck: sessionCheckTimeout,
	}
	// LISTEN before Open returns, so an ingest on another instance right
	// after Open already wakes this one. If it fails, the listener keeps
	// trying in the background.
	first, err := s.connectListener(ctx)
	if err != nil {
		s.log.WithError(err).Warn("wake listener not connected yet; retrying in the background")
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.stopListen = cancel
	s.background, s.stopBackground = context.WithCancel(context.Background())
	s.wg.Add(3)
	go s.runListener(lctx, first)
	go s.runNotifier(s.background)
	go s.runReleaser(s.background)

	s.batcher = store.NewBatcher(s.commitBatch, opts.MaxBatch, opts.Committers)
	s.recorder = store.NewLingeringBatcher(s.commitRecords, opts.MaxBatch, opts.Committers, recordLinger, recordLingerMax)
	return s, nil
}

// Schema is the schema the store's tables live in.
func (s *Store) Schema() string { return s.schema }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Wake returns a channel closed when new work may be due: after an ingest or
// replay commits on this Store, or a NOTIFY arrives from another one on the
// same schema, or the listener reconnects after losing its connection.
func (s *Store) Wake() <-chan struct{} { return s.signal.Wait() }

// Close commits queued ingests and outcomes, stops the listener, releases
// leader locks (by ending their sessions) and closes the pool. It is safe to
// call twice.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	// A database that never answers (half-open connections, a frozen
	// server) must not hold the process's shutdown: past CloseTimeout the
	// connections are abandoned to the exiting process. Outcomes not yet
	// written are attempted again after the restart (bounded duplicates).
	done := make(chan error, 1)
	go func() { done <- s.close() }()
	t := time.NewTimer(s.opts.CloseTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		s.log.WithField("timeout", s.opts.CloseTimeout.String()).
			Error("store: close timed out, the database does not answer; abandoning its connections")
		return fmt.Errorf("close postgres store: %w after %s", ErrCloseTimeout, s.opts.CloseTimeout)
	}
}

func (s *Store) close() error {
	s.batcher.Close()
	s.recorder.Close()
	s.stopListen()
	s.stopBackground()
	s.wg.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	s.leaderMu.Lock()
	for name, l := range s.leaders {
		// Unlock before closing: the server ends a closed session
		// asynchronously, and another instance should not have to wait
		// for that to take over.
		if l.held {
			if _, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
				s.log.WithError(err).WithField("lock", name).Warn("unlock leader lock; closing its session instead")
			}
		}
		if err := l.conn.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("release leader lock %q: %w", name, err))
		}
		delete(s.leaders, name)
	}
	s.leaderMu.Unlock()
	s.pool.Close()
	return errors.Join(errs...)
}

// lockID is the advisory lock key for name within schema. Advisory locks are
// per database, so the schema keeps relays sharing a database apart.
func lockID(schema, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("wamm-relay\x00" + schema + "\x00" + name))
	return int64(h.Sum64())
}

// wakeChannel is the NOTIFY channel for schema. Channel names are
// identifiers (at most 63 bytes); a long schema name is hashed.
func wakeChannel(schema string) string {
	const prefix = "wamm_relay_wake_"
	if len(prefix)+len(schema) <= 63 {
		return prefix + schema
	}
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("%s%016x", prefix, h.Sum64())
}

// wakeAll wakes this instance's waiters after a commit that queued work. The
// other instances learn of it through the NOTIFY sent in that transaction.
func (s *Store) wakeAll() { s.signal.Notify() }

func (s *Store) nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return s.now()
	}
	return t
}
