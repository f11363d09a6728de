package postgres

import (
	"context"
	"fmt"
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
// background once VacuumEvery have been recorded since the last one ended,
// unless one is still running or vacuuming turned out to be impossible.
func (s *Store) noteOutcomes(n int) {
	every := int64(s.opts.VacuumEvery)
	if every <= 0 || n == 0 || s.closed.Load() || s.cannotVacuum.Load() {
		return
	}
	if s.sinceVacuum.Add(int64(n)) < every || !s.vacuuming.CompareAndSwap(false, true) {
		return
	}
	s.wg.Go(func() {
		defer s.vacuuming.Store(false)
		s.vacuum(s.background)
		// Count from the end, so that a VACUUM slower than VacuumEvery
		// outcomes is not followed by another at once.
		s.sinceVacuum.Store(0)
	})
}

// vacuum runs one VACUUM of the deliveries table. A failure is logged and
// otherwise ignored: the next one may succeed, and the relay works without.
func (s *Store) vacuum(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, vacuumTimeout)
	defer cancel()
	table := pgx.Identifier{s.schema, "deliveries"}.Sanitize()
	if !s.vacuumChecked {
		s.vacuumChecked = true
		if reason, err := s.vacuumBlocker(ctx, table); err != nil {
			s.logVacuumError(err)
			s.vacuumChecked = false // check again next time
			return
		} else if reason != "" {
			s.cannotVacuum.Store(true)
			s.log.WithField("reason", reason).Warn("not vacuuming deliveries (store.vacuum_every); " +
				"tune autovacuum for the table instead, or claims slow down as dead rows pile up")
			return
		}
	}
	start := time.Now()
	if _, err := s.pool.Exec(ctx, vacuumSQL+table); err != nil {
		s.logVacuumError(err)
		return
	}
	// A VACUUM skipped because another session (autovacuum, another
	// instance) held the table counts too: the table is being vacuumed.
	s.vacuums.Add(1)
	s.log.WithField("duration_ms", time.Since(start).Milliseconds()).Debug("vacuumed deliveries")
}

func (s *Store) logVacuumError(err error) {
	if s.background.Err() == nil { // not cancelled by Close
		s.log.WithError(err).Warn("vacuum deliveries failed; claims slow down as dead rows pile up")
	}
}

// vacuumBlocker returns why this session's VACUUM of table would not run,
// or "" when it would. PostgreSQL does not fail a VACUUM it may not run: it
// skips the table with a warning that only its own log shows.
func (s *Store) vacuumBlocker(ctx context.Context, table string) (string, error) {
	var (
		version int
		owner   bool
	)
	err := s.pool.QueryRow(ctx, `
		SELECT current_setting('server_version_num')::int, pg_has_role(relowner, 'USAGE')
		FROM pg_class WHERE oid = $1::regclass`, table).Scan(&version, &owner)
	if err != nil {
		return "", fmt.Errorf("check vacuum privileges: %w", err)
	}
	switch {
	case version < 120000:
		return "VACUUM (SKIP_LOCKED, INDEX_CLEANUP) needs PostgreSQL 12 or later", nil
	case owner:
		return "", nil
	case version < 170000:
		return "the relay's role does not own the deliveries table", nil
	}
	var maintain bool
	if err := s.pool.QueryRow(ctx, "SELECT has_table_privilege($1::regclass, 'MAINTAIN')", table).Scan(&maintain); err != nil {
		return "", fmt.Errorf("check vacuum privileges: %w", err)
	}
	if !maintain {
		return "the relay's role neither owns the deliveries table nor has MAINTAIN on it", nil
	}
	return "", nil
}
