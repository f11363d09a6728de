// Package event holds the domain types every layer of the relay shares: the
// Event that enters the outbox, its dedup Key, the Delivery a target worker
// claims, and the Outcome it records. It depends on the standard library only,
// so the HTTP, store, delivery and reconcile layers can all speak it without
// importing each other.
package event
