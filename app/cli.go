package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/store"
)

// The CLI verbs (deliveries list/replay) speak the store's request types;
// these aliases let cmd use them without importing store or event, so the
// command stays a thin layer over app.
type (
	// Delivery is one event bound for one target.
	Delivery = event.Delivery
	// DeliveryStatus is pending, delivered or dead.
	DeliveryStatus = event.Status
	// ListFilter selects deliveries to list.
	ListFilter = store.ListFilter
	// ReplayRequest selects deliveries to replay.
	ReplayRequest = store.ReplayRequest
	// Store is the outbox.
	Store = store.Store
	// GapFilter selects reconciler gaps to list.
	GapFilter = store.GapFilter
	// PurgeRequest selects a target's pending deliveries to end.
	PurgeRequest = store.PurgeRequest
	// ReassignRequest moves pending deliveries to another target.
	ReassignRequest = store.ReassignRequest
)

// GapJSON renders a gap as GET /api/v1/gaps does.
func GapJSON(g store.Gap) any { return relay.GapJSON(g) }

// PurgedError is the last error of the deliveries `deliveries purge` ends.
const PurgedError = store.PurgedError

// PendingOf returns how many deliveries of target are pending in st.
func PendingOf(ctx context.Context, st Store, target string) (int, error) {
	stats, err := st.QueueStats(ctx)
	if err != nil {
		return 0, fmt.Errorf("read queue stats: %w", err)
	}
	for _, s := range stats {
		if s.Target == target {
			return s.Pending, nil
		}
	}
	return 0, nil
}

// Delivery statuses.
const (
	StatusPending   = event.StatusPending
	StatusDelivered = event.StatusDelivered
	StatusDead      = event.StatusDead
)

// ErrBackupUnsupported: the store cannot copy itself (PostgreSQL, whose own
// tools, pg_dump or a base backup, do it better).
var ErrBackupUnsupported = errors.New("this store is backed up with its database's own tools")

// Backup writes an online, consistent copy of st to the new file dest (see
// store.Backuper).
func Backup(ctx context.Context, st Store, dest string) error {
	b, ok := st.(store.Backuper)
	if !ok {
		return ErrBackupUnsupported
	}
	if err := b.Backup(ctx, dest); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}
