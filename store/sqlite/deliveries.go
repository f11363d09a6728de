package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
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
// rows. want is how many rows the caller expects (a capacity hint).
func scanDeliveries(rows *sql.Rows, limit, want int) ([]event.Delivery, error) {
	defer rows.Close()
	out := make([]event.Delivery, 0, max(limit, want))
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
// until req.Now+req.Lease, oldest due first. The claim runs on the writer
// goroutine, between group commits, and the lease is kept in memory (see
// leaseTable): a claim writes nothing, so it waits for no commit and no
// fsync.
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
	if err := s.lock.hold(); err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	now := ms(nowOr(req.Now))
	until := now + req.Lease.Milliseconds()

	dueIDs, err := s.stmts.claimDueFor(ctx, s.w, req.Target)
	if err != nil {
		return nil, s.fail("claim deliveries", err)
	}
	op := &claimRequest{dueIDs: dueIDs, owner: req.Owner, now: now, until: until, limit: req.Limit}
	if err := s.writer.do(ctx, &writeOp{claim: op}); err != nil {
		return nil, s.fail("claim deliveries", err)
	}
	return op.out, nil
}

// claimRequest is one Claim call: its prepared statement, bound values and,
// once run, its result.
type claimRequest struct {
	dueIDs     *sql.Stmt
	owner      string
	now, until int64
	limit      int
	out        []event.Delivery
}

// claimOne runs one claim on the writer goroutine: the ids of the due
// deliveries in due order, stepping over those leased (at most the ones in
// flight), then those deliveries, then their leases.
func (s *Store) claimOne(ctx context.Context, c *claimRequest) error {
	rows, err := c.dueIDs.QueryContext(ctx, c.now)
	if err != nil {
		return fmt.Errorf("select due deliveries: %w", err)
	}
	ids := make([]int64, 0, c.limit)
	for len(ids) < c.limit && rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			_ = rows.Close()
			return fmt.Errorf("scan due delivery: %w", err)
		}
		if !s.leases.held(id, c.now) {
			ids = append(ids, id)
		}
	}
	// Closed before the next query: the writer has a single connection.
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("select due deliveries: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err = s.stmts.byIDs.QueryContext(ctx, idArray(ids))
	if err != nil {
		return fmt.Errorf("read claimed deliveries: %w", err)
	}
	found, err := scanDeliveries(rows, 0, len(ids))
	if err != nil {
		return err
	}
	pos := make(map[int64]int, len(ids))
	for i, id := range ids {
		pos[id] = i
	}
	slices.SortFunc(found, func(a, b event.Delivery) int { return pos[a.ID] - pos[b.ID] })
	c.out = found
	s.leases.take(deliveryIDs(found), c.owner, c.until, c.now)
	return nil
}

// claimDueSQL selects the ids of the due pending deliveries of the target
// named by the string literal at %s at time ?1, oldest due first, from the
// deliveries_claim index alone; the caller stops reading at its limit.
//
// Neither the target nor the limit is a parameter, because a parameter the
// plan depends on costs a full parse and plan per claim: since SQLite 3.54
// rebinding such a parameter to a new value (or the driver unbinding a text
// parameter after each run) expires the prepared statement. Hence one
// statement per target, and no LIMIT.
const claimDueSQL = `
		SELECT id FROM deliveries
		WHERE target = %s AND status = 'pending' AND next_attempt_at <= ?1
		ORDER BY next_attempt_at, id`

// byIDsSQL reads the deliveries whose ids are in the JSON array ?1.
const byIDsSQL = `
		SELECT ` + deliveryCols + `
		FROM deliveries d JOIN events e ON e.id = d.event_id
		WHERE d.id IN (SELECT value FROM json_each(?1))`

// sqlString quotes s as an SQL string literal.
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// recordSQL applies one outcome to a pending delivery: one more attempt and
// the new status. The caller checked the lease (in memory) first.
const recordSQL = `
		UPDATE deliveries SET
			status = ?1,
			attempts = attempts + 1,
			next_attempt_at = COALESCE(?2, next_attempt_at),
			delivered_at = COALESCE(?3, delivered_at),
			last_status_code = ?4,
			last_error = CASE WHEN ?5 <> '' THEN ?5 ELSE last_error END,
			last_error_at = COALESCE(?6, last_error_at),
			updated_at = ?7
		WHERE id = ?8 AND status = 'pending'`

// insAttemptSQL logs a failed attempt, numbered by the delivery's attempts
// (already counted by recordSQL in the same transaction).
const insAttemptSQL = `
		INSERT INTO delivery_attempts (delivery_id, attempt, at, status_code, error)
		SELECT id, attempts, ?2, ?3, ?4 FROM deliveries WHERE id = ?1`

// Attempts returns the failed attempts of delivery id, oldest first.
func (s *Store) Attempts(ctx context.Context, id int64) ([]store.Attempt, error) {
	if err := s.open("list attempts"); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT attempt, at, status_code, error FROM delivery_attempts
		WHERE delivery_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, s.fail("list attempts", err)
	}
	defer rows.Close()
	out := []store.Attempt{}
	for rows.Next() {
		var (
			a  store.Attempt
			at sql.NullInt64
		)
		if err := rows.Scan(&a.Attempt, &at, &a.StatusCode, &a.Error); err != nil {
			return nil, s.fail("list attempts", err)
		}
		a.At = fromMS(at)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list attempts", err)
	}
	return out, nil
}

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
// and ingests of the moment. Record returns once it is committed: in the
// operating system at once, on disk within Options.OutcomeSync (a commit of
// outcomes alone skips its fsync).
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

// recordOne applies one outcome inside a group commit, if owner holds the
// delivery's lease. It returns store.ErrLeaseLost or store.ErrNotFound,
// unwrapped, when nothing may be written. The lease itself is dropped once
// the commit is done (see commitWrites).
func (s *Store) recordOne(ctx context.Context, update, exists *sql.Stmt, attempt func() *sql.Stmt, r *recordRequest) error {
	if s.leases.ownedBy(r.id, r.owner, r.at) {
		res, err := update.ExecContext(ctx, string(r.status), r.next, r.deliveredAt, r.statusCode, r.errText, r.errAt, r.at, r.id)
		if err != nil {
			return fmt.Errorf("update delivery %d: %w", r.id, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("update delivery %d: %w", r.id, err)
		}
		if n == 1 {
			// Only failures are logged: a delivered outcome, the hot path,
			// writes nothing more.
			if r.status != event.StatusDelivered {
				if _, err := attempt().ExecContext(ctx, r.id, r.at, r.statusCode, r.errText); err != nil {
					return fmt.Errorf("log attempt of delivery %d: %w", r.id, err)
				}
			}
			return nil
		}
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
// skipped silently. Leases live in memory: nothing is written.
func (s *Store) Release(ctx context.Context, owner string, ids []int64) error {
	if err := s.open("release deliveries"); err != nil {
		return err
	}
	s.leases.release(owner, ids)
	return nil
}

// NextDue returns when target's earliest pending delivery becomes claimable:
// the later of its NextAttemptAt and its lease's end. It reads the target's
// pending deliveries in due order up to the first one not leased, which
// bounds the answer: at most the deliveries in flight are stepped over.
func (s *Store) NextDue(ctx context.Context, target string) (time.Time, bool, error) {
	if err := s.open("find next due delivery"); err != nil {
		return time.Time{}, false, err
	}
	rows, err := s.nextDue.QueryContext(ctx, target)
	if err != nil {
		return time.Time{}, false, s.fail("find next due delivery", err)
	}
	defer rows.Close()
	var (
		due   int64
		found bool
	)
	for rows.Next() {
		var id, next int64
		if err := rows.Scan(&id, &next); err != nil {
			return time.Time{}, false, s.fail("find next due delivery", err)
		}
		at, leased := next, false
		if until, ok := s.leases.until(id); ok && until > next {
			at, leased = until, true
		}
		if !found || at < due {
			due, found = at, true
		}
		if !leased {
			break // every later delivery is due no sooner than this one
		}
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, false, s.fail("find next due delivery", err)
	}
	if !found {
		return time.Time{}, false, nil
	}
	return fromMS(sql.NullInt64{Int64: due, Valid: true}), true, nil
}

// nextDueSQL is NextDue's query, prepared once on the read pool: each
// target's loop asks it whenever it goes idle, and parsing it anew was a
// tenth of the relay's CPU with one sequential sender.
const nextDueSQL = `
	SELECT id, next_attempt_at FROM deliveries
	WHERE target = ? AND status = 'pending'
	ORDER BY next_attempt_at, id`

// idArray renders ids as a JSON array, for json_each.
func idArray(ids []int64) string {
	b := make([]byte, 0, 2+len(ids)*8)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

func deliveryIDs(ds []event.Delivery) []int64 {
	ids := make([]int64, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return ids
}
