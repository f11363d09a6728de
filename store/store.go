package store

import (
	"context"
	"errors"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
)

var (
	// ErrDuplicate: an event with the same key is already stored; nothing new
	// was written.
	ErrDuplicate = errors.New("duplicate event")
	// ErrNotFound: no row matched.
	ErrNotFound = errors.New("not found")
	// ErrLeaseLost: the delivery's lease expired or is held by another owner,
	// so this owner may no longer record its outcome.
	ErrLeaseLost = errors.New("lease lost")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrDiskFull: the database's disk (or quota) is full, so the write was
	// rolled back whole; the same write succeeds once space returns. Like
	// any other failure to write it means "unavailable, retry later" (a
	// webhook answers 503), never a permanent refusal.
	ErrDiskFull = errors.New("store disk full")
)

// Store is the durable outbox. Implementations are safe for concurrent use.
type Store interface {
	// Ingest writes the event and one pending delivery per target (due now)
	// in one transaction. An event whose key is already stored returns
	// ErrDuplicate and writes nothing. A nil or empty targets list stores the
	// event as seen (for dedup) with no deliveries. After a successful commit
	// the Wake channel fires.
	Ingest(ctx context.Context, ev event.Event, targets []string) error

	// Claim leases up to req.Limit pending deliveries of req.Target that are
	// due (NextAttemptAt <= req.Now) and not leased by anyone (or whose lease
	// expired), oldest due first, for req.Lease. Bodies are included.
	Claim(ctx context.Context, req ClaimRequest) ([]event.Delivery, error)
	// Record stores the outcome of one attempt on a delivery this owner has
	// leased, counts the attempt and clears the lease. ErrLeaseLost when the
	// lease is no longer the owner's.
	Record(ctx context.Context, id int64, owner string, out event.Outcome) error
	// Release clears this owner's leases on ids without counting an attempt,
	// making them due again at once.
	Release(ctx context.Context, owner string, ids []int64) error
	// NextDue returns when the earliest pending delivery of target becomes
	// claimable (its NextAttemptAt, or its lease expiry when leased);
	// ok is false when the target has no pending delivery.
	NextDue(ctx context.Context, target string) (at time.Time, ok bool, err error)

	// List returns deliveries matching f, newest first (by id).
	List(ctx context.Context, f ListFilter) ([]event.Delivery, error)
	// Replay puts the matching dead (or delivered) deliveries back to pending,
	// due now, with the attempt count reset; it returns how many moved.
	Replay(ctx context.Context, r ReplayRequest) (int, error)
	// TargetStats returns counts per target that has any delivery.
	TargetStats(ctx context.Context) ([]TargetStats, error)
	// QueueStats is TargetStats cut down to what does not grow with the
	// table: Pending, Dead and OldestPending of each target that has a
	// pending or dead delivery, read from those deliveries alone (through
	// indexes of them), so /metrics can ask on every scrape.
	QueueStats(ctx context.Context) ([]TargetStats, error)

	// KnownMessages reports, for each of msgIDs that the store knows in
	// channel ("" is event.DefaultChannel), whether its msg event is stored
	// and which states were relayed for it (the msg event's own state and
	// every msg_state event's state).
	KnownMessages(ctx context.Context, channel string, msgIDs []string) (map[string]KnownMessage, error)
	// HasEvents reports whether any event was ever stored.
	HasEvents(ctx context.Context) (bool, error)
	// HoldLeader tries to take or keep the named leader lock for this store
	// handle and reports whether it holds it now. On an embedded store it is
	// always held; on a shared one exactly one instance holds it at a time,
	// and a dead holder's lock passes on.
	HoldLeader(ctx context.Context, name string) (bool, error)

	// ReconcileStore holds what the reconciler must keep across restarts.
	ReconcileStore
	// TargetPauses holds the operators' pause switches.
	TargetPauses
	// PurgePending marks the pending deliveries of r.Target that are not
	// leased at r.Now dead, with LastError PurgedError, and returns how
	// many; for a target removed from the configuration (see
	// ReassignPending). Leased ones (in flight) are left alone.
	PurgePending(ctx context.Context, r PurgeRequest) (int, error)
	// ReassignPending moves the pending deliveries of r.From that are not
	// leased at r.Now to r.To, due at r.Now with no attempts counted, and
	// returns how many moved. A delivery whose event already has a delivery
	// to r.To stays with r.From (the event is never sent to a target twice).
	ReassignPending(ctx context.Context, r ReassignRequest) (int, error)

	// Prune deletes events received before `before` whose deliveries are all
	// delivered or dead (and those deliveries), so their keys stop counting
	// for dedup. It returns how many events were deleted.
	Prune(ctx context.Context, before time.Time) (int, error)

	// Ping checks the store is reachable.
	Ping(ctx context.Context) error
	// Wake returns a channel that is closed the next time new work may be due:
	// after an ingest or replay commits (on this instance, or on another one
	// sharing the database where the backend can tell).
	Wake() <-chan struct{}
	// Close releases the store's resources and leader locks.
	Close() error
}

// ClaimRequest asks for due deliveries of one target.
type ClaimRequest struct {
	Target string
	Owner  string
	Limit  int
	Lease  time.Duration
	Now    time.Time
}

// ListFilter selects deliveries for List. Zero fields do not filter.
type ListFilter struct {
	Status event.Status
	Target string
	// BeforeID pages backwards: only deliveries with ID < BeforeID.
	BeforeID int64
	Limit    int
	// MsgID, Chat and Channel select by the delivery's event: its message
	// id, its chat (msg_data.phone) and its WAMM channel (an exact match;
	// "" does not filter). Served by the events indexes on msg_id and chat.
	MsgID   string
	Chat    string
	Channel string
	// ID selects the one delivery with this id.
	ID int64
}

// ReplayRequest selects deliveries to replay: either IDs, or Target and
// Status (Status must be dead or delivered; Target may be empty for all).
type ReplayRequest struct {
	IDs    []int64
	Target string
	Status event.Status
	Now    time.Time
}

// PurgedError is the LastError PurgePending gives the deliveries it ends.
const PurgedError = "target removed"

// PurgeRequest selects the pending deliveries of one target to end.
type PurgeRequest struct {
	Target string
	Now    time.Time
}

// ReassignRequest moves pending deliveries from one target to another.
type ReassignRequest struct {
	From, To string
	Now      time.Time
}

// TargetStats summarises one target's deliveries.
type TargetStats struct {
	Target    string
	Pending   int
	Delivered int
	Dead      int
	// OldestPending is the creation time of the oldest pending delivery;
	// zero when none is pending.
	OldestPending time.Time
	// LastError is the error of the most recently failed attempt, with its time.
	LastError   string
	LastErrorAt time.Time
}

// KnownMessage is what the store knows of one WAMM message.
type KnownMessage struct {
	MsgStored bool
	States    []string
}

// HandoffIngester is implemented by stores that can lease some of a new
// event's deliveries to the ingesting instance in the ingest's own
// transaction. The instance then attempts them at once from memory: no
// claim reads them back and none leases them again, which on the hot path
// (a target keeping up) is a third of the store's work per delivery. The
// rest of the deliveries are written pending and unleased as by Ingest.
type HandoffIngester interface {
	// IngestHandoff is Ingest that also leases the deliveries of
	// lease.Targets (a subset of targets) to lease.Owner until lease.Until
	// and returns them, ready to attempt (bodies included), in the order of
	// targets. It fires Wake as Ingest does, except for an event whose every
	// delivery it leased.
	IngestHandoff(ctx context.Context, ev event.Event, targets []string, lease HandoffLease) ([]event.Delivery, error)
}

// HandoffLease says which of an ingest's deliveries to lease, to whom and
// until when.
type HandoffLease struct {
	Targets []string
	Owner   string
	Until   time.Time
}

// Backuper is implemented by stores that can copy themselves online: a
// consistent snapshot written to a new file at path (never overwriting one)
// while the store keeps taking writes. Stores on a database server leave
// this to the server's own tools.
type Backuper interface {
	Backup(ctx context.Context, path string) error
}

// Attempt is one failed attempt of a delivery.
type Attempt struct {
	// Attempt is the attempt's number (1 is the first; numbering restarts
	// after a replay).
	Attempt    int
	At         time.Time
	StatusCode int
	Error      string
}

// AttemptLog is implemented by stores that keep each delivery's failed
// attempts, written by Record in the outcome's own transaction. A
// delivered outcome writes no attempt row (the delivery row describes it).
type AttemptLog interface {
	// Attempts returns delivery id's failed attempts, oldest first; none
	// (and no error) for an unknown id.
	Attempts(ctx context.Context, id int64) ([]Attempt, error)
}
