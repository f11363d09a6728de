package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wamm-relay/wamm-relay/store"
)

// sessionCheckTimeout bounds the liveness check of a held lock's session or
// a quiet listener's, so a silently dead connection cannot stall anything for
// long. A variable for tests.
var sessionCheckTimeout = 5 * time.Second

// connectTimeout bounds opening a connection outside the pool, for when the
// DSN sets no connect_timeout and the server is unreachable.
const connectTimeout = 10 * time.Second

// leaderLock is the dedicated session that holds, or tries for, one named
// advisory lock. A session lock lives exactly as long as its session, which
// is what lets a dead instance's lock pass on.
type leaderLock struct {
	conn *pgx.Conn
	held bool
}

// HoldLeader takes or keeps the named leader lock: a session advisory lock on
// a connection of its own, outside the pool. While held, each call checks the
// session is still alive; when it has died the lock died with it, so the
// call tries to take it again on a new session. Close releases it.
func (s *Store) HoldLeader(ctx context.Context, name string) (bool, error) {
	if s.closed.Load() {
		return false, store.ErrClosed
	}
	if name == "" {
		return false, errors.New("hold leader lock: empty name")
	}
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.closed.Load() { // Close may have emptied the map meanwhile
		return false, store.ErrClosed
	}

	l := s.leaders[name]
	if l != nil && l.held {
		cctx, cancel := context.WithTimeout(ctx, s.sessionCheck)
		_, err := l.conn.Exec(cctx, "SELECT 1")
		cancel()
		if err == nil {
			return true, nil
		}
		if ctx.Err() != nil && !l.conn.IsClosed() {
			// The caller gave up; the session (and the lock) may well be fine.
			return false, fmt.Errorf("check leader lock %q: %w", name, ctx.Err())
		}
		s.log.WithError(err).WithField("lock", name).Warn("leader lock session lost; trying to take the lock again")
		s.dropLeader(name, l)
		l = nil
	}

	got, err := s.tryLeader(ctx, name, l)
	if err != nil && l != nil && ctx.Err() == nil {
		// The idle session kept from an earlier try may have died: one more
		// go on a fresh one.
		got, err = s.tryLeader(ctx, name, nil)
	}
	if err != nil {
		return false, fmt.Errorf("take leader lock %q: %w", name, err)
	}
	if got {
		s.log.WithField("lock", name).Info("leader lock taken")
	}
	return got, nil
}

// tryLeader runs pg_try_advisory_lock on l's session, or on a new one when l
// is nil. The session is kept for the next try either way; on error it is
// dropped.
func (s *Store) tryLeader(ctx context.Context, name string, l *leaderLock) (bool, error) {
	if l == nil {
		conn, err := s.connect(ctx, leaderSessionParams)
		if err != nil {
			return false, err
		}
		l = &leaderLock{conn: conn}
		s.leaders[name] = l
	}
	var got bool
	if err := l.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockID(s.schema, name)).Scan(&got); err != nil {
		s.dropLeader(name, l)
		return false, err
	}
	l.held = got
	return got, nil
}

func (s *Store) dropLeader(name string, l *leaderLock) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = l.conn.Close(ctx) // the session may be gone already; nothing to report
	if s.leaders[name] == l {
		delete(s.leaders, name)
	}
}

// leaderSessionParams make the server probe a leader session's client, so
// a holder that vanished without closing its connection (host lost, network
// cut) has its session ended and its lock passed on within about a minute,
// rather than after the operating system's two-hour keepalive default.
var leaderSessionParams = map[string]string{
	"tcp_keepalives_idle":     "30",
	"tcp_keepalives_interval": "10",
	"tcp_keepalives_count":    "3",
}

// connect opens a connection outside the pool, with the pool's settings plus
// params.
func (s *Store) connect(ctx context.Context, params map[string]string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	cfg := s.connCfg.Copy()
	for k, v := range params {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return conn, nil
}
