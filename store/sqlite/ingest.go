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

// Ingest writes ev and one pending delivery per target, due and created at
// ev.ReceivedAt (the wall clock when that is zero), in a group commit shared
// with the ingests running at the same time. It returns once the transaction
// is durable; store.ErrDuplicate when the key is already stored.
func (s *Store) Ingest(ctx context.Context, ev event.Event, targets []string) error {
	if err := s.open("ingest event"); err != nil {
		return err
	}
	if ev.Key == "" {
		return errors.New("ingest event: key is empty")
	}
	if ev.ReceivedAt.IsZero() {
		ev.ReceivedAt = time.Now()
	}
	err := s.batch.Do(ctx, store.IngestRequest{Event: ev, Targets: targets})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrDuplicate):
		return store.ErrDuplicate
	default:
		return s.fail("ingest event", err)
	}
}

// commitIngest is the batcher's CommitFunc: the whole batch in one
// transaction, one fsync. A key already stored (or repeated earlier in the
// batch) inserts no row and gets ErrDuplicate; any other failure rolls the
// batch back and fails every request in it.
func (s *Store) commitIngest(ctx context.Context, batch []store.IngestRequest) []error {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()

	results := make([]error, len(batch))
	inserted := 0
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		insEvent, err := tx.PrepareContext(ctx, `
			INSERT INTO events (key, kind, source, msg_id, state, body, received_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (key) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("prepare event insert: %w", err)
		}
		defer insEvent.Close()
		insDelivery, err := tx.PrepareContext(ctx, `
			INSERT INTO deliveries (event_id, target, status, next_attempt_at, created_at, updated_at)
			VALUES (?, ?, 'pending', ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("prepare delivery insert: %w", err)
		}
		defer insDelivery.Close()

		inserted = 0
		for i, req := range batch {
			results[i] = nil
			ev := req.Event
			body := ev.Body
			if body == nil {
				body = []byte{}
			}
			at := ms(ev.ReceivedAt)
			res, err := insEvent.ExecContext(ctx, string(ev.Key), string(ev.Kind), string(ev.Source), ev.MsgID, ev.State, body, at)
			if err != nil {
				return fmt.Errorf("insert event %s: %w", ev.Key, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("insert event %s: %w", ev.Key, err)
			}
			if n == 0 {
				results[i] = store.ErrDuplicate
				continue
			}
			eventID, err := res.LastInsertId()
			if err != nil {
				return fmt.Errorf("insert event %s: %w", ev.Key, err)
			}
			for _, target := range req.Targets {
				if _, err := insDelivery.ExecContext(ctx, eventID, target, at, at, at); err != nil {
					return fmt.Errorf("insert delivery of %s for %s: %w", ev.Key, target, err)
				}
			}
			inserted++
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("commit ingest batch: %w", err)
		for i := range results {
			results[i] = err
		}
		return results
	}
	if inserted > 0 {
		s.wake.Notify()
	}
	return results
}
