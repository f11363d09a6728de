package postgres

import (
	"context"
	"time"

	"github.com/wamm-relay/wamm-relay/store"
)

// An ingest batch whose commit fails may still have committed: when the
// connection is lost during COMMIT the client cannot tell. Its callers get
// the error (the webhook a 503), so nobody attempts the deliveries the
// batch handed off, yet if the commit went through they are leased to this
// instance until the lease ends, 40 s or more later. WAMM's retry of the
// webhook is then a duplicate, and the reconciler knows the message: the
// delivery waits for the lease. So after a failed batch the store gives
// those leases back, once the database answers again: only leases with the
// handoff's exact owner and end, which no claim can have taken meanwhile
// (a claim takes only deliveries whose lease has ended). If the batch did
// not commit, nothing matches.

// releaseUncertainSQL clears the leases a failed ingest batch may have
// committed, and tells every instance they are claimable.
const releaseUncertainSQL = `
WITH released AS (
    UPDATE deliveries d SET lease_owner = NULL, lease_until = NULL
    FROM events e, unnest($1::text[], $2::text[], $3::timestamptz[]) AS h (key, owner, until)
    WHERE e.key = h.key AND d.event_id = e.id AND d.status = 'pending'
      AND d.lease_owner = h.owner AND d.lease_until = h.until
    RETURNING d.id
)
SELECT count(*) FROM released`

// uncertainRetry is how often the release is tried while the database does
// not answer.
const uncertainRetry = 250 * time.Millisecond

// releaseUncertain starts giving back the handoff leases of batch, whose
// commit failed, retrying until the database answers or the leases end.
func (s *Store) releaseUncertain(batch []*store.IngestRequest, order []int) {
	var (
		keys, owners []string
		untils       []time.Time
		last         time.Time
	)
	for _, i := range order {
		r := batch[i]
		if r.Handoff == nil || len(r.Handoff.Targets) == 0 {
			continue
		}
		keys = append(keys, string(r.Event.Key))
		owners = append(owners, r.Handoff.Owner)
		untils = append(untils, r.Handoff.Until)
		if r.Handoff.Until.After(last) {
			last = r.Handoff.Until
		}
	}
	if len(keys) == 0 || s.closed.Load() {
		return
	}
	s.wg.Go(func() {
		ctx, cancel := context.WithDeadline(s.background, last)
		defer cancel()
		for {
			var n int64
			err := s.pool.QueryRow(ctx, releaseUncertainSQL, keys, owners, untils).Scan(&n)
			if err == nil {
				if n > 0 {
					s.log.WithField("deliveries", n).
						Info("an ingest batch reported as failed had committed; its handed-off deliveries are claimable now")
					s.wakeAll()
					s.notifyOthers()
				}
				return
			}
			if !sleepCtx(ctx, uncertainRetry) {
				return // the leases have ended, or the store is closing
			}
		}
	})
}
