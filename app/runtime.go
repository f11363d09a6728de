package app

import (
	"os"
	"runtime/debug"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/config"
)

// Garbage collector defaults for serve. A relay's live heap is small (the
// dedup LRU is most of it) while it allocates fast (every webhook and every
// attempt is a few HTTP messages), so Go's default of collecting each time
// the heap doubles spent a fifth of the relay's CPU on GC at saturation.
// Collecting at triple the live heap halves that; the soft memory limit
// keeps the resident size where it was: the LRU at its configured size,
// plus a fixed allowance for everything in flight.
const (
	defaultGCPercent = 200
	// memLimitBase covers everything but the LRU; lruKeyBytes is twice the
	// measured cost of one cached key.
	memLimitBase = 40 << 20
	lruKeyBytes  = 256
)

// TuneGC applies the garbage collector defaults above, each unless the
// operator set its environment variable (GOGC, GOMEMLIMIT), and logs what
// it chose.
func TuneGC(cfg config.Config, log logrus.FieldLogger) {
	fields := logrus.Fields{}
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
		fields["gogc"] = defaultGCPercent
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		limit := int64(memLimitBase) + int64(cfg.Dedup.LRUSize)*lruKeyBytes
		debug.SetMemoryLimit(limit)
		fields["gomemlimit_mib"] = limit >> 20
	}
	if len(fields) > 0 {
		log.WithFields(fields).Info("garbage collector tuned (set GOGC or GOMEMLIMIT to override)")
	}
}
