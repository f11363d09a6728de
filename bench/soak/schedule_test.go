package main

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPlanChaos(t *testing.T) {
	long := chaosOptions{killEvery: 3 * time.Minute, dbRestartEvery: 4 * time.Minute, dbCutEvery: 3 * time.Minute, flapEvery: 2 * time.Minute}
	plan := func(seed uint64, c chaosOptions, d time.Duration) []*fault {
		return planChaos(rand.New(rand.NewPCG(seed, 0x5eed)), c, d, 2, 2)
	}

	t.Run("a short run with no intervals gets one of each kind, forced in", func(t *testing.T) {
		p := plan(1, chaosOptions{}, 45*time.Second)
		for _, k := range []faultKind{faultKill, faultDBRestart, faultDBCut, faultFlap500, faultFlapDown} {
			require.Equal(t, 1, count(p, k), k)
		}
		require.Equal(t, faultKill, p[0].kind, "the kill comes first, so its leases expire before the load ends")
		require.Equal(t, 9*time.Second, p[0].at)
	})

	t.Run("a seed names a schedule", func(t *testing.T) {
		a, b := plan(7, long, 20*time.Minute), plan(7, long, 20*time.Minute)
		require.Equal(t, len(a), len(b))
		for i := range a {
			require.Equal(t, *a[i], *b[i])
		}
	})

	t.Run("a long run sees about window/mean events of each kind, inside the window", func(t *testing.T) {
		d := 20 * time.Minute
		for seed := range uint64(20) {
			p := plan(seed, long, d)
			require.InDelta(t, 4, count(p, faultKill), 2, "seed %d", seed)
			require.InDelta(t, 7, count(p, faultFlap500)+count(p, faultFlapDown), 3, "seed %d", seed)
			for _, f := range p {
				require.GreaterOrEqual(t, f.at, d/10)
				require.Less(t, f.at, d*8/10)
			}
		}
	})
}

func TestByMinute(t *testing.T) {
	at := func(age time.Duration, rss float64) chaosSample {
		return chaosSample{age: age, s: sample{rssBytes: rss * (1 << 20)}}
	}
	ss := []chaosSample{at(60*time.Second, 40), at(75*time.Second, 41), at(2*time.Minute+5*time.Second, 42), at(4*time.Minute, 43)}
	require.Equal(t, "40.0 42.0 43.0", byMinute(ss, func(s sample) float64 { return mib(s.rssBytes) }))
}
