package targets

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// jitterFraction spreads retries by ±10% so deliveries that failed together
// do not come back together.
const jitterFraction = 0.10

// Backoff is the retry schedule: Initial after the first failed attempt,
// doubling after each further one, capped at Max. With the defaults (1s,
// 2h) 25 attempts span about a day.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// Delay returns the wait after `attempts` failed attempts (1 for the first)
// before the next one. jitter is a uniform draw from [0, 1) and scales the
// delay by 0.9..1.1; the result never exceeds Max. retryAfter is what the
// target asked for (0 for nothing): the delay is at least that, but still
// capped at Max.
func (b Backoff) Delay(attempts int, retryAfter time.Duration, jitter float64) time.Duration {
	d := b.Initial
	for i := 1; i < attempts && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	d = time.Duration(float64(d) * (1 - jitterFraction + 2*jitterFraction*jitter))
	if retryAfter > d {
		d = retryAfter
	}
	return max(min(d, b.Max), 0)
}

// RetryAfter reads a Retry-After header value, either delay-seconds or an
// HTTP date (relative to now). It reports false when the value is absent or
// unparseable; a date in the past gives 0.
func RetryAfter(value string, now time.Time) (time.Duration, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(value, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Clamp absurd values before they overflow a Duration.
		const maxSecs = int64(100 * 365 * 24 * time.Hour / time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second, true
	}
	at, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	return max(at.Sub(now), 0), true
}

// honoursRetryAfter reports whether a status code's Retry-After is obeyed.
func honoursRetryAfter(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}
