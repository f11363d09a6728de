package logx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// DefaultSampleInterval is how long a Sampler counts repeats of a line
// before it reports them in one summary.
const DefaultSampleInterval = 10 * time.Second

// Sampler keeps a flood of identical lines, such as the rejections of
// requests anyone on the network can send, from becoming one line per
// request: the first occurrence of a key is logged at once, later ones
// within the interval are only counted, and once the interval is over one
// "suppressed N similar" line reports them. Keys must come from a small
// fixed set (a reason, never a client address), since each costs a map
// entry until its interval ends.
//
// One goroutine, Run, writes the summaries; Flush writes the outstanding
// ones at once, so none is lost when the server stops.
type Sampler struct {
	log      logrus.FieldLogger
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*sampled
}

// sampled is the state of one key within its current interval.
type sampled struct {
	start      time.Time // when its first line was logged
	suppressed int
	level      logrus.Level
	msg        string
}

// NewSampler writes summaries to log; a zero interval is
// DefaultSampleInterval and a nil now is time.Now.
func NewSampler(log logrus.FieldLogger, interval time.Duration, now func() time.Time) (*Sampler, error) {
	if log == nil {
		return nil, errors.New("log sampler: logger is required")
	}
	if interval < 0 {
		return nil, fmt.Errorf("log sampler: interval must be positive, got %s", interval)
	}
	if interval == 0 {
		interval = DefaultSampleInterval
	}
	if now == nil {
		now = time.Now
	}
	return &Sampler{log: log, interval: interval, now: now, keys: make(map[string]*sampled)}, nil
}

// Interval is how long repeats of a key are counted before a summary.
func (s *Sampler) Interval() time.Duration { return s.interval }

// Log writes msg at level on the logger entry returns, unless key was
// logged within the interval; then it only counts it. entry is called only
// when the line is written, so a suppressed line costs no fields.
func (s *Sampler) Log(key string, level logrus.Level, msg string, entry func() logrus.FieldLogger) {
	now := s.now()
	s.mu.Lock()
	st, ok := s.keys[key]
	if ok && now.Sub(st.start) < s.interval {
		st.suppressed++
		s.mu.Unlock()
		return
	}
	// A new interval: report the old one's repeats before its first line.
	var prev sampled
	if ok {
		prev = *st
	}
	s.keys[key] = &sampled{start: now, level: level, msg: msg}
	s.mu.Unlock()

	if prev.suppressed > 0 {
		s.summary(key, prev)
	}
	logAt(entry(), level, msg)
}

// Flush writes the summary of every key whose interval has ended, and
// forgets those keys, so their next occurrence is logged at once again.
// With all set it writes every outstanding summary, ended or not: the
// last words of a server that stops.
func (s *Sampler) Flush(all bool) {
	now := s.now()
	var due []struct {
		key string
		st  sampled
	}
	s.mu.Lock()
	for key, st := range s.keys {
		if !all && now.Sub(st.start) < s.interval {
			continue
		}
		delete(s.keys, key)
		if st.suppressed > 0 {
			due = append(due, struct {
				key string
				st  sampled
			}{key, *st})
		}
	}
	s.mu.Unlock()
	// Written outside the lock: a slow log sink must not stall requests.
	for _, d := range due {
		s.summary(d.key, d.st)
	}
}

// Run writes summaries as intervals end until ctx is done, then writes
// the outstanding ones and returns.
func (s *Sampler) Run(ctx context.Context) {
	// Ticking at half the interval reports a key at most 1.5 intervals
	// after its first line.
	t := time.NewTicker(max(s.interval/2, time.Nanosecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.Flush(true)
			return
		case <-t.C:
			s.Flush(false)
		}
	}
}

func (s *Sampler) summary(key string, st sampled) {
	logAt(s.log.WithFields(logrus.Fields{
		"sample_key": key,
		"suppressed": st.suppressed,
		"interval":   s.interval.String(),
	}), st.level, fmt.Sprintf("suppressed %d similar: %s", st.suppressed, st.msg))
}

// logAt writes at one of the levels a rejection is logged at.
func logAt(l logrus.FieldLogger, level logrus.Level, msg string) {
	switch level {
	case logrus.ErrorLevel:
		l.Error(msg)
	case logrus.WarnLevel:
		l.Warn(msg)
	case logrus.InfoLevel:
		l.Info(msg)
	default:
		l.Debug(msg)
	}
}
