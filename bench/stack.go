package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/dedup"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
)

// stackMain is the `stack-server` subcommand: the relay with its store taken
// out. Webhooks go through the relay's own HTTP server (package relay: gin,
// its middleware, body limit, parsing, metrics) and its LRU dedup (package
// dedup), then, instead of the store and the dispatcher, into an in-memory
// queue per sink, from which workers POST with resty, carrying the relay's
// delivery headers. No durability and no per-delivery bookkeeping.
//
// With -journal, Ingest first appends the event to a file and waits for
// its fsync, group-committed like the relay's ingests: the "append-only log"
// design, with no tables and no durable dedup. With -journal-pipelined the
// journal is preallocated and synced with fdatasync (so a sync writes no
// metadata), and a batch is written while the previous one syncs.
//
// What it measures: the ceiling of any store. The relay cannot beat this
// system, so its ratio to the baseline bounds what a faster store could
// bring, and the gap to the baseline is what gin, resty and the relay's
// parsing cost.
func stackMain(args []string) error {
	fs := flag.NewFlagSet("stack-server", flag.ContinueOnError)
	var f forwarderFlags
	f.register(fs)
	lruSize := fs.Int("lru-size", 100000, "dedup LRU size (the relay's default)")
	clientKind := fs.String("client", "resty", "what POSTs to the sinks: resty (as the relay) or net/http (as the baseline)")
	journalPath := fs.String("journal", "", "append every event to this file, fsynced before the answer")
	pipelined := fs.Bool("journal-pipelined", false, "preallocate the journal, sync it with fdatasync, and write the next batch while the current one syncs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	urls, err := f.sinkURLs()
	if err != nil {
		return fmt.Errorf("stack-server: %w", err)
	}
	if *clientKind != "resty" && *clientKind != "net/http" {
		return fmt.Errorf("stack-server: --client %q: want resty or net/http", *clientKind)
	}
	// The relay's GOGC (app.TuneGC) but not its memory limit: the queues
	// hold what the relay keeps on disk, and a limit below them would make
	// the collector run without end.
	debug.SetGCPercent(200)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log := logrus.New()
	log.SetFormatter(&logrus.JSONFormatter{})
	reg := prometheus.NewRegistry()

	q := &memoryQueues{queues: make([]chan event.Event, len(urls))}
	if *journalPath != "" {
		j, err := openJournal(*journalPath, *pipelined)
		if err != nil {
			return err
		}
		defer j.close()
		q.journal = j
	}
	var wg sync.WaitGroup
	for i, u := range urls {
		q.queues[i] = make(chan event.Event, f.queue)
		httpClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConns: f.workers, MaxIdleConnsPerHost: f.workers, IdleConnTimeout: 90 * time.Second,
		}}
		post := postNetHTTP(httpClient, u)
		if *clientKind == "resty" {
			post = postResty(resty.NewWithClient(httpClient).SetDoNotParseResponse(true).
				SetHeader("User-Agent", stackUserAgent).SetHeader("Accept", "application/json"), u)
		}
		for range f.workers {
			wg.Go(func() { forwardEvents(ctx, post, q.queues[i], f.backoffMax) })
		}
	}
	cache, err := dedup.New(dedup.Options{Size: *lruSize, Next: q, Registerer: reg})
	if err != nil {
		return err
	}
	srv, err := relay.New(relay.Options{
		Listen: f.listen, Ingester: cache, Gatherer: reg, Registerer: reg, Logger: log, MaxInFlight: 4096,
	})
	if err != nil {
		return err
	}
	err = srv.Run(ctx)
	stop() // the forwarders wait for ctx, also when Run failed at once
	wg.Wait()
	return err
}

// memoryQueues is the store's stand-in: Ingest queues the event for every
// sink (blocking while a queue is full) and never reports a duplicate.
// With a journal it appends the event there first.
type memoryQueues struct {
	queues  []chan event.Event
	journal *journal
}

func (m *memoryQueues) Ingest(ctx context.Context, ev event.Event) (bool, error) {
	if m.journal != nil {
		if err := m.journal.append(ctx, ev); err != nil {
			return false, err
		}
	}
	for _, q := range m.queues {
		select {
		case q <- ev:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return false, nil
}

const stackUserAgent = "wamm-relay/bench-stack"

// poster makes one delivery attempt and reports whether the sink took it.
type poster func(ctx context.Context, ev event.Event, attempt int) bool

// postResty POSTs as the relay's target sender does: resty, with the
// relay's delivery headers.
func postResty(client *resty.Client, url string) poster {
	return func(ctx context.Context, ev event.Event, attempt int) bool {
		resp, err := client.R().SetContext(ctx).
			SetBody(ev.Body).
			SetHeader("Content-Type", "application/json").
			SetHeaderVerbatim("webhook-id", string(ev.Key)).
			SetHeaderVerbatim("webhook-timestamp", strconv.FormatInt(time.Now().Unix(), 10)).
			SetHeader("X-Wamm-Relay-Attempt", strconv.Itoa(attempt)).
			SetHeader("X-Wamm-Relay-Source", string(ev.Source)).
			Post(url)
		if resp == nil || resp.RawResponse == nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.RawResponse.Body)
		_ = resp.RawResponse.Body.Close()
		return err == nil && resp.StatusCode()/100 == 2
	}
}

// postNetHTTP sends the same request with net/http alone.
func postNetHTTP(client *http.Client, url string) poster {
	return func(ctx context.Context, ev event.Event, attempt int) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(ev.Body))
		if err != nil {
			return false
		}
		h := req.Header
		h["User-Agent"] = []string{stackUserAgent}
		h["Accept"] = []string{"application/json"}
		h["Content-Type"] = []string{"application/json"}
		h["webhook-id"] = []string{string(ev.Key)}
		h["webhook-timestamp"] = []string{strconv.FormatInt(time.Now().Unix(), 10)}
		h["X-Wamm-Relay-Attempt"] = []string{strconv.Itoa(attempt)}
		h["X-Wamm-Relay-Source"] = []string{string(ev.Source)}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode/100 == 2
	}
}

// forwardEvents is the baseline's forward loop around post: each queued
// event is retried from memory, 100 ms doubling to backoffMax, until a
// sink takes it or ctx ends.
func forwardEvents(ctx context.Context, post poster, q <-chan event.Event, backoffMax time.Duration) {
	for {
		var ev event.Event
		select {
		case ev = <-q:
		case <-ctx.Done():
			return
		}
		wait := 100 * time.Millisecond
		for attempt := 1; !post(ctx, ev, attempt); attempt++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, backoffMax)
		}
	}
}

// journal is an append-only file with group commit: one goroutine writes
// every record queued while the previous fsync ran, in one write, then
// fsyncs and answers them all. Pipelined, a second goroutine syncs: the
// writer hands it each batch once written and goes on collecting and
// writing the next, and one fdatasync answers every batch written before it
// began.
type journal struct {
	f    *os.File
	reqs chan journalReq
	done chan struct{}
	// closeMu keeps append from sending on reqs once close closed it:
	// handlers may outlive the server's shutdown.
	closeMu sync.RWMutex
	closed  bool

	pipelined bool
	written   chan []chan error // pipelined: batches written, to be synced
	synced    chan struct{}     // pipelined: closed when the syncer is done
	// records, writes and syncs are printed at close: the batch sizes.
	records, writes, syncs atomic.Int64
}

type journalReq struct {
	rec []byte
	res chan error
}

// journalPrealloc is how much of a pipelined journal is written with zeros
// and synced at open, so that later syncs need not record a new size.
const journalPrealloc = 256 << 20

func openJournal(path string, pipelined bool) (*journal, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND | os.O_TRUNC
	if pipelined {
		flags = os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j := &journal{f: f, reqs: make(chan journalReq, 4096), done: make(chan struct{}), pipelined: pipelined}
	if pipelined {
		zeros := make([]byte, 1<<20)
		for off := int64(0); off < journalPrealloc; off += int64(len(zeros)) {
			if _, err := f.WriteAt(zeros, off); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("preallocate journal: %w", err)
			}
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("preallocate journal: %w", err)
		}
		j.written = make(chan []chan error, 1024)
		j.synced = make(chan struct{})
		go j.syncLoop()
	}
	go j.loop()
	return j, nil
}

var journalResults = sync.Pool{New: func() any { return make(chan error, 1) }}

// append writes key, then body, each length-prefixed, and waits for the
// fsync that covers them.
func (j *journal) append(ctx context.Context, ev event.Event) error {
	rec := make([]byte, 0, 8+len(ev.Key)+len(ev.Body))
	rec = binary.AppendUvarint(rec, uint64(len(ev.Key)))
	rec = append(rec, ev.Key...)
	rec = binary.AppendUvarint(rec, uint64(len(ev.Body)))
	rec = append(rec, ev.Body...)
	res := journalResults.Get().(chan error)
	j.closeMu.RLock()
	if j.closed {
		j.closeMu.RUnlock()
		return errors.New("journal closed")
	}
	select {
	case j.reqs <- journalReq{rec: rec, res: res}:
		j.closeMu.RUnlock()
	case <-ctx.Done():
		j.closeMu.RUnlock()
		return ctx.Err()
	}
	// The loop always answers, so res is never reused while in flight.
	err := <-res
	journalResults.Put(res)
	return err
}

func (j *journal) loop() {
	defer close(j.done)
	if j.pipelined {
		defer close(j.written)
	}
	var buf []byte
	var batch []chan error
	var off int64
	for req := range j.reqs {
		buf, batch = append(buf[:0], req.rec...), append(batch[:0], req.res)
	fill:
		for {
			select {
			case more, ok := <-j.reqs:
				if !ok {
					break fill
				}
				buf, batch = append(buf, more.rec...), append(batch, more.res)
			default:
				break fill
			}
		}
		j.records.Add(int64(len(batch)))
		j.writes.Add(1)
		if j.pipelined {
			if _, err := j.f.WriteAt(buf, off); err != nil {
				answer(batch, err)
				continue
			}
			off += int64(len(buf))
			j.written <- append([]chan error(nil), batch...)
			continue
		}
		_, err := j.f.Write(buf)
		if err == nil {
			j.syncs.Add(1)
			err = j.f.Sync()
		}
		answer(batch, err)
	}
}

// syncLoop is the pipelined journal's syncer: one fdatasync for every
// batch written before it began.
func (j *journal) syncLoop() {
	defer close(j.synced)
	var waiting []chan error
	for batch := range j.written {
		waiting = append(waiting[:0], batch...)
	more:
		for {
			select {
			case b, ok := <-j.written:
				if !ok {
					break more
				}
				waiting = append(waiting, b...)
			default:
				break more
			}
		}
		j.syncs.Add(1)
		answer(waiting, fdatasync(j.f))
	}
}

func answer(batch []chan error, err error) {
	for _, res := range batch {
		res <- err
	}
}

func (j *journal) close() {
	j.closeMu.Lock()
	j.closed = true
	close(j.reqs)
	j.closeMu.Unlock()
	<-j.done
	if j.pipelined {
		<-j.synced
	}
	records, writes, syncs := j.records.Load(), j.writes.Load(), j.syncs.Load()
	fmt.Fprintf(os.Stderr, "journal: pipelined=%v, %d records, %d writes (%.1f records each), %d syncs (%.1f records each)\n",
		j.pipelined, records, writes, float64(records)/float64(max(writes, 1)), syncs, float64(records)/float64(max(syncs, 1)))
	_ = j.f.Close()
}
