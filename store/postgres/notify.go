package postgres

import (
	"context"
	"time"
)

// An ingest that leaves deliveries to the claimers tells the other
// instances with a NOTIFY. Sent inside the ingest's transaction, it made
// every such commit take the server's one notification lock, held until
// the commit's WAL flush was done: at saturation about one ingest backend
// in four waited for it (Lock:object), so the group commits of the
// committers ran one after another. The store now sends it from the
// notifier below, after the commit, and sends one for any number of
// commits made while the previous one was on its way. A NOTIFY lost to a
// crash between the commit and the send delays the other instances until
// their idle poll; nothing is lost.

// notifyTimeout bounds one NOTIFY: a stuck one must not stop the next.
const notifyTimeout = 5 * time.Second

// notifyOthers asks the notifier to wake the other instances.
func (s *Store) notifyOthers() {
	select {
	case s.notifyPoke <- struct{}{}:
	default: // one is queued already; it covers this commit too
	}
}

// runNotifier sends a NOTIFY for each poke until ctx ends, then one last
// one if a poke is still waiting.
func (s *Store) runNotifier(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-s.notifyPoke:
			s.sendNotify(ctx)
		case <-ctx.Done():
			select {
			case <-s.notifyPoke:
				s.sendNotify(context.WithoutCancel(ctx))
			default:
			}
			return
		}
	}
}

func (s *Store) sendNotify(ctx context.Context) {
	// A send that has begun finishes (within notifyTimeout) even when
	// Close cancels ctx meanwhile: it may be the last commit's.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, "SELECT pg_notify($1, '')", s.channel); err != nil && ctx.Err() == nil {
		s.log.WithError(err).Debug("wake notification not sent; the other instances find the work at their idle poll")
	}
}
