package store

import (
	"cmp"
	"slices"
)

// SortedStats returns the stats in m sorted by target, as TargetStats and
// QueueStats return them.
func SortedStats(m map[string]*TargetStats) []TargetStats {
	out := make([]TargetStats, 0, len(m))
	for _, st := range m {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b TargetStats) int { return cmp.Compare(a.Target, b.Target) })
	return out
}
