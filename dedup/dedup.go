package dedup

import (
	"context"
	"errors"
	"fmt"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wamm-relay/wamm-relay/event"
)

// Ingester makes an event durable and reports whether it was already known.
type Ingester interface {
	Ingest(ctx context.Context, ev event.Event) (duplicate bool, err error)
}

// Options configures a Cache.
type Options struct {
	// Size is how many keys the LRU holds.
	Size int
	// Next is the durable ingester the cache fronts.
	Next Ingester
	// Registerer receives the cache's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

func (o Options) validate() error {
	if o.Size < 1 {
		return fmt.Errorf("dedup: Size must be positive, got %d", o.Size)
	}
	if o.Next == nil {
		return errors.New("dedup: Next ingester is required")
	}
	return nil
}

// Cache is an Ingester that short-circuits keys it has seen committed.
type Cache struct {
	keys    *lru.Cache[event.Key, struct{}]
	next    Ingester
	lookups *prometheus.CounterVec
}

// New returns a Cache in front of opts.Next.
func New(opts Options) (*Cache, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	keys, err := lru.New[event.Key, struct{}](opts.Size)
	if err != nil {
		return nil, fmt.Errorf("dedup: create lru: %w", err)
	}
	c := &Cache{
		keys: keys,
		next: opts.Next,
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_dedup_lru_lookups_total",
			Help: "Event keys looked up in the in-memory dedup cache, by result (hit answers a duplicate without the store).",
		}, []string{"result"}),
	}
	// Both series exist from the start, so a hit ratio is defined at once.
	c.lookups.WithLabelValues("hit")
	c.lookups.WithLabelValues("miss")
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(c.lookups); err != nil {
			return nil, fmt.Errorf("dedup: register metrics: %w", err)
		}
	}
	return c, nil
}

// Ingest reports a cached key as a duplicate at once; otherwise it asks the
// next ingester and remembers the key once that ingester has made it durable.
func (c *Cache) Ingest(ctx context.Context, ev event.Event) (bool, error) {
	if c.keys.Contains(ev.Key) {
		c.lookups.WithLabelValues("hit").Inc()
		return true, nil
	}
	c.lookups.WithLabelValues("miss").Inc()
	dup, err := c.next.Ingest(ctx, ev)
	if err != nil {
		return false, err
	}
	c.keys.Add(ev.Key, struct{}{})
	return dup, nil
}

// Forget drops keys from the cache, for when the store stops holding them
// (retention pruning) and a later event with the same key must be relayed.
func (c *Cache) Forget(keys ...event.Key) {
	for _, k := range keys {
		c.keys.Remove(k)
	}
}

// Len is how many keys the cache holds.
func (c *Cache) Len() int { return c.keys.Len() }
