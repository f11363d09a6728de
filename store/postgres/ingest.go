package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// ingestOp is one Ingest or IngestHandoff waiting for a group commit. For a
// handoff, state settles who owns its leased deliveries when the caller's
// context ends while the commit is under way: the caller, if the commit
// marked it taken first; otherwise nobody is going to attempt them, and the
// committer gives them back to the claimers.
type ingestOp struct {
	req   *store.IngestRequest
	state atomic.Int32
}

const (
	opPending int32 = iota
	opTaken
	opAbandoned
)

// Ingest stores ev and one pending delivery per distinct target in one
// transaction, through the group commit. The deliveries are created and due
// at ev.ReceivedAt (now when zero), so claims follow arrival order across
// instances rather than commit order.
func (s *Store) Ingest(ctx context.Context, ev event.Event, targets []string) error {
	return s.ingest(ctx, &ingestOp{req: &store.IngestRequest{Event: ev, Targets: targets}})
}

// IngestHandoff is Ingest that also leases the deliveries of lease.Targets
// to lease.Owner until lease.Until in the same transaction, and returns them
// ready to attempt (see store.HandoffIngester). If the caller gives up while
// the commit is under way, the deliveries it leased are released for the
// claimers as soon as the commit ends.
func (s *Store) IngestHandoff(ctx context.Context, ev event.Event, targets []string, lease store.HandoffLease) ([]event.Delivery, error) {
	if lease.Owner == "" {
		return nil, errors.New("ingest event: lease owner is empty")
	}
	op := &ingestOp{req: &store.IngestRequest{Event: ev, Targets: targets, Handoff: &lease}}
	if err := s.ingest(ctx, op); err != nil {
		if ctx.Err() == nil || op.state.CompareAndSwap(opPending, opAbandoned) {
			return nil, err
		}
		// The commit landed and leased before the caller's deadline won the
		// race for the answer: the deliveries are the caller's to attempt.
	}
	return op.req.Leased, nil
}

func (s *Store) ingest(ctx context.Context, op *ingestOp) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if op.req.Event.Key == "" {
		return errors.New("ingest event: empty key")
	}
	if err := s.batcher.Do(ctx, op); err != nil {
		return fmt.Errorf("ingest event %s: %w", op.req.Event.Key, err)
	}
	return nil
}

// insertBatchSQL writes a whole batch in one statement: the events (skipping
// keys already stored), their deliveries (leased where the input gives an
// owner), and the "events were stored" mark. It returns one row per event it
// inserted (key, with a NULL id) and one per delivery it leased (key, id,
// target); a key not returned was a duplicate.
//
// Rows go in sorted by key, so two batches racing on overlapping keys take
// their unique-index locks in the same order and cannot deadlock.
const insertBatchSQL = `
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::timestamptz[], $12::text[], $13::text[])
        WITH ORDINALITY AS i (key, kind, source, msg_id, state, body, received_at, channel, chat, ord)
), ins AS (
    INSERT INTO events (key, kind, source, msg_id, state, body, received_at, channel, chat)
    SELECT key, kind, source, msg_id, state, body, received_at, channel, chat FROM input ORDER BY ord
    ON CONFLICT (key) DO NOTHING
    RETURNING id, key, received_at
), dl AS (
    INSERT INTO deliveries (event_id, target, status, next_attempt_at, created_at, updated_at, lease_owner, lease_until)
    SELECT ins.id, t.target, 'pending', ins.received_at, ins.received_at, ins.received_at, t.owner, t.until
    FROM ins JOIN unnest($8::text[], $9::text[], $10::text[], $11::timestamptz[])
        WITH ORDINALITY AS t (key, target, owner, until, ord) ON t.key = ins.key
    ORDER BY ins.id, t.ord
    RETURNING id, event_id, target, lease_owner IS NOT NULL AS leased
), seen AS (
    INSERT INTO store_meta (name) SELECT 'events_stored' WHERE EXISTS (SELECT 1 FROM ins)
    ON CONFLICT (name) DO NOTHING
)
SELECT key, NULL::bigint, NULL::text FROM ins
UNION ALL
SELECT ins.key, dl.id, dl.target FROM dl JOIN ins ON ins.id = dl.event_id WHERE dl.leased`

// commitBatch is the Batcher's CommitFunc: one transaction for the batch,
// followed by a NOTIFY to the other instances when it left a delivery for
// claims (notify.go).
// It fills each handoff request's Leased, or releases those leases when the
// caller gave up meanwhile.
func (s *Store) commitBatch(ctx context.Context, ops []*ingestOp) []error {
	batch := make([]*store.IngestRequest, len(ops))
	for i, op := range ops {
		batch[i] = op.req
	}
	results := make([]error, len(batch))
	now := s.now()

	// A key repeated inside the batch: the first occurrence is the one
	// written, later ones are duplicates of it.
	first := make(map[event.Key]int, len(batch))
	order := make([]int, 0, len(batch))
	for i, r := range batch {
		r.Leased = r.Leased[:0]
		if _, dup := first[r.Event.Key]; dup {
			results[i] = store.ErrDuplicate
			continue
		}
		first[r.Event.Key] = i
		order = append(order, i)
	}
	sort.Slice(order, func(a, b int) bool { return batch[order[a]].Event.Key < batch[order[b]].Event.Key })

	n := len(order)
	var (
		keys, kinds, sources, msgIDs, states = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		channels, chats                      = make([]string, n), make([]string, n)
		bodies                               = make([][]byte, n)
		received                             = make([]time.Time, n)
		dKeys, dTargets                      []string
		dOwners                              []*string
		dUntils                              []*time.Time
	)
	// claimable: the request leaves a delivery (or, with no targets, an
	// event) that the claimers should hear of.
	claimable := make([]bool, len(batch))
	for j, i := range order {
		r := batch[i]
		ev := r.Event
		keys[j], kinds[j], sources[j] = string(ev.Key), string(ev.Kind), string(ev.Source)
		msgIDs[j], states[j] = ev.MsgID, ev.State
		channels[j], chats[j] = ev.Channel, ev.Chat
		if channels[j] == "" {
			channels[j] = event.DefaultChannel
		}
		bodies[j] = ev.Body
		if bodies[j] == nil {
			bodies[j] = []byte{} // NULL would break NOT NULL
		}
		received[j] = ev.ReceivedAt
		if received[j].IsZero() {
			received[j] = now
		}
		claimable[i] = len(r.Targets) == 0
		seen := make(map[string]bool, len(r.Targets))
		for _, t := range r.Targets {
			if t == "" || seen[t] {
				continue
			}
			seen[t] = true
			dKeys = append(dKeys, keys[j])
			dTargets = append(dTargets, t)
			if r.Handoff != nil && slices.Contains(r.Handoff.Targets, t) {
				dOwners = append(dOwners, &r.Handoff.Owner)
				dUntils = append(dUntils, &r.Handoff.Until)
			} else {
				dOwners = append(dOwners, nil)
				dUntils = append(dUntils, nil)
				claimable[i] = true
			}
		}
	}

	ctx, cancel := context.WithTimeout(ctx, s.opts.CommitTimeout)
	defer cancel()
	var (
		inserted map[string]bool
		leased   map[string]map[string]int64 // key -> target -> delivery id
		notify   bool
		// xid is the transaction's id, once known.
		xid int64
		// The leases of handoffs whose callers gave up during the commit.
		abandonedIDs    []int64
		abandonedOwners []string
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		inserted, leased, notify, xid = make(map[string]bool, n), map[string]map[string]int64{}, false, 0
		rows, err := tx.Query(ctx, insertBatchSQL,
			keys, kinds, sources, msgIDs, states, bodies, received, dKeys, dTargets, dOwners, dUntils, channels, chats)
		if err != nil {
			return err
		}
		var (
			key    string
			id     *int64
			target *string
		)
		_, err = pgx.ForEachRow(rows, []any{&key, &id, &target}, func() error {
			if id == nil {
				inserted[key] = true
				notify = notify || claimable[first[event.Key(key)]]
				return nil
			}
			if leased[key] == nil {
				leased[key] = map[string]int64{}
			}
			leased[key][*target] = *id
			return nil
		})
		if err != nil || len(inserted) == 0 {
			return err
		}
		// The 200 promises durability whatever the server's default: force a
		// synchronous commit for this transaction. Only a delivery left for
		// the claimers is worth waking the other instances for; they hear
		// of it after the commit (notify.go).
		// The transaction id tells, if the commit's answer is lost,
		// whether it committed (uncertain.go).
		var ignored string
		return tx.QueryRow(ctx, "SELECT set_config('synchronous_commit', 'on', true), txid_current()").Scan(&ignored, &xid)
	})
	if err != nil {
		err = fmt.Errorf("commit ingest batch: %w", diskFull(err))
		for _, i := range order {
			results[i] = err
		}
		s.noteUncertain(xid, batch, order)
		return results
	}
	for j, i := range order {
		r := batch[i]
		if !inserted[keys[j]] {
			results[i] = store.ErrDuplicate
			continue
		}
		if r.Handoff == nil {
			continue
		}
		// In the order of Targets, as the caller asked.
		for _, t := range r.Targets {
			id, ok := leased[keys[j]][t]
			if !ok {
				continue
			}
			// A target listed twice is one delivery.
			delete(leased[keys[j]], t)
			// The time as stored: PostgreSQL keeps microseconds.
			at := received[j].Truncate(time.Microsecond).UTC()
			r.Leased = append(r.Leased, event.Delivery{
				ID: id, Target: t, EventKey: r.Event.Key, Kind: r.Event.Kind, Source: r.Event.Source,
				Body: bodies[j], Status: event.StatusPending, NextAttemptAt: at, CreatedAt: at, UpdatedAt: at,
			})
		}
		if len(r.Leased) > 0 && !ops[i].state.CompareAndSwap(opPending, opTaken) {
			for _, d := range r.Leased {
				abandonedIDs = append(abandonedIDs, d.ID)
				abandonedOwners = append(abandonedOwners, r.Handoff.Owner)
			}
			r.Leased = nil
		}
	}
	if len(abandonedIDs) > 0 && s.releaseAbandoned(ctx, abandonedIDs, abandonedOwners) {
		notify = true
	}
	if notify {
		s.wakeAll()
		s.notifyOthers()
	}
	return results
}

// releaseAbandonedSQL clears the leases of handed-off deliveries whose
// caller gave up, and tells every instance they are claimable.
const releaseAbandonedSQL = `
WITH released AS (
    UPDATE deliveries d SET lease_owner = NULL, lease_until = NULL
    FROM unnest($1::bigint[], $2::text[]) AS r (id, owner)
    WHERE d.id = r.id AND d.lease_owner = r.owner
    RETURNING d.id
)
SELECT pg_notify($3, '') FROM (SELECT 1 FROM released LIMIT 1) AS any_released`

// releaseAbandoned gives the deliveries of abandoned handoffs back to the
// claimers and reports whether it did; if it cannot, they are claimable
// once their lease ends.
func (s *Store) releaseAbandoned(ctx context.Context, ids []int64, owners []string) bool {
	if _, err := s.pool.Exec(ctx, releaseAbandonedSQL, ids, owners, s.channel); err != nil {
		s.log.WithError(err).WithField("deliveries", len(ids)).
			Warn("release deliveries of an abandoned handoff; they are claimable when their lease ends")
		return false
	}
	return true
}
