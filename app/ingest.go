package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// router picks the targets an event of a kind goes to.
type router interface {
	Match(k event.Kind) []string
}

// fanoutIngester writes an event with one delivery per matching target; it is
// where the webhook path and the reconcile path meet the store.
type fanoutIngester struct {
	store    store.Store
	router   router
	enqueued *prometheus.CounterVec
}

func (f *fanoutIngester) Ingest(ctx context.Context, ev event.Event) (bool, error) {
	err := f.store.Ingest(ctx, ev, f.router.Match(ev.Kind))
	if errors.Is(err, store.ErrDuplicate) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("ingest %s: %w", ev.Key, err)
	}
	f.enqueued.WithLabelValues(string(ev.Source)).Inc()
	return false, nil
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
