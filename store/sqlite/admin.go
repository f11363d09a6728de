package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// List returns the deliveries matching f, newest (highest id) first, with
// their bodies.
func (s *Store) List(ctx context.Context, f store.ListFilter) ([]event.Delivery, error) {
	if err := s.open("list deliveries"); err != nil {
		return nil, err
	}
	var (
		where []string
		args  []any
	)
	if f.Status != "" {
		// A literal, not a parameter: only a literal lets SQLite use the
		// partial index of dead deliveries.
		where = append(where, "d.status = "+sqlString(string(f.Status)))
	}
	if f.Target != "" {
		where = append(where, "d.target = ?")
		args = append(args, f.Target)
	}
	if f.BeforeID > 0 {
		where = append(where, "d.id < ?")
		args = append(args, f.BeforeID)
	}
	if f.ID > 0 {
		where = append(where, "d.id = ?")
		args = append(args, f.ID)
	}
	if f.MsgID != "" {
		where = append(where, "e.msg_id = ?")
		args = append(args, f.MsgID)
	}
	if f.Chat != "" {
		// The literal <> '' matches the partial index events_chat.
		where = append(where, "e.chat = ? AND e.chat <> ''")
		args = append(args, f.Chat)
	}
	if f.Channel != "" {
		where = append(where, "e.channel = ?")
		args = append(args, f.Channel)
	}
	q := `SELECT ` + deliveryCols + `, e.channel, e.chat, e.msg_id FROM deliveries d JOIN events e ON e.id = d.event_id`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY d.id DESC"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.fail("list deliveries", err)
	}
	out, err := scanListed(rows, f.Limit)
	if err != nil {
		return nil, s.fail("list deliveries", err)
	}
	return out, nil
}

// withEventScanner scans a delivery row followed by its event's channel,
// chat and msg_id into d.
type withEventScanner struct {
	*sql.Rows
	d *event.Delivery
}

func (w withEventScanner) Scan(dest ...any) error {
	return w.Rows.Scan(append(dest, &w.d.Channel, &w.d.Chat, &w.d.MsgID)...)
}

// scanListed reads List's rows (deliveryCols, channel, chat, msg_id).
func scanListed(rows *sql.Rows, want int) ([]event.Delivery, error) {
	defer rows.Close()
	out := make([]event.Delivery, 0, want)
	for rows.Next() {
		var extra event.Delivery
		d, err := scanDelivery(withEventScanner{Rows: rows, d: &extra})
		if err != nil {
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		d.Channel, d.Chat, d.MsgID = extra.Channel, extra.Chat, extra.MsgID
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	return out, nil
}

// Replay puts dead or delivered deliveries back to pending, due at r.Now
// (the wall clock when zero), with no attempts and no lease. r.IDs, r.Target
// and r.Status all narrow the selection; without IDs, Status must be dead or
// delivered. Pending deliveries are never touched.
func (s *Store) Replay(ctx context.Context, r store.ReplayRequest) (int, error) {
	if err := s.open("replay deliveries"); err != nil {
		return 0, err
	}
	switch {
	case r.Status != "" && r.Status != event.StatusDead && r.Status != event.StatusDelivered:
		return 0, fmt.Errorf("replay deliveries: status %q is not dead or delivered", r.Status)
	case len(r.IDs) == 0 && r.Status == "":
		return 0, errors.New("replay deliveries: give ids or a status (dead or delivered)")
	}
	now := ms(nowOr(r.Now))

	base := `
		UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?1, updated_at = ?2,
			delivered_at = NULL
		WHERE status IN ('dead', 'delivered')`
	baseArgs := []any{now, now}
	if r.Status != "" {
		base += " AND status = ?"
		baseArgs = append(baseArgs, string(r.Status))
	}
	if r.Target != "" {
		base += " AND target = ?"
		baseArgs = append(baseArgs, r.Target)
	}

	moved := 0
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		exec := func(q string, args []any) error {
			res, err := tx.ExecContext(ctx, q, args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			moved += int(n)
			return nil
		}
		if len(r.IDs) == 0 {
			return exec(base, baseArgs)
		}
		for _, chunk := range chunks(r.IDs) {
			args := append([]any{}, baseArgs...)
			for _, id := range chunk {
				args = append(args, id)
			}
			if err := exec(base+" AND id IN ("+inList(len(chunk))+")", args); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, s.fail("replay deliveries", err)
	}
	if moved > 0 {
		s.wake.Notify()
	}
	return moved, nil
}

// TargetStats returns the counts of every target that has a delivery,
// sorted by target, read in one consistent snapshot.
func (s *Store) TargetStats(ctx context.Context) ([]store.TargetStats, error) {
	if err := s.open("read target stats"); err != nil {
		return nil, err
	}
	return s.statsInSnapshot(ctx, "read target stats", readTargetStats)
}

// statsInSnapshot runs read in one read transaction, so that its queries
// see one state of the store.
func (s *Store) statsInSnapshot(ctx context.Context, what string,
	read func(context.Context, *sql.Tx) ([]store.TargetStats, error),
) ([]store.TargetStats, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, s.fail(what, err)
	}
	defer func() { _ = tx.Rollback() }()
	out, err := read(ctx, tx)
	if err != nil {
		return nil, s.fail(what, err)
	}
	return out, nil
}

func readTargetStats(ctx context.Context, tx *sql.Tx) ([]store.TargetStats, error) {
	var out []store.TargetStats
	index := map[string]int{}

	// Counts come from the (target, status, id) index alone.
	rows, err := tx.QueryContext(ctx, `
		SELECT target, status, COUNT(*) FROM deliveries
		GROUP BY target, status ORDER BY target`)
	if err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			target, status string
			n              int
		)
		if err := rows.Scan(&target, &status, &n); err != nil {
			return nil, fmt.Errorf("scan delivery counts: %w", err)
		}
		i, ok := index[target]
		if !ok {
			i = len(out)
			index[target] = i
			out = append(out, store.TargetStats{Target: target})
		}
		switch event.Status(status) {
		case event.StatusPending:
			out[i].Pending = n
		case event.StatusDelivered:
			out[i].Delivered = n
		case event.StatusDead:
			out[i].Dead = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}

	rows, err = tx.QueryContext(ctx, `
		SELECT target, MIN(created_at) FROM deliveries
		WHERE status = 'pending' GROUP BY target`)
	if err != nil {
		return nil, fmt.Errorf("find oldest pending: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			target string
			oldest sql.NullInt64
		)
		if err := rows.Scan(&target, &oldest); err != nil {
			return nil, fmt.Errorf("scan oldest pending: %w", err)
		}
		if i, ok := index[target]; ok {
			out[i].OldestPending = fromMS(oldest)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find oldest pending: %w", err)
	}

	// SQLite returns the bare column last_error from the row holding the
	// MAX; ties go to whichever such row it meets first.
	rows, err = tx.QueryContext(ctx, `
		SELECT target, last_error, MAX(last_error_at) FROM deliveries
		WHERE last_error_at IS NOT NULL GROUP BY target`)
	if err != nil {
		return nil, fmt.Errorf("find last errors: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			target, lastErr string
			errAt           sql.NullInt64
		)
		if err := rows.Scan(&target, &lastErr, &errAt); err != nil {
			return nil, fmt.Errorf("scan last error: %w", err)
		}
		if i, ok := index[target]; ok {
			out[i].LastError = lastErr
			out[i].LastErrorAt = fromMS(errAt)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find last errors: %w", err)
	}
	return out, nil
}

// QueueStats returns the pending and dead counts and the oldest pending
// delivery of each target that has any, in one consistent snapshot. The
// pending deliveries are read through the claim index, the dead ones
// through deliveries_dead: never the delivered ones.
func (s *Store) QueueStats(ctx context.Context) ([]store.TargetStats, error) {
	if err := s.open("read queue stats"); err != nil {
		return nil, err
	}
	return s.statsInSnapshot(ctx, "read queue stats", readQueueStats)
}

// queueStatsSQL names the partial index of each half: left to itself,
// SQLite counts dead deliveries by scanning deliveries_target, which holds
// every delivery, for its order by target.
const queueStatsSQL = `
SELECT target, COUNT(*), MIN(created_at), 0 FROM deliveries INDEXED BY deliveries_claim
WHERE status = 'pending' GROUP BY target
UNION ALL
SELECT target, 0, NULL, COUNT(*) FROM deliveries INDEXED BY deliveries_dead
WHERE status = 'dead' GROUP BY target`

func readQueueStats(ctx context.Context, tx *sql.Tx) ([]store.TargetStats, error) {
	rows, err := tx.QueryContext(ctx, queueStatsSQL)
	if err != nil {
		return nil, fmt.Errorf("count pending and dead deliveries: %w", err)
	}
	defer rows.Close()
	byTarget := map[string]*store.TargetStats{}
	for rows.Next() {
		var (
			target        string
			pending, dead int
			oldest        sql.NullInt64
		)
		if err := rows.Scan(&target, &pending, &oldest, &dead); err != nil {
			return nil, fmt.Errorf("scan pending and dead counts: %w", err)
		}
		st := byTarget[target]
		if st == nil {
			st = &store.TargetStats{Target: target}
			byTarget[target] = st
		}
		st.Pending += pending
		st.Dead += dead
		if oldest.Valid {
			st.OldestPending = fromMS(oldest)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count pending and dead deliveries: %w", err)
	}
	return store.SortedStats(byTarget), nil
}
