package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Every outcome leaves dead row versions behind, and with them dead entries
// at the front of the claim index, where every claim starts its scan. Until
// a VACUUM removes them each claim wades through all of them: on a server
// with autovacuum off (or on, with its default threshold of a fifth of the
// table) a backlog drains ever slower. Measured on a 150,000-delivery
// backlog: one VACUUM during the drain took it from about 400 to about
// 3,000 events/s. So the store vacuums the deliveries table itself after
// every Options.VacuumEvery outcomes it recorded.

// DefaultVacuumEvery is Options.VacuumEvery's default.
const DefaultVacuumEvery = 20000

// vacuumTimeout bounds one VACUUM, so a stuck one cannot hold a pool
// connection for good; the next one starts over.
const vacuumTimeout = 10 * time.Minute

// vacuumSQL skips the table when another session (another instance's
// VACUUM, autovacuum) holds it, and always cleans the indexes: with few dead
// rows relative to the table PostgreSQL would otherwise skip index cleanup,
// which is the part the claims need.
const vacuumSQL = "VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) "

// noteOutcomes counts n recorded outcomes and starts a VACUUM in the
// background once VacuumEvery have been recorded since the last one started,
// unless one is still running.
func (s *Store) noteOutcomes(n int) {
	every := int64(s.opts.VacuumEvery)
	if every <= 0 || n == 0 || s.closed.Load() {
		return
	}
	if s.sinceVacuum.Add(int64(n)) < every || !s.vacuuming.CompareAndSwap(false, true) {
		return
	}
	s.sinceVacuum.Store(0)
	s.wg.Go(func() {
		defer s.vacuuming.Store(false)
		s.vacuum(s.background)
	})
}

// vacuum runs one VACUUM of the deliveries table. A failure is logged and
// otherwise ignored: the next one may succeed, and the relay works without.
func (s *Store) vacuum(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, vacuumTimeout)
	defer cancel()
	start := time.Now()
	table := pgx.Identifier{s.schema, "deliveries"}.Sanitize()
	if _, err := s.pool.Exec(ctx, vacuumSQL+table); err != nil {
		if s.background.Err() == nil { // not cancelled by Close
			s.log.WithError(err).Warn("vacuum deliveries failed; claims slow down as dead rows pile up")
		}
		return
	}
	s.vacuums.Add(1)
	s.log.WithField("duration_ms", time.Since(start).Milliseconds()).Debug("vacuumed deliveries")
}
