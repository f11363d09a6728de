// Package targets delivers the outbox to HTTP targets: the target table that
// routes each event kind to targets, and a Dispatcher running one loop and
// one bounded worker pool per target, so a slow or failing target never
// delays another. Each attempt is a signed (Standard Webhooks) POST of the
// stored body, classified by one function into delivered, retry with
// exponential backoff and jitter, or dead; only an attempt the target failed
// is charged, while work the relay itself could not attempt (shutdown) is
// released. It does not store or deduplicate anything: leases, attempt
// counts and dead-lettering live in the store behind the Store interface.
package targets
