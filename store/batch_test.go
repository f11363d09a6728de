package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
)

func req(key string) IngestRequest {
	return IngestRequest{Event: event.Event{Key: event.Key(key)}}
}

func TestBatcherGroupsConcurrentRequests(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	first := make(chan struct{})
	var once sync.Once
	commit := func(_ context.Context, batch []IngestRequest) []error {
		once.Do(func() { close(first); <-release }) // hold the first commit so others queue up
		mu.Lock()
		sizes = append(sizes, len(batch))
		mu.Unlock()
		errs := make([]error, len(batch))
		for i, r := range batch {
			if r.Event.Key == "dup" {
				errs[i] = ErrDuplicate
			}
		}
		return errs
	}
	b := NewBatcher(commit, 64, 1)
	defer b.Close()

	results := make(chan error, 11)
	go func() { results <- b.Do(context.Background(), req("lone")) }()
	<-first
	for i := range 9 {
		go func() { results <- b.Do(context.Background(), req(fmt.Sprint("k", i))) }()
	}
	go func() { results <- b.Do(context.Background(), req("dup")) }()
	require.Eventually(t, func() bool { return len(b.queue) == 10 }, 5*time.Second, time.Millisecond)
	close(release)

	var dups, oks int
	for range 11 {
		err := <-results
		switch {
		case err == nil:
			oks++
		case errors.Is(err, ErrDuplicate):
			dups++
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	require.Equal(t, 10, oks)
	require.Equal(t, 1, dups)
	require.Equal(t, []int{1, 10}, sizes, "the lone request commits at once; the ten that queued meanwhile share one commit")
}

func TestBatcherCommitFailureReachesEveryCaller(t *testing.T) {
	boom := errors.New("disk full")
	b := NewBatcher(func(_ context.Context, batch []IngestRequest) []error {
		errs := make([]error, len(batch))
		for i := range errs {
			errs[i] = boom
		}
		return errs
	}, 8, 1)
	defer b.Close()
	require.ErrorIs(t, b.Do(context.Background(), req("a")), boom)
}

func TestBatcherCallerGivesUp(t *testing.T) {
	block := make(chan struct{})
	b := NewBatcher(func(_ context.Context, batch []IngestRequest) []error {
		<-block
		return make([]error, len(batch))
	}, 8, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Do(ctx, req("slow")) }()
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	close(block)
	b.Close()
}

func TestBatcherClosed(t *testing.T) {
	b := NewBatcher(func(_ context.Context, batch []IngestRequest) []error { return make([]error, len(batch)) }, 8, 2)
	require.NoError(t, b.Do(context.Background(), req("a")))
	b.Close()
	b.Close() // idempotent
	require.ErrorIs(t, b.Do(context.Background(), req("b")), ErrClosed)
}

func TestSignalWakesEveryWaiterOnce(t *testing.T) {
	s := NewSignal()
	w1, w2 := s.Wait(), s.Wait()
	s.Notify()
	for _, w := range []<-chan struct{}{w1, w2} {
		select {
		case <-w:
		default:
			t.Fatal("a waiter was not woken")
		}
	}
	select {
	case <-s.Wait():
		t.Fatal("a new waiter must wait for the next Notify")
	default:
	}
}

// Requests that arrive within the linger share one commit; a full batch
// does not wait.
func TestLingeringBatcherGathersStragglers(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	commit := func(_ context.Context, batch []IngestRequest) []error {
		mu.Lock()
		sizes = append(sizes, len(batch))
		mu.Unlock()
		return make([]error, len(batch))
	}
	// A linger far longer than the test: only lingerMax ends the wait.
	b := NewLingeringBatcher(commit, 64, 4, time.Hour, 3)
	defer b.Close()

	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { require.NoError(t, b.Do(context.Background(), req(fmt.Sprint("k", i)))) })
		// One at a time, as outcomes arrive: each finds the queue empty.
		require.Eventually(t, func() bool { return len(b.queue) == 0 }, 5*time.Second, time.Millisecond)
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{3}, sizes, "three stragglers, one commit, though four committers wait")
}

func TestLingeringBatcherCommitsWhenTheLingerEnds(t *testing.T) {
	commits := make(chan int, 4)
	commit := func(_ context.Context, batch []IngestRequest) []error {
		commits <- len(batch)
		return make([]error, len(batch))
	}
	b := NewLingeringBatcher(commit, 64, 1, 5*time.Millisecond, 64)
	defer b.Close()
	require.NoError(t, b.Do(context.Background(), req("lone")))
	require.Equal(t, 1, <-commits)
}
