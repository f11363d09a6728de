package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// deliveryCols is what scanDelivery reads, from deliveries d joined to
// events e.
const deliveryCols = `d.id, d.target, e.key, e.kind, e.source, e.body, d.status, d.attempts,
	d.next_attempt_at, d.created_at, d.updated_at, d.delivered_at, d.last_error, d.last_status_code`

// listCols is deliveryCols without the body (scanned as nil): List serves
// the admin API and CLI, which never show it, and a page of up to 1,000
// deliveries would otherwise read up to 1,000 webhook bodies.
const listCols = `d.id, d.target, e.key, e.kind, e.source, NULL::bytea, d.status, d.attempts,
	d.next_attempt_at, d.created_at, d.updated_at, d.delivered_at, d.last_error, d.last_status_code`

func scanDelivery(row pgx.CollectableRow) (event.Delivery, error) {
	var (
		d                         event.Delivery
		key, kind, source, status string
		next, created, updated    time.Time
		delivered                 *time.Time
		attempts, statusCode      int32
	)
	err := row.Scan(&d.ID, &d.Target, &key, &kind, &source, &d.Body, &status, &attempts,
		&next, &created, &updated, &delivered, &d.LastError, &statusCode)
	if err != nil {
		return event.Delivery{}, err
	}
	d.EventKey, d.Kind, d.Source, d.Status = event.Key(key), event.Kind(kind), event.Source(source), event.Status(status)
	d.Attempts, d.LastStatusCode = int(attempts), int(statusCode)
	d.NextAttemptAt, d.CreatedAt, d.UpdatedAt = next.UTC(), created.UTC(), updated.UTC()
	if delivered != nil {
		d.DeliveredAt = delivered.UTC()
	}
	return d, nil
}

// claimSQL leases the due, unleased deliveries of one target. SKIP LOCKED
// lets instances claim side by side: rows another transaction is leasing
// right now are passed over instead of waited for, so no delivery is handed
// to two owners.
const claimSQL = `
UPDATE deliveries d SET lease_owner = $2, lease_until = $3
FROM (
    SELECT id FROM deliveries
    WHERE target = $1 AND status = 'pending' AND next_attempt_at <= $4
      AND (lease_until IS NULL OR lease_until <= $4)
    ORDER BY next_attempt_at, id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
) c, events e
WHERE d.id = c.id AND e.id = d.event_id
RETURNING ` + deliveryCols

// Claim leases up to req.Limit due deliveries of req.Target to req.Owner
// until req.Now+req.Lease, oldest due first.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) ([]event.Delivery, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	switch {
	case req.Target == "":
		return nil, errors.New("claim deliveries: empty target")
	case req.Owner == "":
		return nil, errors.New("claim deliveries: empty owner")
	case req.Lease <= 0:
		return nil, fmt.Errorf("claim deliveries: lease must be positive, got %s", req.Lease)
	case req.Limit <= 0:
		return nil, nil
	}
	now := s.nowOr(req.Now)
	rows, err := s.pool.Query(ctx, claimSQL, req.Target, req.Owner, now.Add(req.Lease), now, req.Limit)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanDelivery)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	// RETURNING has no order of its own.
	sort.Slice(out, func(i, j int) bool {
		if !out[i].NextAttemptAt.Equal(out[j].NextAttemptAt) {
			return out[i].NextAttemptAt.Before(out[j].NextAttemptAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Record stores the outcome of an attempt on a delivery owner holds a live
// lease on (at out.At), counts the attempt and clears the lease. The last
// error is kept through a later success, so it stays visible; a retry or
// dead outcome overwrites it. Concurrent calls share one transaction (see
// commitRecords); each still gets its own ErrLeaseLost or ErrNotFound.
func (s *Store) Record(ctx context.Context, id int64, owner string, out event.Outcome) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	at := s.nowOr(out.At)
	var (
		status    event.Status
		next      *time.Time // nil keeps next_attempt_at
		delivered *time.Time
		failed    bool
	)
	switch out.Result {
	case event.ResultDelivered:
		status, delivered = event.StatusDelivered, &at
	case event.ResultRetry:
		if out.NextAttemptAt.IsZero() {
			return fmt.Errorf("record delivery %d: retry without next attempt time", id)
		}
		status, next, failed = event.StatusPending, &out.NextAttemptAt, true
	case event.ResultDead:
		status, failed = event.StatusDead, true
	default:
		return fmt.Errorf("record delivery %d: unknown result %q", id, out.Result)
	}
	req := recordRequest{
		id: id, owner: owner, status: status, next: next, delivered: delivered,
		code: out.StatusCode, at: at,
	}
	if failed {
		req.lastErr, req.lastErrAt = &out.Error, &at
	}
	if err := s.recorder.Do(ctx, req); err != nil {
		return fmt.Errorf("record delivery %d: %w", id, err)
	}
	return nil
}

// Release clears owner's leases on ids without counting an attempt. Ids the
// owner does not hold are left alone.
func (s *Store) Release(ctx context.Context, owner string, ids []int64) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `
		UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
		WHERE id = ANY($2) AND lease_owner = $1 AND status = 'pending'`, owner, ids)
	if err != nil {
		return fmt.Errorf("release deliveries: %w", err)
	}
	return nil
}

// nextDueSQL is min(GREATEST(next_attempt_at, lease_until)) over the
// target's pending deliveries, without reading the whole backlog (which made
// every call cost time in proportion to it). Walking the claim index in
// next_attempt_at order, the first delivery not leased past its due time
// bounds the answer: no later delivery can be due before it. So only the
// deliveries up to it, the ones leased in flight, need a look. The bound on
// next_attempt_at, always true, makes it an index condition, which keeps the
// planner on the index scan (as for the claim) when it has no statistics.
const nextDueSQL = `
SELECT min(GREATEST(next_attempt_at, lease_until)) FROM deliveries
WHERE target = $1 AND status = 'pending' AND next_attempt_at <= COALESCE((
    SELECT next_attempt_at FROM deliveries
    WHERE target = $1 AND status = 'pending' AND next_attempt_at < 'infinity'
      AND (lease_until IS NULL OR lease_until <= next_attempt_at)
    ORDER BY next_attempt_at, id
    LIMIT 1), 'infinity')`

// NextDue returns when the earliest pending delivery of target can be
// claimed: its next attempt time, or its lease expiry if that is later.
func (s *Store) NextDue(ctx context.Context, target string) (time.Time, bool, error) {
	if s.closed.Load() {
		return time.Time{}, false, store.ErrClosed
	}
	var at *time.Time
	err := s.pool.QueryRow(ctx, nextDueSQL, target).Scan(&at)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("find next due delivery: %w", err)
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return at.UTC(), true, nil
}

// List returns deliveries matching f, newest first, without their bodies
// (Body is nil).
func (s *Store) List(ctx context.Context, f store.ListFilter) ([]event.Delivery, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	if f.Status != "" && !f.Status.Valid() {
		return nil, fmt.Errorf("list deliveries: unknown status %q", f.Status)
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Status != "" {
		add("d.status = $%d", string(f.Status))
	}
	if f.Target != "" {
		add("d.target = $%d", f.Target)
	}
	if f.BeforeID > 0 {
		add("d.id < $%d", f.BeforeID)
	}
	if f.ID > 0 {
		add("d.id = $%d", f.ID)
	}
	if f.MsgID != "" {
		add("e.msg_id = $%d AND e.msg_id <> ''", f.MsgID)
	}
	if f.Chat != "" {
		// The literal <> '' matches the partial index events_chat_idx.
		add("e.chat = $%d AND e.chat <> ''", f.Chat)
	}
	if f.Channel != "" {
		add("e.channel = $%d", f.Channel)
	}
	cols := listCols
	if f.ID > 0 {
		// One delivery asked for by id: its body is worth reading.
		cols = deliveryCols
	}
	q := "SELECT " + cols + ", e.channel, e.chat, e.msg_id FROM deliveries d JOIN events e ON e.id = d.event_id"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY d.id DESC"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanListed)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

// withEventRow scans a delivery row followed by its event's channel, chat
// and msg_id into d.
type withEventRow struct {
	pgx.CollectableRow
	d *event.Delivery
}

func (w withEventRow) Scan(dest ...any) error {
	return w.CollectableRow.Scan(append(dest, &w.d.Channel, &w.d.Chat, &w.d.MsgID)...)
}

// scanListed reads one List row (listCols, channel, chat, msg_id).
func scanListed(row pgx.CollectableRow) (event.Delivery, error) {
	var extra event.Delivery
	d, err := scanDelivery(withEventRow{CollectableRow: row, d: &extra})
	if err != nil {
		return event.Delivery{}, err
	}
	d.Channel, d.Chat, d.MsgID = extra.Channel, extra.Chat, extra.MsgID
	return d, nil
}

// Replay moves the selected dead or delivered deliveries back to pending,
// due at r.Now, with their attempts reset. IDs, when given, select; Target
// and Status narrow further when set. Without IDs, Status is required.
func (s *Store) Replay(ctx context.Context, r store.ReplayRequest) (int, error) {
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	if r.Status != "" && r.Status != event.StatusDead && r.Status != event.StatusDelivered {
		return 0, fmt.Errorf("replay deliveries: status must be dead or delivered, got %q", r.Status)
	}
	if len(r.IDs) == 0 && r.Status == "" {
		return 0, errors.New("replay deliveries: neither ids nor status given")
	}
	now := s.nowOr(r.Now)
	where := []string{"status IN ('dead', 'delivered')"}
	args := []any{now}
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if len(r.IDs) > 0 {
		add("id = ANY($%d)", r.IDs)
	}
	if r.Status != "" {
		add("status = $%d", string(r.Status))
	}
	if r.Target != "" {
		add("target = $%d", r.Target)
	}
	q := `UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1,
		lease_owner = NULL, lease_until = NULL, delivered_at = NULL, updated_at = $1
		WHERE ` + strings.Join(where, " AND ")

	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if n == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", s.channel)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replay deliveries: %w", err)
	}
	if n > 0 {
		s.wakeAll()
	}
	return int(n), nil
}

// TargetStats returns per-target counts and each target's latest failure.
func (s *Store) TargetStats(ctx context.Context) ([]store.TargetStats, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	rows, err := s.pool.Query(ctx, `
		WITH counts AS (
		    SELECT target,
		        count(*) FILTER (WHERE status = 'pending')   AS pending,
		        count(*) FILTER (WHERE status = 'delivered') AS delivered,
		        count(*) FILTER (WHERE status = 'dead')      AS dead,
		        min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending
		    FROM deliveries GROUP BY target
		), failures AS (
		    SELECT DISTINCT ON (target) target, last_error, last_error_at
		    FROM deliveries WHERE last_error_at IS NOT NULL
		    ORDER BY target, last_error_at DESC, id DESC
		)
		SELECT c.target, c.pending, c.delivered, c.dead, c.oldest_pending,
		    COALESCE(f.last_error, ''), f.last_error_at
		FROM counts c LEFT JOIN failures f ON f.target = c.target
		ORDER BY c.target`)
	if err != nil {
		return nil, fmt.Errorf("count deliveries per target: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.TargetStats, error) {
		var (
			st                       store.TargetStats
			pending, delivered, dead int64
			oldest, lastErrAt        *time.Time
		)
		if err := row.Scan(&st.Target, &pending, &delivered, &dead, &oldest, &st.LastError, &lastErrAt); err != nil {
			return st, err
		}
		st.Pending, st.Delivered, st.Dead = int(pending), int(delivered), int(dead)
		if oldest != nil {
			st.OldestPending = oldest.UTC()
		}
		if lastErrAt != nil {
			st.LastErrorAt = lastErrAt.UTC()
		}
		return st, nil
	})
	if err != nil {
		return nil, fmt.Errorf("count deliveries per target: %w", err)
	}
	return out, nil
}

// queueStatsSQL is written so that each half matches one partial index's
// predicate exactly: the claim index for pending deliveries, the dead index
// for dead ones.
const queueStatsSQL = `
SELECT target, count(*), min(created_at), 0 FROM deliveries WHERE status = 'pending' GROUP BY target
UNION ALL
SELECT target, 0, NULL, count(*) FROM deliveries WHERE status = 'dead' GROUP BY target`

// QueueStats returns the pending and dead counts and the oldest pending
// delivery of each target that has any, never reading delivered ones.
func (s *Store) QueueStats(ctx context.Context) ([]store.TargetStats, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	rows, err := s.pool.Query(ctx, queueStatsSQL)
	if err != nil {
		return nil, fmt.Errorf("count pending and dead deliveries: %w", err)
	}
	byTarget := map[string]*store.TargetStats{}
	var (
		target        string
		pending, dead int64
		oldest        *time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&target, &pending, &oldest, &dead}, func() error {
		st := byTarget[target]
		if st == nil {
			st = &store.TargetStats{Target: target}
			byTarget[target] = st
		}
		st.Pending += int(pending)
		st.Dead += int(dead)
		if oldest != nil {
			st.OldestPending = oldest.UTC()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count pending and dead deliveries: %w", err)
	}
	return store.SortedStats(byTarget), nil
}
