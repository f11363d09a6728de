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
// with the ingests and recorded outcomes running at the same time. It returns once the transaction
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
	err := s.writer.do(ctx, &writeOp{ingest: &store.IngestRequest{Event: ev, Targets: targets}})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrDuplicate):
		return store.ErrDuplicate
	default:
		return s.fail("ingest event", err)
	}
}

// ingestOne writes one ingest request inside a group commit: the event, or
// nothing and store.ErrDuplicate when its key is already stored (or repeated
// earlier in the batch), then one pending delivery per target. inserted
// reports that the event is new.
func ingestOne(ctx context.Context, insEvent, insDelivery *sql.Stmt, req *store.IngestRequest) (inserted bool, err error) {
	ev := req.Event
	body := ev.Body
	if body == nil {
		body = []byte{}
	}
	at := ms(ev.ReceivedAt)
	res, err := insEvent.ExecContext(ctx, string(ev.Key), string(ev.Kind), string(ev.Source), ev.MsgID, ev.State, body, at)
	if err != nil {
		return false, fmt.Errorf("insert event %s: %w", ev.Key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert event %s: %w", ev.Key, err)
	}
	if n == 0 {
		return false, store.ErrDuplicate
	}
	eventID, err := res.LastInsertId()
	if err != nil {
		return false, fmt.Errorf("insert event %s: %w", ev.Key, err)
	}
	for _, target := range req.Targets {
		if _, err := insDelivery.ExecContext(ctx, eventID, target, at); err != nil {
			return false, fmt.Errorf("insert delivery of %s for %s: %w", ev.Key, target, err)
		}
	}
	return true, nil
}
