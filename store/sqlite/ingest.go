package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// Ingest writes ev and one pending delivery per target, due and created at
// ev.ReceivedAt (the wall clock when that is zero), in a group commit shared
// with the ingests and recorded outcomes running at the same time. It
// returns once the transaction is durable; store.ErrDuplicate when the key
// is already stored.
func (s *Store) Ingest(ctx context.Context, ev event.Event, targets []string) error {
	return s.ingest(ctx, &store.IngestRequest{Event: ev, Targets: targets})
}

// IngestHandoff is Ingest that also leases the deliveries of
// lease.Targets to lease.Owner until lease.Until, in the same group commit,
// and returns them ready to attempt (see store.HandoffIngester).
func (s *Store) IngestHandoff(ctx context.Context, ev event.Event, targets []string, lease store.HandoffLease) ([]event.Delivery, error) {
	if err := s.open("ingest event"); err != nil {
		return nil, err
	}
	if lease.Owner == "" {
		return nil, errors.New("ingest event: lease owner is empty")
	}
	req := &store.IngestRequest{Event: ev, Targets: targets}
	if err := s.lock.hold(); err == nil {
		req.Handoff = &lease
	}
	// Otherwise another process delivers from this file (a relay still
	// shutting down beside its replacement): the event is stored for it,
	// unleased. A handoff is only a shortcut; the webhook must not fail for
	// it.
	if err := s.ingest(ctx, req); err != nil {
		return nil, err
	}
	return req.Leased, nil
}

// ingest validates req and writes it through the group commit.
func (s *Store) ingest(ctx context.Context, req *store.IngestRequest) error {
	if err := s.open("ingest event"); err != nil {
		return err
	}
	if req.Event.Key == "" {
		return errors.New("ingest event: key is empty")
	}
	if req.Event.ReceivedAt.IsZero() {
		req.Event.ReceivedAt = time.Now()
	}
	err := s.writer.do(ctx, &writeOp{ingest: req})
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
// earlier in the batch), then one pending delivery per target, leased for a
// handoff where the request asks. inserted reports that the event is new,
// unleased that it wrote an unleased delivery (or none at all), which is
// what a claim must be woken for.
func ingestOne(ctx context.Context, st ingestStmts, req *store.IngestRequest) (inserted, unleased bool, err error) {
	ev := req.Event
	body := ev.Body
	if body == nil {
		body = []byte{}
	}
	at := ms(ev.ReceivedAt)
	res, err := st.event.ExecContext(ctx, string(ev.Key), string(ev.Kind), string(ev.Source), ev.MsgID, ev.State, body, at, channelOf(ev), ev.Chat)
	if err != nil {
		return false, false, fmt.Errorf("insert event %s: %w", ev.Key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, false, fmt.Errorf("insert event %s: %w", ev.Key, err)
	}
	if n == 0 {
		return false, false, store.ErrDuplicate
	}
	eventID, err := res.LastInsertId()
	if err != nil {
		return false, false, fmt.Errorf("insert event %s: %w", ev.Key, err)
	}
	unleased = len(req.Targets) == 0
	req.Leased = req.Leased[:0]
	for _, target := range req.Targets {
		res, err := st.delivery.ExecContext(ctx, eventID, target, at)
		if err != nil {
			return false, false, fmt.Errorf("insert delivery of %s for %s: %w", ev.Key, target, err)
		}
		if req.Handoff == nil || !slices.Contains(req.Handoff.Targets, target) {
			unleased = true
			continue
		}
		// Leased in memory once the transaction commits (commitWrites).
		id, err := res.LastInsertId()
		if err != nil {
			return false, false, fmt.Errorf("insert delivery of %s for %s: %w", ev.Key, target, err)
		}
		t := fromMS(sql.NullInt64{Int64: at, Valid: true})
		req.Leased = append(req.Leased, event.Delivery{
			ID: id, Target: target, EventKey: ev.Key, Kind: ev.Kind, Source: ev.Source, Body: body,
			Status: event.StatusPending, NextAttemptAt: t, CreatedAt: t, UpdatedAt: t,
		})
	}
	return true, unleased, nil
}

// ingestStmts are the statements of ingestOne, bound to the transaction.
type ingestStmts struct{ event, delivery *sql.Stmt }

// channelOf is the channel column of ev: DefaultChannel when it names none.
func channelOf(ev event.Event) string {
	if ev.Channel == "" {
		return event.DefaultChannel
	}
	return ev.Channel
}
