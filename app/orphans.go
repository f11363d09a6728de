package app

import (
	"context"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/store"
)

// orphanCheckTimeout bounds the start-up look for orphaned deliveries; a
// slow store only loses the warning (the gauge and the admin API still
// show them).
const orphanCheckTimeout = 10 * time.Second

// warnOrphans logs one warning per target that has pending deliveries in
// the store but is not configured: nothing delivers them, so they would sit
// there silently. The gauge wamm_relay_orphaned_pending_deliveries and
// GET /api/v1/targets ("configured": false) report them too, live.
func warnOrphans(ctx context.Context, st store.Store, configured []string, log logrus.FieldLogger) {
	ctx, cancel := context.WithTimeout(ctx, orphanCheckTimeout)
	defer cancel()
	stats, err := st.QueueStats(ctx)
	if err != nil {
		log.WithError(err).Warn("could not look for pending deliveries of removed targets")
		return
	}
	for _, s := range stats {
		if s.Pending == 0 || slices.Contains(configured, s.Target) {
			continue
		}
		log.WithFields(logrus.Fields{"target": s.Target, "pending": s.Pending}).Warn(
			"target is not configured but has pending deliveries nobody will send; " +
				"run `wamm-relay deliveries purge --target` or `deliveries reassign --from` for it")
	}
}
