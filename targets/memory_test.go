package targets

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
)

// heapPeak samples the live heap until stopped and keeps the highest value.
type heapPeak struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

func sampleHeap(every time.Duration) *heapPeak {
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) end() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

// TestThousandHostileAttemptsInFlightStayBounded keeps 1,000 attempts in
// flight at once, half to a target whose 200 body never ends (8 KiB, then,
// once all are connected, 8 KiB per 100ms until the relay has read its
// cap) and half to one that trickles its status line a byte per 100ms (so
// the attempt lasts until its timeout), and bounds the live heap. The
// figure includes the test's own servers, which run in the same process.
func TestThousandHostileAttemptsInFlightStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections: not in -short")
	}
	const perTarget = 500

	var endlessActive, trickleActive atomic.Int64
	// release lets the endless bodies go on once the attempts are all in
	// flight, or after releaseAfter on a machine too loaded to get there.
	release := make(chan struct{})
	const releaseAfter = 10 * time.Second // -race on a loaded 2-core box needed more than 4 s
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		endlessActive.Add(1)
		defer endlessActive.Add(-1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		chunk := make([]byte, 8<<10)
		send := func() bool {
			_, err := w.Write(chunk)
			return err == nil && rc.Flush() == nil
		}
		if !send() {
			return
		}
		// The attempt stays in flight, its first 8 KiB read, until all are.
		select {
		case <-r.Context().Done():
			return
		case <-release:
		}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for send() {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}))
	t.Cleanup(endless.Close)
	trickleURL := trickle(t, &trickleActive)

	endlessTarget := testTarget("endless", endless.URL)
	endlessTarget.Timeout = 30 * time.Second // the cap ends these attempts
	endlessTarget.MaxAttempts = 1
	trickleTarget := testTarget("trickle", trickleURL)
	trickleTarget.Timeout = releaseAfter + time.Second // the timeout ends these
	trickleTarget.MaxAttempts = 1

	log, _ := newTestLogger()
	log.SetLevel(logrus.ErrorLevel) // 1,000 attempt lines are not the point
	st := newFakeStore(time.Now)
	h := newHarness(t, st, Options{
		Targets:  []Target{endlessTarget, trickleTarget},
		Workers:  perTarget,
		IdlePoll: time.Hour,
		Logger:   log,
	})
	body := []byte(`{"event":"message","text":"hello"}`)
	for i := range perTarget {
		key := event.MsgKey(strconv.Itoa(i))
		st.add("endless", key, body, event.SourceWebhook)
		st.add("trickle", key, body, event.SourceWebhook)
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := sampleHeap(5 * time.Millisecond)

	// Once all 1,000 are in flight, one forced GC tells what they hold
	// (the live heap); the sampled peak adds the garbage not yet collected,
	// which depends on GOGC and timing.
	var peakInFlight atomic.Int64
	var liveAtPeak uint64
	var watch sync.WaitGroup
	stopWatch := make(chan struct{})
	watch.Add(1)
	go func() {
		defer watch.Done()
		deadline := time.After(releaseAfter)
		released := false
		measure := func() {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			liveAtPeak = ms.HeapAlloc
			close(release)
			released = true
		}
		for {
			if n := endlessActive.Load() + trickleActive.Load(); n > peakInFlight.Load() {
				peakInFlight.Store(n)
				if !released && n == 2*perTarget {
					measure()
				}
			}
			select {
			case <-stopWatch:
				return
			case <-deadline:
				if !released {
					measure()
				}
			case <-time.After(time.Millisecond):
			}
		}
	}()

	h.run(t)
	require.Eventually(t, func() bool { return len(st.recorded()) == 2*perTarget }, 60*time.Second, 10*time.Millisecond)
	close(stopWatch)
	watch.Wait()
	peakHeap := peak.end()

	var delivered, timedOut int
	for _, r := range st.recorded() {
		switch {
		case r.Out.Result == event.ResultDelivered:
			delivered++
		case r.Out.Error == CodeTimeout:
			timedOut++
		}
	}
	require.Equal(t, perTarget, delivered, "every endless 200 is delivered")
	require.Equal(t, perTarget, timedOut, "every trickle is cut by its timeout")

	const mib = 1 << 20
	perAttempt := func(b uint64) float64 {
		return float64(b-min(b, before.HeapAlloc)) / 1024 / float64(2*perTarget)
	}
	t.Logf("peak connections in flight %d; heap %.1f MiB before; live heap at that peak %.1f MiB (%.1f KiB per attempt); sampled peak heap in use %.1f MiB (%.1f KiB per attempt)",
		peakInFlight.Load(), float64(before.HeapAlloc)/mib,
		float64(liveAtPeak)/mib, perAttempt(liveAtPeak), float64(peakHeap)/mib, perAttempt(peakHeap))
	// All 1,000 normally; a loaded machine may finish a few endless ones
	// before the last trickles connect.
	require.GreaterOrEqual(t, peakInFlight.Load(), int64(2*perTarget*9/10), "the attempts were not in flight together")
	require.Less(t, liveAtPeak, uint64(64*mib), "live heap with 1,000 hostile attempts in flight")
}
