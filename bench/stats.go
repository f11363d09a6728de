package main

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// samples collects durations; Add is safe for concurrent use. Percentiles are
// exact (every sample is kept), which at the sizes the scenarios produce
// (at most a few million) costs a few tens of MB in the bench process only.
type samples struct {
	mu sync.Mutex
	v  []time.Duration
}

func (s *samples) Add(d time.Duration) {
	s.mu.Lock()
	s.v = append(s.v, d)
	s.mu.Unlock()
}

// AddAll merges a batch collected by one goroutine.
func (s *samples) AddAll(ds []time.Duration) {
	s.mu.Lock()
	s.v = append(s.v, ds...)
	s.mu.Unlock()
}

// Summary sorts the samples and returns their percentiles.
func (s *samples) Summary() summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.Sort(s.v)
	return summary{sorted: s.v}
}

type summary struct{ sorted []time.Duration }

func (s summary) N() int { return len(s.sorted) }

// P returns the q-quantile (0 < q <= 1) by the nearest-rank method; 0 when
// there are no samples.
func (s summary) P(q float64) time.Duration {
	n := len(s.sorted)
	if n == 0 {
		return 0
	}
	i := int(q*float64(n)+0.999999) - 1
	i = max(0, min(i, n-1))
	return s.sorted[i]
}

func (s summary) Max() time.Duration {
	if len(s.sorted) == 0 {
		return 0
	}
	return s.sorted[len(s.sorted)-1]
}

// ms formats a duration as milliseconds with enough precision for
// sub-millisecond latencies.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

// mib formats bytes as MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// ratio formats a/b, or "n/a" when b is zero.
func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}
