package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
		body                         sql.RawBytes
		next, created, updated, done sql.NullInt64
	)
	err := row.Scan(&d.ID, &d.Target, &key, &kind, &source, &body, &status, &d.Attempts,
		&next, &created, &updated, &done, &d.LastError, &d.LastStatusCode)
	if err != nil {
		return event.Delivery{}, err
	}
	// modernc.org/sqlite already hands each row's blob over as a fresh Go
	// slice; scanning into []byte would copy it a second time.
	d.Body = []byte(body)
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

// scanDeliveries reads at most limit rows (all when limit is 0) and closes
// rows.
func scanDeliveries(rows *sql.Rows, limit int) ([]event.Delivery, error) {
	defer rows.Close()
	var out []event.Delivery
	if limit > 0 {
		out = make([]event.Delivery, 0, limit)
	}
	for (limit == 0 || len(out) < limit) && rows.Next() {
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
// one immediate transaction, so two claimers never get the same delivery:
// the group commit of the moment, shared with the ingests and outcomes being
// written, so a claim costs no transaction (and no fsync) of its own.
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

	claimDue, err := s.stmts.claimDueFor(ctx, s.w, req.Target)
	if err != nil {
		return nil, s.fail("claim deliveries", err)
	}
	op := &claimRequest{stmt: claimDue, owner: req.Owner, now: now, until: until, limit: req.Limit}
	if err := s.writer.do(ctx, &writeOp{claim: op}); err != nil {
		return nil, s.fail("claim deliveries", err)
	}
	return op.out, nil
}

// claimRequest is one Claim call: its prepared statement, bound values and,
// once committed, its result.
type claimRequest struct {
	stmt       *sql.Stmt
	owner      string
	now, until int64
	limit      int
	out        []event.Delivery
}

// claimOne selects and leases one claim's deliveries inside a group commit.
func claimOne(ctx context.Context, tx *sql.Tx, lease *sql.Stmt, c *claimRequest) error {
	rows, err := tx.StmtContext(ctx, c.stmt).QueryContext(ctx, c.now, c.now)
	if err != nil {
		return fmt.Errorf("select due deliveries: %w", err)
	}
	out, err := scanDeliveries(rows, c.limit)
	if err != nil {
		return err
	}
	if len(out) == 0 {
		c.out = out
		return nil
	}
	if _, err := lease.ExecContext(ctx, c.owner, c.until, idArray(out)); err != nil {
		return fmt.Errorf("lease %d deliveries: %w", len(out), err)
	}
	c.out = out
	return nil
}

// claimDueSQL selects the claimable pending deliveries of the target named
// by the string literal at %s at time ?1, oldest due first, through the
// deliveries_claim index: claim_at is a pending delivery's next attempt
// while unleased and its lease's end while leased, so every row of the
// index range is claimable and the caller stops reading at its limit.
//
// Neither the target nor the limit is a parameter, because a parameter the
// plan depends on costs a full parse and plan per claim: since SQLite 3.54
// rebinding such a parameter to a new value (or the driver unbinding a text
// parameter after each run) expires the prepared statement. Hence one
// statement per target, and no LIMIT.
const claimDueSQL = `
		SELECT ` + deliveryCols + `
		FROM deliveries d JOIN events e ON e.id = d.event_id
		WHERE d.target = %s AND d.status = 'pending' AND d.claim_at <= ?1
		ORDER BY d.claim_at, d.id`

// sqlString quotes s as an SQL string literal.
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// leaseSQL leases the deliveries whose ids are in the JSON array ?3 to owner
// ?1 until ?2, in one statement whatever their number.
const leaseSQL = `
		UPDATE deliveries SET lease_owner = ?1, lease_until = ?2, claim_at = ?2
		WHERE id IN (SELECT value FROM json_each(?3))`

// recordSQL applies one outcome: one more attempt, the new status, and the
// lease cleared, only while owner holds the lease on a pending delivery.
const recordSQL = `
		UPDATE deliveries SET
			status = ?1,
			attempts = attempts + 1,
			next_attempt_at = COALESCE(?2, next_attempt_at),
			claim_at = COALESCE(?2, next_attempt_at),
			delivered_at = COALESCE(?3, delivered_at),
			last_status_code = ?4,
			last_error = CASE WHEN ?5 <> '' THEN ?5 ELSE last_error END,
			last_error_at = COALESCE(?6, last_error_at),
			updated_at = ?7,
			lease_owner = NULL,
			lease_until = NULL
		WHERE id = ?8 AND status = 'pending' AND lease_owner = ?9`

// recordRequest is one Record call's bound values.
type recordRequest struct {
	id          int64
	owner       string
	status      event.Status
	next        any // nil keeps next_attempt_at
	deliveredAt any // nil keeps delivered_at
	statusCode  int
	errText     string
	errAt       any // nil keeps last_error_at
	at          int64
}

// Record stores the outcome of an attempt on a delivery owner has leased:
// one more attempt, the new status, and the lease cleared. LastStatusCode is
// the attempt's; LastError changes only when the attempt failed, so it keeps
// the most recent failure. ErrLeaseLost when owner no longer holds the lease
// (or the delivery is finished), ErrNotFound when id does not exist.
//
// The outcome is written in a group commit shared with the other outcomes
// and ingests of the moment, and Record returns once it is durable.
func (s *Store) Record(ctx context.Context, id int64, owner string, out event.Outcome) error {
	if err := s.open("record attempt"); err != nil {
		return err
	}
	at := nowOr(out.At)
	req := recordRequest{id: id, owner: owner, statusCode: out.StatusCode, errText: out.Error, at: ms(at)}
	switch out.Result {
	case event.ResultDelivered:
		req.status, req.deliveredAt = event.StatusDelivered, ms(at)
	case event.ResultRetry:
		req.status, req.next = event.StatusPending, ms(at)
		if !out.NextAttemptAt.IsZero() {
			req.next = ms(out.NextAttemptAt)
		}
	case event.ResultDead:
		req.status = event.StatusDead
	default:
		return fmt.Errorf("record attempt on delivery %d: unknown result %q", id, out.Result)
	}
	if out.Error != "" {
		req.errAt = ms(at)
	}
	err := s.writer.do(ctx, &writeOp{record: &req})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrLeaseLost), errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("record attempt on delivery %d: %w", id, err)
	default:
		return s.fail(fmt.Sprintf("record attempt on delivery %d", id), err)
	}
}

// recordOne applies one outcome inside a group commit. It returns
// store.ErrLeaseLost or store.ErrNotFound, unwrapped, when nothing matched.
func recordOne(ctx context.Context, update, exists *sql.Stmt, r *recordRequest) error {
	res, err := update.ExecContext(ctx, string(r.status), r.next, r.deliveredAt, r.statusCode, r.errText, r.errAt, r.at, r.id, r.owner)
	if err != nil {
		return fmt.Errorf("update delivery %d: %w", r.id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update delivery %d: %w", r.id, err)
	}
	if n == 1 {
		return nil
	}
	var found bool
	if err := exists.QueryRowContext(ctx, r.id).Scan(&found); err != nil {
		return fmt.Errorf("look up delivery %d: %w", r.id, err)
	}
	if !found {
		return store.ErrNotFound
	}
	return store.ErrLeaseLost
}

// isOwnError reports whether err concerns only the operation that returned
// it (a duplicate ingest, an outcome that may not be recorded), so the rest
// of its batch commits.
func isOwnError(err error) bool {
	return errors.Is(err, store.ErrDuplicate) || errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotFound)
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
				UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, claim_at = next_attempt_at
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
		SELECT MIN(claim_at) FROM deliveries
		WHERE target = ? AND status = 'pending'`, target).Scan(&due)
	if err != nil {
		return time.Time{}, false, s.fail("find next due delivery", err)
	}
	if !due.Valid {
		return time.Time{}, false, nil
	}
	return fromMS(due), true, nil
}

// idArray renders the deliveries' ids as a JSON array, for json_each.
func idArray(ds []event.Delivery) string {
	b := make([]byte, 0, 2+len(ds)*8)
	b = append(b, '[')
	for i, d := range ds {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d.ID, 10)
	}
	return string(append(b, ']'))
}
