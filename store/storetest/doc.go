// Package storetest is the conformance suite every store.Store backend must
// pass: Run drives one backend through ingest and dedup, group commit under
// concurrency, claims with leases and lease expiry, attempt recording,
// release, dead-lettering, replay, stats, message lookups and pruning, all on
// an explicit clock. It pins down the contract's corner cases in one place so
// the SQLite and PostgreSQL backends cannot drift apart; it holds no backend
// code and opens no database itself (the caller's Harness does).
package storetest
