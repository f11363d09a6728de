package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/wamm-relay/wamm-relay/store"
)

// PurgePending marks r.Target's unleased pending deliveries dead with
// store.PurgedError. See store.Store.
func (s *Store) PurgePending(ctx context.Context, r store.PurgeRequest) (int, error) {
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	if r.Target == "" {
		return 0, errors.New("purge deliveries: no target given")
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE deliveries SET status = 'dead', last_error = $2, last_error_at = $3, updated_at = $3,
			lease_owner = NULL, lease_until = NULL
		WHERE target = $1 AND status = 'pending' AND (lease_until IS NULL OR lease_until <= $3)`,
		r.Target, store.PurgedError, s.nowOr(r.Now))
	if err != nil {
		return 0, fmt.Errorf("purge deliveries: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// ReassignPending moves r.From's unleased pending deliveries to r.To. See
// store.Store.
func (s *Store) ReassignPending(ctx context.Context, r store.ReassignRequest) (int, error) {
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	if r.From == "" || r.To == "" || r.From == r.To {
		return 0, fmt.Errorf("reassign deliveries: need two different targets, got %q and %q", r.From, r.To)
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE deliveries d SET target = $2, attempts = 0, next_attempt_at = $3, updated_at = $3,
				lease_owner = NULL, lease_until = NULL
			WHERE d.target = $1 AND d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until <= $3)
			  AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = d.event_id AND x.target = $2)`,
			r.From, r.To, s.nowOr(r.Now))
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", s.channel)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reassign deliveries: %w", err)
	}
	if n > 0 {
		s.wakeAll()
	}
	return int(n), nil
}
