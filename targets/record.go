package targets

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// record stores the outcome of an attempt that began at began. An outcome
// the store refused for a full disk is tried again, with backoff, until
// the lease would end (or the shutdown's hard deadline): the target has
// answered, and an outcome given up on means the delivery is sent again
// once its lease expires, a duplicate for a delivered one. A full disk is
// the one failure known to end with the same write succeeding; others
// leave the lease to expire at once, as before.
func (p *pool) record(hard context.Context, dl event.Delivery, out event.Outcome, began time.Time) error {
	until := began.Add(p.lease)
	wait := storeRetryMin
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), storeOpTimeout)
		err := p.d.opts.Store.Record(ctx, dl.ID, p.d.opts.Owner, out)
		cancel()
		entry := func() logrus.FieldLogger {
			return p.log.WithFields(logrus.Fields{"event_key": dl.EventKey, "delivery_id": dl.ID, "tries": try})
		}
		if err == nil {
			if try > 1 {
				entry().Info("outcome recorded once the store had space again")
			}
			return nil
		}
		if !errors.Is(err, store.ErrDiskFull) || time.Now().Add(wait).After(until) {
			return err
		}
		if try == 1 {
			// The store logs the full disk itself; this says what waits on it.
			entry().WithError(err).Warn("outcome not recorded: the store's disk is full; retrying until space returns or the lease ends")
		}
		timer := time.NewTimer(wait)
		select {
		case <-hard.Done():
			timer.Stop()
			return err
		case <-timer.C:
		}
		wait = min(2*wait, storeRetryMax)
	}
}
