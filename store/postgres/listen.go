package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// listenBackoffMin is the first wait before retrying a failed reconnect.
const listenBackoffMin = 100 * time.Millisecond

// listenCheckInterval is how long the listener waits for a notification
// before it checks its session is alive. A variable for tests.
var listenCheckInterval = 30 * time.Second

// connectListener opens the listener's own session and subscribes it to the
// schema's wake channel.
func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	conn, err := s.connect(ctx, nil)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
		return nil, fmt.Errorf("listen for wake-ups: %w", err)
	}
	s.listenGen.Add(1)
	return conn, nil
}

// runListener turns NOTIFYs from other instances into local wake-ups until
// ctx ends. conn is the session Open subscribed, or nil. A lost session is
// re-established with capped backoff; after each reconnect it wakes the
// waiters once, since work may have been committed while nobody listened.
// Errors are logged when a streak starts and when it ends, not per retry.
func (s *Store) runListener(ctx context.Context, conn *pgx.Conn) {
	defer s.wg.Done()
	failures := 0
	backoff := listenBackoffMin
	if conn == nil {
		failures = 1 // Open logged it
	}
	for {
		if conn == nil {
			c, err := s.connectListener(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				s.log.WithError(err).Debug("wake listener reconnect failed")
				if !sleepCtx(ctx, backoff) {
					return
				}
				backoff = min(backoff*2, s.opts.ReconnectMax)
				continue
			}
			conn = c
			if failures > 0 {
				s.log.WithField("errors", failures).Info("wake listener reconnected")
			}
			failures, backoff = 0, listenBackoffMin
			s.signal.Notify()
		}

		err := s.listen(ctx, conn)
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(cctx) // the session is gone or we are stopping
		cancel()
		conn = nil
		if ctx.Err() != nil {
			return
		}
		failures++
		s.log.WithError(err).Warn("wake listener lost its connection; reconnecting")
	}
}

// listen waits for notifications on conn and wakes the local waiters for
// each, until the session fails or ctx ends. A quiet session is checked every
// listenCheckInterval: a connection that died without a TCP reset would
// otherwise wait for a notification forever.
func (s *Store) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, s.listenCheck)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			s.signal.Notify()
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() != nil && !conn.IsClosed():
			// Quiet for a while: make sure the session is still there.
			pctx, cancel := context.WithTimeout(ctx, s.sessionCheck)
			_, err := conn.Exec(pctx, "SELECT 1")
			cancel()
			if err != nil {
				return fmt.Errorf("check listener session: %w", err)
			}
		default:
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// sleepCtx waits d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
