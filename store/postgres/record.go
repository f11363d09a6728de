package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// recordRequest is one Record call waiting for a group commit. Nil pointer
// fields keep the column's current value.
type recordRequest struct {
	id        int64
	owner     string
	status    event.Status
	next      *time.Time
	delivered *time.Time
	lastErr   *string
	lastErrAt *time.Time
	code      int
	at        time.Time
}

// recordBatchSQL applies a whole batch of outcomes in one statement and
// returns the ordinal of every input row it applied. A row is applied only
// while its owner holds a live lease (at its own time) on a pending
// delivery. When an id repeats in the batch, PostgreSQL updates the row once,
// from one of the inputs, as if that call had come first and cleared the
// lease before the others.
//
// The rows are found by primary key, one index probe per outcome: input is
// MATERIALIZED and the status is compared with its pending column, not a
// literal, so the planner cannot prove the claim index's predicate
// (status = 'pending') and join against that whole partial index instead.
// It did, whenever the index's row count from the last VACUUM was small:
// under a growing queue each batch then read every pending delivery (on a
// saturation run, 172 µs of server time per outcome instead of about 20).
const recordBatchSQL = `
WITH input AS MATERIALIZED (
    SELECT *, 'pending'::text AS pending
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                $6::text[], $7::timestamptz[], $8::integer[], $9::timestamptz[])
        WITH ORDINALITY AS i (id, owner, status, next_at, delivered_at, last_error, last_error_at, status_code, at, ord)
)
UPDATE deliveries d SET
    status = i.status,
    attempts = d.attempts + 1,
    next_attempt_at = COALESCE(i.next_at, d.next_attempt_at),
    delivered_at = COALESCE(i.delivered_at, d.delivered_at),
    last_error = COALESCE(i.last_error, d.last_error),
    last_error_at = COALESCE(i.last_error_at, d.last_error_at),
    last_status_code = i.status_code,
    lease_owner = NULL,
    lease_until = NULL,
    updated_at = i.at
FROM input i
WHERE d.id = i.id AND d.status = i.pending AND d.lease_owner = i.owner AND d.lease_until > i.at
RETURNING i.ord`

// recordBatchLoggedSQL is recordBatchSQL that also logs the failed
// attempts among the applied outcomes in delivery_attempts, in the same
// statement. Batches of only delivered outcomes (the hot path) run
// recordBatchSQL and pay nothing for the log.
var recordBatchLoggedSQL = strings.Replace(strings.Replace(recordBatchSQL, "\nUPDATE deliveries d SET", ", applied AS (\nUPDATE deliveries d SET", 1),
	"RETURNING i.ord", `RETURNING i.ord, d.id, d.attempts, d.status, i.at, i.status_code, i.last_error
), logged AS (
    INSERT INTO delivery_attempts (delivery_id, attempt, at, status_code, error)
    SELECT id, attempts, at, status_code, COALESCE(last_error, '') FROM applied WHERE status <> 'delivered'
)
SELECT ord FROM applied`, 1)

// A batch of outcomes waits up to recordLinger for more, up to
// recordLingerMax: nobody waits on an outcome (the worker is free once the
// target answered), while every transaction costs the server a WAL flush
// and a statement. One webhook's three deliveries, answered within a
// millisecond, used to commit three times. The SQLite writer lingers the
// same way (lingerFor).
const (
	recordLinger    = 2 * time.Millisecond
	recordLingerMax = 64
)

// maxBatchRetries is how many times a record batch that lost a deadlock (or
// a serialization failure) is run again before its callers get the error.
// Batches feed their rows in id order, so two of them can deadlock only when
// the same ids are recorded twice at once and the plan does not follow that
// order; rare, but then the whole batch would fail.
const maxBatchRetries = 3

// commitRecords is the recorder's commit function: the whole batch in one
// transaction, so outcomes share one WAL flush. An outcome whose lease is
// lost, or whose delivery does not exist, gets its own error and writes
// nothing; any other failure fails every call in the batch.
func (s *Store) commitRecords(ctx context.Context, batch []recordRequest) []error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.CommitTimeout)
	defer cancel()

	// Rows in id order, so that concurrent batches lock in the same order.
	order := make([]int, len(batch))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return batch[order[a]].id < batch[order[b]].id })
	n := len(batch)
	var (
		ids                         = make([]int64, n)
		owners, statuses, lastErrs  = make([]string, n), make([]string, n), make([]*string, n)
		nexts, delivereds, errTimes = make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		codes                       = make([]int32, n)
		ats                         = make([]time.Time, n)
	)
	for j, i := range order {
		r := batch[i]
		ids[j], owners[j], statuses[j], lastErrs[j] = r.id, r.owner, string(r.status), r.lastErr
		nexts[j], delivereds[j], errTimes[j] = r.next, r.delivered, r.lastErrAt
		codes[j], ats[j] = int32(r.code), r.at
	}

	query := recordBatchSQL
	for _, r := range batch {
		if r.status != event.StatusDelivered {
			query = recordBatchLoggedSQL
			break
		}
	}

	results := make([]error, n)
	var (
		applied []bool // by position in order
		exists  map[int64]bool
		err     error
	)
	for try := 0; ; try++ {
		applied, exists = make([]bool, n), nil
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, query,
				ids, owners, statuses, nexts, delivereds, lastErrs, errTimes, codes, ats)
			if err != nil {
				return err
			}
			ords, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return err
			}
			for _, o := range ords {
				applied[o-1] = true
			}
			if len(ords) == n {
				return nil
			}
			// Some outcome was refused: tell a lost lease from an unknown
			// delivery.
			var missed []int64
			for j, ok := range applied {
				if !ok {
					missed = append(missed, ids[j])
				}
			}
			rows, err = tx.Query(ctx, "SELECT id FROM deliveries WHERE id = ANY($1)", missed)
			if err != nil {
				return err
			}
			found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return err
			}
			exists = make(map[int64]bool, len(found))
			for _, id := range found {
				exists[id] = true
			}
			return nil
		})
		if err == nil || try+1 >= maxBatchRetries || !retryable(err) {
			break
		}
		s.log.WithError(err).WithField("outcomes", n).Warn("record batch lost a deadlock; retrying")
	}
	if err != nil {
		err = fmt.Errorf("commit outcome batch: %w", diskFull(err))
		for i := range results {
			results[i] = err
		}
		return results
	}
	recorded := 0
	for j, i := range order {
		switch {
		case applied[j]:
			recorded++
		case exists[ids[j]]:
			results[i] = store.ErrLeaseLost
		default:
			results[i] = store.ErrNotFound
		}
	}
	s.noteOutcomes(recorded)
	return results
}

// retryable reports whether err is a deadlock or serialization failure,
// after which the same transaction may simply be run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// diskFull wraps the server's disk_full (53100: it could not extend a
// table, an index or its WAL) with store.ErrDiskFull, so that both stores
// report a full disk the same way; other errors pass through.
func diskFull(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "53100" {
		return fmt.Errorf("%w: %w", store.ErrDiskFull, err)
	}
	return err
}

// Attempts returns the failed attempts of delivery id, oldest first.
func (s *Store) Attempts(ctx context.Context, id int64) ([]store.Attempt, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	rows, err := s.pool.Query(ctx, `SELECT attempt, at, status_code, error FROM delivery_attempts
		WHERE delivery_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("list attempts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Attempt, error) {
		var (
			a          store.Attempt
			attempt    int32
			statusCode int32
		)
		err := row.Scan(&attempt, &a.At, &statusCode, &a.Error)
		a.Attempt, a.StatusCode, a.At = int(attempt), int(statusCode), a.At.UTC()
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list attempts: %w", err)
	}
	return out, nil
}
