package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// deliveryCols selects a full event.Delivery from deliveries d joined to
// events e, in scanDelivery's order.
const deliveryCols = `d.id, d.target, e.key, e.kind, e.source, e.body, d.status, d.attempts,
	d.next_attempt_at, d.created_at, d.updated_at, d.delivered_at, d.last_error, d.last_status_code`

type scanner interface{ Scan(dest ...any) error }

func scanDelivery(row scanner) (event.Delivery, error) {
	var (
		d                            event.Delivery
		key, kind, source, status    string
		next, created, updated, done sql.NullInt64
	)
	err := row.Scan(&d.ID, &d.Target, &key, &kind, &source, &d.Body, &status, &d.Attempts,
		&next, &created, &updated, &done, &d.LastError, &d.LastStatusCode)
	if err != nil {
		return event.Delivery{}, err
	}
	d.EventKey = event.Key(key)
	d.Kind = event.Kind(kind)
	d.Source = event.Source(source)
	d.Status = event.Status(status)
	d.NextAttemptAt = fromMS(next)
	d.CreatedAt = fromMS(created)
	d.UpdatedAt = fromMS(updated)
	d.DeliveredAt = fromMS(done)
	return d, nil
}

func scanDeliveries(rows *sql.Rows) ([]event.Delivery, error) {
	defer rows.Close()
	var out []event.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	return out, nil
}

// Claim leases up to req.Limit due deliveries of req.Target to req.Owner
// until req.Now+req.Lease, oldest due first. Selecting and leasing happen in
// one immediate transaction, so two claimers never get the same delivery.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) ([]event.Delivery, error) {
	if err := s.open("claim deliveries"); err != nil {
		return nil, err
	}
	switch {
	case req.Target == "":
		return nil, errors.New("claim deliveries: target is empty")
	case req.Owner == "":
		return nil, errors.New("claim deliveries: owner is empty")
	case req.Limit < 1:
		return nil, fmt.Errorf("claim deliveries: limit %d is not positive", req.Limit)
	case req.Lease <= 0:
		return nil, fmt.Errorf("claim deliveries: lease %s is not positive", req.Lease)
	}
	now := ms(nowOr(req.Now))
	until := now + req.Lease.Milliseconds()

	var out []event.Delivery
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `
			SELECT `+deliveryCols+`
			FROM deliveries d JOIN events e ON e.id = d.event_id
			WHERE d.target = ? AND d.status = 'pending' AND d.next_attempt_at <= ?
			  AND (d.lease_until IS NULL OR d.lease_until <= ?)
			ORDER BY d.next_attempt_at, d.id
			LIMIT ?`, req.Target, now, now, req.Limit)
		if err != nil {
			return fmt.Errorf("select due deliveries: %w", err)
		}
		out, err = scanDeliveries(rows)
		if err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		args := make([]any, 0, len(out)+2)
		args = append(args, req.Owner, until)
		for _, d := range out {
			args = append(args, d.ID)
		}
		// Limit is a claim batch, far below idChunk in practice; SQLite
		// accepts 32766 parameters anyway.
		if _, err := tx.ExecContext(ctx, `
			UPDATE deliveries SET lease_owner = ?, lease_until = ?
			WHERE id IN (`+inList(len(out))+`)`, args...); err != nil {
			return fmt.Errorf("lease deliveries: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, s.fail("claim deliveries", err)
	}
	return out, nil
}

// Record stores the outcome of an attempt on a delivery owner has leased:
// one more attempt, the new status, and the lease cleared. LastStatusCode is
// the attempt's; LastError changes only when the attempt failed, so it keeps
// the most recent failure. ErrLeaseLost when owner no longer holds the lease
// (or the delivery is finished), ErrNotFound when id does not exist.
func (s *Store) Record(ctx context.Context, id int64, owner string, out event.Outcome) error {
	if err := s.open("record attempt"); err != nil {
		return err
	}
	at := nowOr(out.At)
	var (
		status      event.Status
		next        any // nil keeps next_attempt_at
		deliveredAt any // nil keeps delivered_at
	)
	switch out.Result {
	case event.ResultDelivered:
		status, deliveredAt = event.StatusDelivered, ms(at)
	case event.ResultRetry:
		status, next = event.StatusPending, ms(at)
		if !out.NextAttemptAt.IsZero() {
			next = ms(out.NextAttemptAt)
		}
	case event.ResultDead:
		status = event.StatusDead
	default:
		return fmt.Errorf("record attempt on delivery %d: unknown result %q", id, out.Result)
	}
	var errAt any
	if out.Error != "" {
		errAt = ms(at)
	}

	res, err := s.w.ExecContext(ctx, `
		UPDATE deliveries SET
			status = ?1,
			attempts = attempts + 1,
			next_attempt_at = COALESCE(?2, next_attempt_at),
			delivered_at = COALESCE(?3, delivered_at),
			last_status_code = ?4,
			last_error = CASE WHEN ?5 <> '' THEN ?5 ELSE last_error END,
			last_error_at = COALESCE(?6, last_error_at),
			updated_at = ?7,
			lease_owner = NULL,
			lease_until = NULL
		WHERE id = ?8 AND status = 'pending' AND lease_owner = ?9`,
		string(status), next, deliveredAt, out.StatusCode, out.Error, errAt, ms(at), id, owner)
	if err != nil {
		return s.fail(fmt.Sprintf("record attempt on delivery %d", id), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.fail(fmt.Sprintf("record attempt on delivery %d", id), err)
	}
	if n == 1 {
		return nil
	}
	var exists bool
	if err := s.w.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = ?)`, id).Scan(&exists); err != nil {
		return s.fail(fmt.Sprintf("record attempt on delivery %d", id), err)
	}
	if !exists {
		return fmt.Errorf("record attempt on delivery %d: %w", id, store.ErrNotFound)
	}
	return fmt.Errorf("record attempt on delivery %d: %w", id, store.ErrLeaseLost)
}

// Release clears owner's leases on ids without counting an attempt. The
// deliveries keep their NextAttemptAt, which had passed when they were
// claimed, so they are due again at once. Ids owner does not hold are
// skipped silently.
func (s *Store) Release(ctx context.Context, owner string, ids []int64) error {
	if err := s.open("release deliveries"); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		for _, chunk := range chunks(ids) {
			args := make([]any, 0, len(chunk)+1)
			args = append(args, owner)
			for _, id := range chunk {
				args = append(args, id)
			}
			if _, err := tx.ExecContext(ctx, `
				UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
				WHERE lease_owner = ? AND status = 'pending' AND id IN (`+inList(len(chunk))+`)`, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.fail("release deliveries", err)
	}
	return nil
}

// NextDue returns when target's earliest pending delivery becomes claimable:
// the later of its NextAttemptAt and its lease end.
func (s *Store) NextDue(ctx context.Context, target string) (time.Time, bool, error) {
	if err := s.open("find next due delivery"); err != nil {
		return time.Time{}, false, err
	}
	var due sql.NullInt64
	err := s.r.QueryRowContext(ctx, `
		SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until ELSE next_attempt_at END)
		FROM deliveries
		WHERE target = ? AND status = 'pending'`, target).Scan(&due)
	if err != nil {
		return time.Time{}, false, s.fail("find next due delivery", err)
	}
	if !due.Valid {
		return time.Time{}, false, nil
	}
	return fromMS(due), true, nil
}
