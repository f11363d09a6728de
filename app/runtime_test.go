package app

import (
	"io"
	"os"
	"runtime/debug"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/config"
)

// unsetenv removes key for the test and puts it back afterwards.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "") // registers the restore
	require.NoError(t, os.Unsetenv(key))
}

func TestTuneGC(t *testing.T) {
	// The test changes process-wide settings: put them back.
	gcPercent := debug.SetGCPercent(100)
	memLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gcPercent)
		debug.SetMemoryLimit(memLimit)
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg := config.Default()
	cfg.Dedup.LRUSize = 100000

	tests := []struct {
		name           string
		gogc, memlim   string // "" leaves the variable unset
		wantPercent    int
		wantLimitMiB   int64
		limitUntouched bool
	}{
		{name: "defaults", wantPercent: 200, wantLimitMiB: 64},
		{name: "GOGC set", gogc: "80", wantPercent: 100, wantLimitMiB: 64},
		{name: "GOMEMLIMIT set", memlim: "1GiB", wantPercent: 200, limitUntouched: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(1 << 40)
			for key, v := range map[string]string{"GOGC": tt.gogc, "GOMEMLIMIT": tt.memlim} {
				if v == "" {
					unsetenv(t, key)
				} else {
					t.Setenv(key, v)
				}
			}
			TuneGC(cfg, log)
			require.Equal(t, tt.wantPercent, debug.SetGCPercent(100))
			limit := debug.SetMemoryLimit(-1)
			if tt.limitUntouched {
				require.Equal(t, int64(1<<40), limit)
			} else {
				require.Equal(t, tt.wantLimitMiB, limit>>20)
			}
		})
	}
}
