package logx

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock, so intervals end when the test says.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestSampler(t *testing.T, interval time.Duration) (*Sampler, *test.Hook, *fakeClock) {
	t.Helper()
	log, hook := test.NewNullLogger()
	clock := &fakeClock{t: time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC)}
	s, err := NewSampler(log, interval, clock.now)
	require.NoError(t, err)
	return s, hook, clock
}

// messages are the lines written so far, in order.
func messages(hook *test.Hook) []string {
	var out []string
	for _, e := range hook.AllEntries() {
		out = append(out, e.Message)
	}
	return out
}

func TestSamplerLogsFirstAndCountsTheRest(t *testing.T) {
	s, hook, clock := newTestSampler(t, 10*time.Second)
	entry := func() logrus.FieldLogger { return s.log.WithField("client_ip", "192.0.2.1") }

	for range 1000 {
		s.Log("webhook/unauthorized", logrus.WarnLevel, "webhook rejected", entry)
	}
	require.Equal(t, []string{"webhook rejected"}, messages(hook), "only the first is written at once")
	first := hook.AllEntries()[0]
	require.Equal(t, logrus.WarnLevel, first.Level)
	require.Equal(t, "192.0.2.1", first.Data["client_ip"], "the first line keeps the request's fields")

	s.Flush(false)
	require.Len(t, hook.AllEntries(), 1, "no summary before the interval ends")

	clock.advance(10 * time.Second)
	s.Flush(false)
	require.Equal(t, []string{"webhook rejected", "suppressed 999 similar: webhook rejected"}, messages(hook))
	sum := hook.LastEntry()
	require.Equal(t, logrus.WarnLevel, sum.Level, "the summary keeps the level")
	require.Equal(t, 999, sum.Data["suppressed"])
	require.Equal(t, "10s", sum.Data["interval"])
	require.Equal(t, "webhook/unauthorized", sum.Data["sample_key"])

	// The next interval starts with a line written at once again.
	s.Log("webhook/unauthorized", logrus.WarnLevel, "webhook rejected", entry)
	require.Len(t, hook.AllEntries(), 3)
	require.Equal(t, "webhook rejected", hook.LastEntry().Message)
}

func TestSamplerTable(t *testing.T) {
	const interval = 10 * time.Second
	type step struct {
		advance time.Duration
		key     string // "" flushes instead of logging
		all     bool   // flush everything
	}
	for _, tt := range []struct {
		name  string
		steps []step
		want  []string
	}{
		{"a single occurrence writes no summary",
			[]step{{key: "a"}, {advance: interval}, {}},
			[]string{"a"}},
		{"distinct keys are sampled independently",
			[]step{{key: "a"}, {key: "b"}, {key: "a"}, {key: "b"}, {key: "b"}, {advance: interval}, {}},
			[]string{"a", "b", "suppressed 1 similar: a", "suppressed 2 similar: b"}},
		{"an occurrence after the interval reports the old one first, without a flush",
			[]step{{key: "a"}, {key: "a"}, {key: "a"}, {advance: interval, key: "a"}},
			[]string{"a", "suppressed 2 similar: a", "a"}},
		{"just inside the interval is still suppressed",
			[]step{{key: "a"}, {advance: interval - time.Millisecond, key: "a"}, {}},
			[]string{"a"}},
		{"the final flush reports an interval that has not ended",
			[]step{{key: "a"}, {key: "a"}, {all: true}, {key: "a"}},
			[]string{"a", "suppressed 1 similar: a", "a"}},
		{"a flush forgets a quiet key, so its next line is written at once",
			[]step{{key: "a"}, {advance: interval}, {}, {key: "a"}},
			[]string{"a", "a"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, hook, clock := newTestSampler(t, interval)
			for _, st := range tt.steps {
				clock.advance(st.advance)
				switch {
				case st.all:
					s.Flush(true)
				case st.key == "":
					s.Flush(false)
				default:
					s.Log(st.key, logrus.InfoLevel, st.key, func() logrus.FieldLogger { return s.log })
				}
			}
			// Flushed summaries come out in map order: compare as sets
			// where several are due at once.
			require.ElementsMatch(t, tt.want, messages(hook))
			require.Equal(t, tt.want[0], messages(hook)[0])
		})
	}
}

// runSampler runs s until the test ends; stop ends it and waits.
func runSampler(t *testing.T, s *Sampler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func TestSamplerRunReportsWhenTheIntervalEnds(t *testing.T) {
	log, hook := test.NewNullLogger()
	s, err := NewSampler(log, 20*time.Millisecond, nil)
	require.NoError(t, err)
	runSampler(t, s)

	entry := func() logrus.FieldLogger { return log }
	s.Log("k", logrus.InfoLevel, "m", entry)
	s.Log("k", logrus.InfoLevel, "m", entry)
	require.Eventually(t, func() bool { return len(hook.AllEntries()) == 2 }, 5*time.Second, 5*time.Millisecond,
		"the ticker writes the summary once the interval ends")
	require.Equal(t, "suppressed 1 similar: m", hook.LastEntry().Message)
}

func TestSamplerRunReportsTheLastIntervalOnStop(t *testing.T) {
	log, hook := test.NewNullLogger()
	s, err := NewSampler(log, time.Hour, nil)
	require.NoError(t, err)
	stop := runSampler(t, s)

	for range 3 {
		s.Log("k", logrus.InfoLevel, "m", func() logrus.FieldLogger { return log })
	}
	stop()
	require.Equal(t, []string{"m", "suppressed 2 similar: m"}, messages(hook), "nothing counted is lost at shutdown")
}

func TestNewSamplerValidates(t *testing.T) {
	_, err := NewSampler(nil, time.Second, nil)
	require.ErrorContains(t, err, "logger is required")
	_, err = NewSampler(logrus.New(), -time.Second, nil)
	require.ErrorContains(t, err, "interval must be positive")
	s, err := NewSampler(logrus.New(), 0, nil)
	require.NoError(t, err)
	require.Equal(t, DefaultSampleInterval, s.Interval())
}
