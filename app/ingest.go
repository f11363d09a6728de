package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/targets"
)

// router picks the targets an event of a kind goes to.
type router interface {
	Match(k event.Kind, channel string) []string
}

// fanoutIngester writes an event with one delivery per matching target; it is
// where the webhook path and the reconcile path meet the store.
type fanoutIngester struct {
	store    store.Store
	router   router
	enqueued *prometheus.CounterVec
	// handoff, when set and the store can lease at ingest, hands a new
	// event's deliveries to idle workers without a claim.
	handoff handoff
}

// handoff reserves idle workers for a new event's deliveries
// (*targets.Dispatcher).
type handoff interface {
	Reserve(targets []string) *targets.Reservation
}

func (f *fanoutIngester) Ingest(ctx context.Context, ev event.Event) (bool, error) {
	matched := f.router.Match(ev.Kind, ev.Channel)
	err := f.ingest(ctx, ev, matched)
	if errors.Is(err, store.ErrDuplicate) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("ingest %s: %w", ev.Key, err)
	}
	f.enqueued.WithLabelValues(string(ev.Source)).Inc()
	return false, nil
}

func (f *fanoutIngester) ingest(ctx context.Context, ev event.Event, matched []string) error {
	hs, ok := f.store.(store.HandoffIngester)
	if !ok || f.handoff == nil || len(matched) == 0 {
		return f.store.Ingest(ctx, ev, matched)
	}
	r := f.handoff.Reserve(matched)
	if r == nil {
		return f.store.Ingest(ctx, ev, matched)
	}
	// Exactly one of Start and Cancel must follow, even when the ingest
	// panics: the dispatcher's drain waits for every reservation.
	started := false
	defer func() {
		if !started {
			r.Cancel()
		}
	}()
	ds, err := hs.IngestHandoff(ctx, ev, matched, r.Lease())
	if err != nil {
		return err
	}
	started = true
	r.Start(ds)
	return nil
}

// seenIngester records an event as already relayed, with no deliveries: the
// reconciler's first-run baseline.
type seenIngester struct {
	store store.Store
}

func (s seenIngester) Ingest(ctx context.Context, ev event.Event) (bool, error) {
	err := s.store.Ingest(ctx, ev, nil)
	if errors.Is(err, store.ErrDuplicate) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("record %s as seen: %w", ev.Key, err)
	}
	return false, nil
}
