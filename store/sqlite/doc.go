// Package sqlite is the embedded store.Store backend: one database file in
// WAL mode with synchronous=FULL, so an ingest returns only once its event
// and deliveries are on disk, with concurrent ingests sharing one fsync
// through store.Batcher. All writes go through a single connection (SQLite
// has one writer anyway) while List, stats and lookups use a read pool; the
// schema is migrated from embedded SQL files on Open. It serves one relay
// instance: leader election is trivially held and it does not coordinate
// with other processes beyond SQLite's own file locking.
package sqlite
