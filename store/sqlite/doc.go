// Package sqlite is the embedded store.Store backend: one database file in
// WAL mode with synchronous=FULL, so an ingest returns only once its event
// and deliveries are on disk; a commit of delivery outcomes alone skips its
// fsync and is made durable within Options.OutcomeSync. Ingests and recorded outcomes go through one
// committer on the single writer connection that puts whatever is queued
// into one transaction, so concurrent webhooks and delivery workers share
// one fsync; claims run on that committer too, between commits. Leases live
// in memory, not in the file: one process delivers from a file (a lock file
// beside it says which), so a claim writes nothing, and a restarted relay
// finds the deliveries it had in flight due again at once. Hot statements
// are prepared once. Reads for List, stats and lookups use a separate pool;
// the schema is migrated from embedded SQL files on Open. Leader election is
// trivially held.
package sqlite
