// Package dedup answers repeated events from memory. Cache is an LRU of event
// keys (hashicorp/golang-lru/v2) in front of any Ingester: a key it holds is
// reported as a duplicate without touching the store, and a key is added only
// after the store committed it (or reported it as a duplicate), so the cache
// never claims an event is durable when it is not. The store's unique key stays
// the truth: a repeat that misses the cache (after a restart, or one that
// arrived at another instance) is still caught there.
package dedup
