package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/storetest"
)

// freshStore opens a Store on a schema of its own.
func freshStore(t *testing.T) *Store {
	t.Helper()
	schema := newSchema(t)
	return openOnSchema(t, schema, "wamm_relay_"+schema)
}

// claimed ingests n events for target "a" received at t0 and claims them all
// for owner "w" with a one-minute lease, in id order.
func claimed(t *testing.T, s *Store, n int, t0 time.Time) []event.Delivery {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		ev := rawEvent(fmt.Sprintf("k%02d", i))
		ev.ReceivedAt = t0
		require.NoError(t, s.Ingest(ctx, ev, []string{"a"}))
	}
	ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: n, Lease: time.Minute, Now: t0})
	require.NoError(t, err)
	require.Len(t, ds, n)
	return ds
}

// byID lists every delivery of s by id.
func byID(t *testing.T, s *Store) map[int64]event.Delivery {
	t.Helper()
	ds, err := s.List(context.Background(), store.ListFilter{})
	require.NoError(t, err)
	out := make(map[int64]event.Delivery, len(ds))
	for _, d := range ds {
		out[d.ID] = d
	}
	return out
}

func TestRecordBatchGivesEachCallItsOwnResult(t *testing.T) {
	s := freshStore(t)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	ds := claimed(t, s, 6, t0)
	id := func(i int) int64 { return ds[i].ID }
	errText := "http_503"
	deadText := "http_410"
	next := t0.Add(10 * time.Second)
	at := t0.Add(time.Second)
	late := t0.Add(2 * time.Minute) // after the lease ended

	// Out of id order on purpose: the batch is sorted for locking and the
	// results must still come back in call order.
	batch := []struct {
		req  recordRequest
		want error
	}{
		{recordRequest{id: id(5), owner: "w", status: event.StatusDead, lastErr: &deadText, lastErrAt: &at, code: 410, at: at}, nil},
		{recordRequest{id: 987654321, owner: "w", status: event.StatusDelivered, delivered: &at, code: 200, at: at}, store.ErrNotFound},
		{recordRequest{id: id(1), owner: "someone else", status: event.StatusDelivered, delivered: &at, code: 200, at: at}, store.ErrLeaseLost},
		{recordRequest{id: id(0), owner: "w", status: event.StatusDelivered, delivered: &at, code: 200, at: at}, nil},
		{recordRequest{id: id(2), owner: "w", status: event.StatusDelivered, delivered: &late, code: 200, at: late}, store.ErrLeaseLost},
		{recordRequest{id: id(3), owner: "w", status: event.StatusPending, next: &next, lastErr: &errText, lastErrAt: &at, code: 503, at: at}, nil},
		{recordRequest{id: id(4), owner: "w", status: event.StatusDelivered, delivered: &at, code: 200, at: at}, nil},
		{recordRequest{id: id(4), owner: "w", status: event.StatusDead, lastErr: &deadText, lastErrAt: &at, code: 410, at: at}, nil},
	}
	reqs := make([]recordRequest, len(batch))
	for i, b := range batch {
		reqs[i] = b.req
	}
	got := s.commitRecords(context.Background(), reqs)
	require.Len(t, got, len(batch))
	for i, b := range batch[:6] {
		require.ErrorIs(t, got[i], b.want, "call %d (delivery %d)", i, b.req.id)
		if b.want == nil {
			require.NoError(t, got[i], "call %d (delivery %d)", i, b.req.id)
		}
	}
	// The same delivery twice in one batch: one call wins, the other finds
	// the lease already cleared.
	twice := []error{got[6], got[7]}
	require.ElementsMatch(t, []bool{true, false}, []bool{twice[0] == nil, twice[1] == nil}, "%v", twice)
	for _, err := range twice {
		if err != nil {
			require.ErrorIs(t, err, store.ErrLeaseLost)
		}
	}

	rows := byID(t, s)
	for _, tc := range []struct {
		name     string
		i        int
		status   event.Status
		attempts int
		lastErr  string
		code     int
	}{
		{"dead", 5, event.StatusDead, 1, deadText, 410},
		{"wrong owner untouched", 1, event.StatusPending, 0, "", 0},
		{"delivered", 0, event.StatusDelivered, 1, "", 200},
		{"expired lease untouched", 2, event.StatusPending, 0, "", 0},
		{"retry", 3, event.StatusPending, 1, errText, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := rows[id(tc.i)]
			require.Equal(t, tc.status, d.Status)
			require.Equal(t, tc.attempts, d.Attempts)
			require.Equal(t, tc.lastErr, d.LastError)
			require.Equal(t, tc.code, d.LastStatusCode)
		})
	}
	require.Equal(t, 1, rows[id(4)].Attempts, "a delivery recorded twice counts one attempt")
	require.True(t, rows[id(0)].DeliveredAt.Equal(at), "DeliveredAt %v", rows[id(0)].DeliveredAt)
	require.True(t, rows[id(3)].NextAttemptAt.Equal(next), "NextAttemptAt %v", rows[id(3)].NextAttemptAt)

	// The retried delivery's lease was cleared: it is claimable once due,
	// while the untouched ones stay leased until their lease ends.
	ctx := context.Background()
	again, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "x", Limit: 10, Lease: time.Minute, Now: next})
	require.NoError(t, err)
	require.Equal(t, []int64{id(3)}, ids(again))
	again, err = s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "x", Limit: 10, Lease: time.Minute, Now: late})
	require.NoError(t, err)
	require.ElementsMatch(t, []int64{id(1), id(2), id(3)}, ids(again), "and the retried one's new lease ended too")
}

func ids(ds []event.Delivery) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func TestRecordConcurrentCallsKeepTheirOwnErrors(t *testing.T) {
	s := freshStore(t)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	const n = 64
	ds := claimed(t, s, n, t0)
	ctx := context.Background()

	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, d := range ds {
		owner := "w"
		if i%4 == 0 {
			owner = "thief"
		}
		wg.Go(func() {
			errs[i] = s.Record(ctx, d.ID, owner, event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: t0.Add(time.Second)})
		})
	}
	wg.Wait()

	rows := byID(t, s)
	for i, d := range ds {
		if i%4 == 0 {
			require.ErrorIs(t, errs[i], store.ErrLeaseLost, "delivery %d", d.ID)
			require.Equal(t, event.StatusPending, rows[d.ID].Status)
			require.Zero(t, rows[d.ID].Attempts)
			continue
		}
		require.NoError(t, errs[i], "delivery %d", d.ID)
		require.Equal(t, event.StatusDelivered, rows[d.ID].Status)
		require.Equal(t, 1, rows[d.ID].Attempts)
	}
}

func TestRecordAfterClose(t *testing.T) {
	s := freshStore(t)
	require.NoError(t, s.Close())
	err := s.Record(context.Background(), 1, "w", event.Outcome{Result: event.ResultDelivered, At: time.Now()})
	require.ErrorIs(t, err, store.ErrClosed)
}

func TestListLeavesBodiesOut(t *testing.T) {
	s := freshStore(t)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	ctx := context.Background()
	ev := rawEvent("k")
	ev.ReceivedAt = t0
	require.NoError(t, s.Ingest(ctx, ev, []string{"a"}))

	ds, err := s.List(ctx, store.ListFilter{})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Nil(t, ds[0].Body, "List does not read bodies")
	require.Equal(t, ev.Key, ds[0].EventKey)

	c, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: 1, Lease: time.Minute, Now: t0})
	require.NoError(t, err)
	require.Len(t, c, 1)
	require.Equal(t, ev.Body, c[0].Body, "Claim does")
}

// BenchmarkPipeline is the store's share of relaying one event to three
// targets the way the relay does it: ingests from 16 concurrent webhook
// handlers, and per target a loop that claims what is due and records each
// outcome from its own goroutine, 16 in flight per target. ns/op is per
// event; cpu-µs/op counts this process only, not the server's CPU.
func BenchmarkPipeline(b *testing.B) {
	schema := newSchema(b)
	s := openStore(b, dsnFor(b, pgURL(b), schema, "wamm_relay_bench_"+schema), func(o *Options) {
		o.Logger = logrus.New() // quiet
	})
	storetest.BenchmarkPipeline(b, s)
}

// BenchmarkRecord measures outcomes recorded by 48 concurrent workers (16
// per target, as the relay runs by default) on deliveries claimed
// beforehand. ns/op is per outcome.
func BenchmarkRecord(b *testing.B) {
	schema := newSchema(b)
	s := openStore(b, dsnFor(b, pgURL(b), schema, "wamm_relay_bench_"+schema), func(o *Options) {
		o.Logger = logrus.New() // quiet
	})
	ctx := context.Background()
	now := time.Now()
	errs := make(chan error, b.N)
	for i := range b.N {
		go func() {
			errs <- s.Ingest(ctx, event.Event{
				Key: event.Key(fmt.Sprintf("raw:%d", i)), Kind: event.KindRaw, Source: event.SourceWebhook,
				Body: []byte(`{"tip":"msg","msg_id":1}`), ReceivedAt: now,
			}, []string{"a"})
		}()
	}
	for range b.N {
		require.NoError(b, <-errs)
	}
	ds, err := s.Claim(ctx, store.ClaimRequest{Target: "a", Owner: "w", Limit: b.N, Lease: time.Hour, Now: now})
	require.NoError(b, err)
	require.Len(b, ds, b.N)
	work := make(chan int64, len(ds))
	for _, d := range ds {
		work <- d.ID
	}
	close(work)
	b.ResetTimer()
	defer storetest.ReportCPU(b)()
	var wg sync.WaitGroup
	for range 48 {
		wg.Go(func() {
			for id := range work {
				if err := s.Record(ctx, id, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: now}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// reportCPU reports the process's CPU time per op (user + system) when the
// returned function runs.

// The outcome batch finds its deliveries by primary key even when the claim
// index's row count, from the last VACUUM, says hardly anything is pending:
// joined against that partial index instead, every batch read the whole
// queue.
func TestRecordBatchFindsDeliveriesByPrimaryKey(t *testing.T) {
	ctx := context.Background()
	schema := newSchema(t)
	s := openOnSchema(t, schema, "wamm_relay_test_record_plan")
	for i := range 5 {
		require.NoError(t, s.Ingest(ctx, rawEvent(fmt.Sprintf("raw:plan-%d", i)), []string{"a"}))
	}
	adminExec(t, "VACUUM "+pgx.Identifier{schema, "deliveries"}.Sanitize())
	// The queue grows after the VACUUM, as under a burst.
	adminExec(t, fmt.Sprintf(`
		WITH e AS (
			INSERT INTO %[1]s.events (key, kind, source, body, received_at)
			SELECT 'raw:plan-bulk-' || g, 'raw', 'webhook', '\x00', now() FROM generate_series(1, 20000) g
			RETURNING id)
		INSERT INTO %[1]s.deliveries (event_id, target, status, next_attempt_at, created_at, updated_at, lease_owner, lease_until)
		SELECT id, 'a', 'pending', now(), now(), now(), 'w', now() + interval '1 hour' FROM e`, pgx.Identifier{schema}.Sanitize()))

	conn, err := pgx.Connect(ctx, dsnFor(t, pgURL(t), schema, "wamm_relay_test_record_plan"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	const n = 20
	ids, owners, statuses, ats := make([]int64, n), make([]string, n), make([]string, n), make([]time.Time, n)
	nulls, nullTexts, codes := make([]*time.Time, n), make([]*string, n), make([]int32, n)
	for i := range n {
		ids[i], owners[i], statuses[i], ats[i], codes[i] = int64(100+i), "w", "delivered", time.Now(), 200
	}
	rows, err := conn.Query(ctx, "EXPLAIN "+recordBatchSQL, pgx.QueryExecModeExec,
		ids, owners, statuses, nulls, nulls, nullTexts, nulls, codes, ats)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	plan := strings.Join(lines, "\n")
	require.Contains(t, plan, "deliveries_pkey", plan)
	require.NotContains(t, plan, "deliveries_claim_order_idx", plan)
}
