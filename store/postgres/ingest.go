package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// Ingest stores ev and one pending delivery per distinct target in one
// transaction, through the group commit. The deliveries are created and due
// at ev.ReceivedAt (now when zero), so claims follow arrival order across
// instances rather than commit order.
func (s *Store) Ingest(ctx context.Context, ev event.Event, targets []string) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if ev.Key == "" {
		return errors.New("ingest event: empty key")
	}
	if err := s.batcher.Do(ctx, store.IngestRequest{Event: ev, Targets: targets}); err != nil {
		return fmt.Errorf("ingest event %s: %w", ev.Key, err)
	}
	return nil
}

// insertBatchSQL writes a whole batch in one statement: the events (skipping
// keys already stored), their deliveries, and the "events were stored" mark.
// It returns the keys it inserted; a key not returned was a duplicate.
//
// Rows go in sorted by key, so two batches racing on overlapping keys take
// their unique-index locks in the same order and cannot deadlock.
const insertBatchSQL = `
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::timestamptz[])
        WITH ORDINALITY AS i (key, kind, source, msg_id, state, body, received_at, ord)
), ins AS (
    INSERT INTO events (key, kind, source, msg_id, state, body, received_at)
    SELECT key, kind, source, msg_id, state, body, received_at FROM input ORDER BY ord
    ON CONFLICT (key) DO NOTHING
    RETURNING id, key, received_at
), dl AS (
    INSERT INTO deliveries (event_id, target, status, next_attempt_at, created_at, updated_at)
    SELECT ins.id, t.target, 'pending', ins.received_at, ins.received_at, ins.received_at
    FROM ins JOIN unnest($8::text[], $9::text[]) WITH ORDINALITY AS t (key, target, ord) ON t.key = ins.key
    ORDER BY ins.id, t.ord
), seen AS (
    INSERT INTO store_meta (name) SELECT 'events_stored' WHERE EXISTS (SELECT 1 FROM ins)
    ON CONFLICT (name) DO NOTHING
)
SELECT key FROM ins`

// commitBatch is the Batcher's CommitFunc: one transaction for the batch,
// with a NOTIFY to the other instances when it inserted anything.
func (s *Store) commitBatch(ctx context.Context, batch []store.IngestRequest) []error {
	results := make([]error, len(batch))
	now := s.now()

	// A key repeated inside the batch: the first occurrence is the one
	// written, later ones are duplicates of it.
	first := make(map[event.Key]int, len(batch))
	order := make([]int, 0, len(batch))
	for i, r := range batch {
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
		bodies                               = make([][]byte, n)
		received                             = make([]time.Time, n)
		dKeys, dTargets                      []string
	)
	for j, i := range order {
		ev := batch[i].Event
		keys[j], kinds[j], sources[j] = string(ev.Key), string(ev.Kind), string(ev.Source)
		msgIDs[j], states[j] = ev.MsgID, ev.State
		bodies[j] = ev.Body
		if bodies[j] == nil {
			bodies[j] = []byte{} // NULL would break NOT NULL
		}
		received[j] = ev.ReceivedAt
		if received[j].IsZero() {
			received[j] = now
		}
		seen := make(map[string]bool, len(batch[i].Targets))
		for _, t := range batch[i].Targets {
			if t == "" || seen[t] {
				continue
			}
			seen[t] = true
			dKeys = append(dKeys, keys[j])
			dTargets = append(dTargets, t)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, s.opts.CommitTimeout)
	defer cancel()
	inserted := make(map[string]bool, n)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, insertBatchSQL,
			keys, kinds, sources, msgIDs, states, bodies, received, dKeys, dTargets)
		if err != nil {
			return err
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, k := range got {
			inserted[k] = true
		}
		if len(got) == 0 {
			return nil
		}
		// The 200 promises durability whatever the server's default: force a
		// synchronous commit for this transaction. The notification reaches
		// listeners only when it commits.
		_, err = tx.Exec(ctx, "SELECT set_config('synchronous_commit', 'on', true), pg_notify($1, '')", s.channel)
		return err
	})
	if err != nil {
		err = fmt.Errorf("commit ingest batch: %w", err)
		for _, i := range order {
			results[i] = err
		}
		return results
	}
	for _, i := range order {
		if !inserted[string(batch[i].Event.Key)] {
			results[i] = store.ErrDuplicate
		}
	}
	if len(inserted) > 0 {
		s.wakeAll()
	}
	return results
}
