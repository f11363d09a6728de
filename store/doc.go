// Package store is the outbox contract: the Store interface that the SQLite
// and PostgreSQL backends implement, the request types it takes, and the
// sentinel errors callers branch on. An event and its deliveries are written
// in one transaction, and the unique event key is the truth for dedup across
// restarts and instances. The package also carries the two mechanisms both
// backends share: group commit (Batcher) and the wake signal (Signal).
// It knows nothing of HTTP, targets or WAMM.
package store
