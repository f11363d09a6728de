package targets

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 2 * time.Hour}
	tests := []struct {
		name       string
		attempts   int
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{"first failure waits Initial", 1, 0, 0.5, time.Second},
		{"doubles", 2, 0, 0.5, 2 * time.Second},
		{"doubles again", 5, 0, 0.5, 16 * time.Second},
		{"last step below the cap", 13, 0, 0.5, 4096 * time.Second},
		{"capped", 14, 0, 0.5, 2 * time.Hour},
		{"far past the cap does not overflow", 500, 0, 0.5, 2 * time.Hour},
		{"jitter low end is -10%", 3, 0, 0, 3600 * time.Millisecond},
		{"jitter high end is +10%", 3, 0, 1, 4400 * time.Millisecond},
		{"jitter never exceeds the cap", 20, 0, 1, 2 * time.Hour},
		{"jitter below the cap", 20, 0, 0, 108 * time.Minute},
		{"Retry-After longer than backoff wins", 1, 120 * time.Second, 0.5, 120 * time.Second},
		{"Retry-After shorter than backoff is ignored", 5, 3 * time.Second, 0.5, 16 * time.Second},
		{"Retry-After is capped at Max", 1, 10 * time.Hour, 0.5, 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, b.Delay(tt.attempts, tt.retryAfter, tt.jitter))
		})
	}
}

// The contract: with the defaults, 25 attempts span about 24 hours.
func TestBackoffDefaultScheduleSpansADay(t *testing.T) {
	b := Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax}
	for _, jitter := range []float64{0, 0.5, 0.999} {
		var total time.Duration
		for n := 1; n < 25; n++ { // 24 waits between 25 attempts
			total += b.Delay(n, 0, jitter)
		}
		require.Greater(t, total, 21*time.Hour, "jitter %v", jitter)
		require.Less(t, total, 27*time.Hour, "jitter %v", jitter)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"seconds", "120", 120 * time.Second, true},
		{"seconds with spaces", " 5 ", 5 * time.Second, true},
		{"zero", "0", 0, true},
		{"HTTP date ahead", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"HTTP date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"RFC 850 date", now.Add(time.Minute).Format("Monday, 02-Jan-06 15:04:05 GMT"), time.Minute, true},
		{"huge seconds are clamped", "99999999999999999", 100 * 365 * 24 * time.Hour, true},
		{"absent", "", 0, false},
		{"negative", "-1", 0, false},
		{"garbage", "soon", 0, false},
		{"fraction", "1.5", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RetryAfter(tt.value, now)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, got)
		})
	}
}
