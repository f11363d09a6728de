package dedup

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
)

// ingestFunc adapts a function to Ingester.
type ingestFunc func(ctx context.Context, ev event.Event) (bool, error)

func (f ingestFunc) Ingest(ctx context.Context, ev event.Event) (bool, error) { return f(ctx, ev) }

// storeFake keeps keys like a store's unique index and counts calls.
type storeFake struct {
	keys  map[event.Key]bool
	calls int
	err   error
}

func (s *storeFake) Ingest(_ context.Context, ev event.Event) (bool, error) {
	s.calls++
	if s.err != nil {
		return false, s.err
	}
	if s.keys[ev.Key] {
		return true, nil
	}
	s.keys[ev.Key] = true
	return false, nil
}

func TestCache(t *testing.T) {
	msg := event.Event{Key: event.MsgKey("1")}
	other := event.Event{Key: event.MsgKey("2")}

	tests := []struct {
		name      string
		preStored []event.Key // keys the store holds before the cache sees them (a restart, another instance)
		storeErr  error
		events    []event.Event
		wantDups  []bool
		wantCalls int // calls that reached the store
	}{
		{
			name:      "first time goes to the store, repeat answered from memory",
			events:    []event.Event{msg, msg, msg},
			wantDups:  []bool{false, true, true},
			wantCalls: 1,
		},
		{
			name:      "store duplicate that missed the cache is still a duplicate, then cached",
			preStored: []event.Key{msg.Key},
			events:    []event.Event{msg, msg},
			wantDups:  []bool{true, true},
			wantCalls: 1,
		},
		{
			name:      "distinct keys each reach the store",
			events:    []event.Event{msg, other},
			wantDups:  []bool{false, false},
			wantCalls: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &storeFake{keys: map[event.Key]bool{}}
			for _, k := range tt.preStored {
				st.keys[k] = true
			}
			c, err := New(Options{Size: 10, Next: st})
			require.NoError(t, err)
			for i, ev := range tt.events {
				dup, err := c.Ingest(context.Background(), ev)
				require.NoError(t, err)
				require.Equal(t, tt.wantDups[i], dup, "event %d", i)
			}
			require.Equal(t, tt.wantCalls, st.calls)
		})
	}
}

func TestCacheDoesNotRememberFailedIngest(t *testing.T) {
	st := &storeFake{keys: map[event.Key]bool{}, err: errors.New("store down")}
	c, err := New(Options{Size: 10, Next: st})
	require.NoError(t, err)
	ev := event.Event{Key: event.MsgKey("9")}

	_, err = c.Ingest(context.Background(), ev)
	require.Error(t, err)
	require.Equal(t, 0, c.Len(), "a key must enter the cache only after it is durable")

	st.err = nil
	dup, err := c.Ingest(context.Background(), ev)
	require.NoError(t, err)
	require.False(t, dup, "the retry after a failure is the first durable copy")
	require.Equal(t, 2, st.calls)
}

func TestCacheEvictsAndForgets(t *testing.T) {
	st := &storeFake{keys: map[event.Key]bool{}}
	c, err := New(Options{Size: 2, Next: st})
	require.NoError(t, err)
	ctx := context.Background()
	for _, id := range []string{"1", "2", "3"} {
		_, err := c.Ingest(ctx, event.Event{Key: event.MsgKey(id)})
		require.NoError(t, err)
	}
	require.Equal(t, 2, c.Len())

	// "1" was evicted: the store answers, and still says duplicate.
	dup, err := c.Ingest(ctx, event.Event{Key: event.MsgKey("1")})
	require.NoError(t, err)
	require.True(t, dup)
	require.Equal(t, 4, st.calls)

	c.Forget(event.MsgKey("1"))
	delete(st.keys, event.MsgKey("1")) // pruned from the store too
	dup, err = c.Ingest(ctx, event.Event{Key: event.MsgKey("1")})
	require.NoError(t, err)
	require.False(t, dup)
}

func TestCacheMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	c, err := New(Options{Size: 10, Next: ingestFunc(func(context.Context, event.Event) (bool, error) { return false, nil }), Registerer: reg})
	require.NoError(t, err)
	ev := event.Event{Key: event.MsgKey("5")}
	for range 3 {
		_, err := c.Ingest(context.Background(), ev)
		require.NoError(t, err)
	}
	require.Equal(t, 2.0, testutil.ToFloat64(c.lookups.WithLabelValues("hit")))
	require.Equal(t, 1.0, testutil.ToFloat64(c.lookups.WithLabelValues("miss")))
}

func TestOptionsValidate(t *testing.T) {
	_, err := New(Options{Size: 0, Next: &storeFake{}})
	require.ErrorContains(t, err, "Size")
	_, err = New(Options{Size: 1})
	require.ErrorContains(t, err, "Next")
}
