package app

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/store"
)

// pruner deletes events older than the dedup retention whose deliveries are
// finished, so the store does not grow forever.
type pruner struct {
	store     store.Store
	retention time.Duration
	interval  time.Duration
	log       logrus.FieldLogger
	now       func() time.Time
}

// Run prunes once at start and then every interval. Failures are logged and
// retried at the next tick: pruning late is harmless.
func (p *pruner) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.PruneOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PruneOnce deletes what retention allows.
func (p *pruner) PruneOnce(ctx context.Context) {
	n, err := p.store.Prune(ctx, p.now().Add(-p.retention))
	switch {
	case err != nil && ctx.Err() == nil:
		p.log.WithError(err).Warn("prune expired events failed; retrying at the next interval")
	case n > 0:
		p.log.WithField("events", n).Info("pruned expired events")
	}
}
