// Package sqlite is the embedded store.Store backend: one database file in
// WAL mode with synchronous=FULL, so an ingest returns only once its event
// and deliveries are on disk. Every write (ingests, recorded outcomes and
// claims) goes through one committer on the single writer connection that
// puts whatever is queued into one transaction, so concurrent webhooks and
// delivery workers share one fsync; hot statements are prepared once. Reads
// for List, stats and lookups use a separate pool; the schema is migrated
// from embedded SQL files on Open. It serves one relay instance: leader
// election is trivially held and it does not coordinate with other
// processes beyond SQLite's own file locking.
package sqlite
