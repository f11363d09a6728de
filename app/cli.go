package app

import (
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
)

// GapJSON renders a gap as GET /api/v1/gaps does.
func GapJSON(g store.Gap) any { return relay.GapJSON(g) }

// Delivery statuses.
const (
	StatusPending   = event.StatusPending
	StatusDelivered = event.StatusDelivered
	StatusDead      = event.StatusDead
)
