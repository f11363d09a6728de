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
// webhook is then a duplicate and the reconciler knows the message: the
// delivery waits for the lease. So each ingest transaction reads its
// transaction id, and after a failure the releaser asks the server what
// became of it (txid_status) until it is decided. Only a transaction that
// committed has its handoff leases given back, and only those with the
// handoff's owner and end: they are the batch's own, since a duplicate of
// one of its events in another batch inserts nothing and leases nothing,
// and a claim takes only deliveries whose lease has ended. A transaction
// that aborted leased nothing.

// releaseUncertainSQL clears the leases a committed ingest batch handed
// off, and tells every instance they are claimable.
const releaseUncertainSQL = `
WITH released AS (
    UPDATE deliveries d SET lease_owner = NULL, lease_until = NULL
    FROM events e, unnest($1::text[], $2::text[], $3::timestamptz[]) AS h (key, owner, until)
    WHERE e.key = h.key AND d.event_id = e.id AND d.status = 'pending'
      AND d.lease_owner = h.owner AND d.lease_until = h.until
    RETURNING d.id
)
SELECT count(*) FROM released`

const (
	// uncertainRetry is how often the releaser looks again while a
	// transaction is undecided or the database does not answer.
	uncertainRetry = 250 * time.Millisecond
	// maxUncertain bounds the batches waiting to be decided; past it the
	// oldest are left to their leases' end.
	maxUncertain = 1000
)

// uncertainBatch is a failed ingest batch's transaction and what it handed
// off.
type uncertainBatch struct {
	xid          int64
	keys, owners []string
	untils       []time.Time
	// until is the last of the leases' ends: after it there is nothing to
	// give back.
	until time.Time
}

// noteUncertain queues the handoff leases of batch, whose transaction xid
// failed to commit as far as the client knows, for the releaser.
func (s *Store) noteUncertain(xid int64, batch []*store.IngestRequest, order []int) {
	u := uncertainBatch{xid: xid}
	for _, i := range order {
		r := batch[i]
		if r.Handoff == nil || len(r.Handoff.Targets) == 0 {
			continue
		}
		u.keys = append(u.keys, string(r.Event.Key))
		u.owners = append(u.owners, r.Handoff.Owner)
		u.untils = append(u.untils, r.Handoff.Until)
		if r.Handoff.Until.After(u.until) {
			u.until = r.Handoff.Until
		}
	}
	if len(u.keys) == 0 || xid == 0 {
		return
	}
	s.uncertainMu.Lock()
	if len(s.uncertain) >= maxUncertain {
		s.uncertain = s.uncertain[1:]
	}
	s.uncertain = append(s.uncertain, u)
	s.uncertainMu.Unlock()
	select {
	case s.uncertainPoke <- struct{}{}:
	default:
	}
}

// runReleaser decides the queued batches until ctx ends: one goroutine for
// all of them, so an outage does not start one per failed batch.
func (s *Store) runReleaser(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.uncertainPoke:
		}
		for s.settleUncertain(ctx) > 0 {
			if !sleepCtx(ctx, uncertainRetry) {
				return
			}
		}
	}
}

// settleUncertain looks at each queued batch once and returns how many are
// still undecided.
func (s *Store) settleUncertain(ctx context.Context) int {
	s.uncertainMu.Lock()
	pending := append([]uncertainBatch(nil), s.uncertain...)
	s.uncertainMu.Unlock()
	done := make(map[int64]bool, len(pending))
	for _, u := range pending {
		if !s.now().Before(u.until) {
			done[u.xid] = true // the leases have ended: the claimers have them
			continue
		}
		decided, err := s.releaseIfCommitted(ctx, u)
		if err != nil {
			break // the database does not answer: all of them later
		}
		done[u.xid] = decided
	}
	s.uncertainMu.Lock()
	defer s.uncertainMu.Unlock()
	kept := s.uncertain[:0]
	for _, u := range s.uncertain {
		if !done[u.xid] {
			kept = append(kept, u)
		}
	}
	s.uncertain = kept
	return len(kept)
}

// releaseIfCommitted gives back u's leases if its transaction committed;
// decided is false while the server has not finished it.
func (s *Store) releaseIfCommitted(ctx context.Context, u uncertainBatch) (decided bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.CommitTimeout)
	defer cancel()
	var status *string
	if err := s.pool.QueryRow(ctx, "SELECT txid_status($1)", u.xid).Scan(&status); err != nil {
		return false, err
	}
	switch {
	case status == nil:
		return true, nil // too old to tell: long past any lease
	case *status == "in progress":
		return false, nil
	case *status != "committed":
		return true, nil // aborted: it leased nothing
	}
	var n int64
	if err := s.pool.QueryRow(ctx, releaseUncertainSQL, u.keys, u.owners, u.untils).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		s.log.WithField("deliveries", n).
			Info("an ingest batch reported as failed had committed; its handed-off deliveries are claimable now")
		s.wakeAll()
		s.notifyOthers()
	}
	return true, nil
}
