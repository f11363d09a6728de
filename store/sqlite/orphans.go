package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/wamm-relay/wamm-relay/store"
)

// PurgePending marks r.Target's unleased pending deliveries dead with
// store.PurgedError. See store.Store.
func (s *Store) PurgePending(ctx context.Context, r store.PurgeRequest) (int, error) {
	if err := s.open("purge deliveries"); err != nil {
		return 0, err
	}
	if r.Target == "" {
		return 0, errors.New("purge deliveries: no target given")
	}
	now := ms(nowOr(r.Now))
	n, err := s.updatePending(ctx, r.Target, now, `
		UPDATE deliveries SET status = 'dead', last_error = ?1, last_error_at = ?2, updated_at = ?2
		WHERE status = 'pending' AND id IN (%s)`, store.PurgedError, now)
	if err != nil {
		return 0, s.fail("purge deliveries", err)
	}
	return n, nil
}

// ReassignPending moves r.From's unleased pending deliveries to r.To. See
// store.Store.
func (s *Store) ReassignPending(ctx context.Context, r store.ReassignRequest) (int, error) {
	if err := s.open("reassign deliveries"); err != nil {
		return 0, err
	}
	if r.From == "" || r.To == "" || r.From == r.To {
		return 0, fmt.Errorf("reassign deliveries: need two different targets, got %q and %q", r.From, r.To)
	}
	now := ms(nowOr(r.Now))
	n, err := s.updatePending(ctx, r.From, now, `
		UPDATE deliveries SET target = ?1, attempts = 0, next_attempt_at = ?2, updated_at = ?2
		WHERE status = 'pending' AND id IN (%s)
		  AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = deliveries.event_id AND x.target = ?1)`, r.To, now)
	if err != nil {
		return 0, s.fail("reassign deliveries", err)
	}
	if n > 0 {
		s.wake.Notify()
	}
	return n, nil
}

// updatePending runs update (with %s for the id list, ?1 and ?2 for the two
// args) on target's pending deliveries that are not leased at now, in one
// write transaction. Leases live in memory, so they are filtered here; a
// claim racing this sees the rows changed, or claims them first and they
// count as leased.
func (s *Store) updatePending(ctx context.Context, target string, now int64, update string, a1, a2 any) (int, error) {
	total := 0
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, "SELECT id FROM deliveries WHERE target = ? AND status = 'pending'", target)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				_ = rows.Close()
				return err
			}
			if !s.leases.held(id, now) {
				ids = append(ids, id)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, chunk := range chunks(ids) {
			args := []any{a1, a2}
			for _, id := range chunk {
				args = append(args, id)
			}
			res, err := tx.ExecContext(ctx, fmt.Sprintf(update, inList(len(chunk))), args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += int(n)
		}
		return nil
	})
	return total, err
}
