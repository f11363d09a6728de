package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// BenchmarkPipeline measures the store's share of relaying one event to three
// targets the way the relay does it: ingests from 16 concurrent webhook
// handlers, and per target a loop that claims what is due into 16 worker
// slots and records each outcome from its own goroutine once the slot is
// free again, like the dispatcher (so outcomes share group commits), all at
// once. ns/op is per event; run with -cpuprofile to see where it goes.
func BenchmarkPipeline(b *testing.B, s store.Store) {
	ctx := context.Background()
	targets := []string{"a", "b", "c"}
	body := []byte(`{"tip":"msg","msg_data":{"msg_id":1234567,"qoute_msg_id":null,"from_api":0,"from_me":0,"phone_acc":"79000000000","phone":"79001234567","chat_name":"Ivan Petrov","tip_msg":"textMessage","msg_text":"Good afternoon, I'm interested in your offer","msg_link":null,"date_ins":"2023-05-24 12:35:29","state":"received","senderId":null,"senderName":null}}`)
	b.ResetTimer()
	defer ReportCPU(b)()

	var seq atomic.Int64
	ingested := make(chan struct{})
	go func() {
		defer close(ingested)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for {
					n := seq.Add(1)
					if n > int64(b.N) {
						return
					}
					ev := event.Event{
						Key: event.MsgKey(fmt.Sprint(n)), Kind: event.KindMsg, Source: event.SourceWebhook,
						MsgID: fmt.Sprint(n), State: "received", Body: body, ReceivedAt: time.Now(),
					}
					if err := s.Ingest(ctx, ev, targets); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}()

	var wg sync.WaitGroup
	for _, target := range targets {
		wg.Go(func() {
			const workers = 16
			sem := make(chan struct{}, workers)
			var recorded atomic.Int64
			for recorded.Load() < int64(b.N) {
				free := workers - len(sem)
				if free == 0 {
					sem <- struct{}{} // wait for a slot
					<-sem
					continue
				}
				ds, err := s.Claim(ctx, store.ClaimRequest{Target: target, Owner: "w", Limit: free, Lease: time.Minute, Now: time.Now()})
				if err != nil {
					b.Error(err)
					return
				}
				if len(ds) == 0 {
					select {
					case <-s.Wake():
					case <-time.After(time.Millisecond):
					}
					continue
				}
				for _, d := range ds {
					sem <- struct{}{}
					go func() {
						// Like the dispatcher, the worker is free once the
						// target answered; the outcome's commit follows.
						<-sem
						if err := s.Record(ctx, d.ID, "w", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: time.Now()}); err != nil {
							b.Error(err)
						}
						recorded.Add(1)
					}()
				}
			}
		})
	}
	wg.Wait()
	<-ingested
}

// ReportCPU reports the process CPU time per op as "cpu-µs/op" when the
// returned function runs: on a loaded machine it moves far less than ns/op.
func ReportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() {
		b.ReportMetric(float64((cpu()-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}
}
