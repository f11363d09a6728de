package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// baselineMain is the `baseline-server` subcommand: the comparison point.
// It forwards each webhook to every sink from memory, with no durability, no
// dedup, no parsing and no metrics: per sink one bounded in-memory queue
// and the same number of workers and connections as the relay uses, each
// retrying a failed POST until it succeeds. A full queue blocks the webhook
// handler (backpressure) instead of dropping. It answers 200 as soon as the
// body is queued.
func baselineMain(args []string) error {
	fs := flag.NewFlagSet("baseline-server", flag.ContinueOnError)
	var f forwarderFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	urls, err := f.sinkURLs()
	if err != nil {
		return fmt.Errorf("baseline-server: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	queues := make([]chan []byte, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		queues[i] = make(chan []byte, f.queue)
		client := &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        f.workers,
				MaxIdleConnsPerHost: f.workers,
				IdleConnTimeout:     90 * time.Second,
			},
		}
		for range f.workers {
			wg.Go(func() { forward(ctx, client, u, queues[i], f.backoffMax) })
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /webhook", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, `{"ok":false}`, http.StatusBadRequest)
			return
		}
		for _, q := range queues {
			select {
			case q <- body:
			case <-r.Context().Done():
				http.Error(w, `{"ok":false}`, http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true,"duplicate":false}`))
	})
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	wg.Wait()
	return nil
}

// forward POSTs queued bodies to url, retrying each with doubling waits
// (100 ms up to backoffMax) until it gets a 2xx or ctx ends.
func forward(ctx context.Context, client *http.Client, url string, q <-chan []byte, backoffMax time.Duration) {
	for {
		var body []byte
		select {
		case body = <-q:
		case <-ctx.Done():
			return
		}
		wait := 100 * time.Millisecond
		for {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					break
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, backoffMax)
		}
	}
}

// forwarderFlags are the flags the baseline and the stack share: the sinks,
// and the workers, queues and retry cap the relay gets too.
type forwarderFlags struct {
	listen, sinks  string
	workers, queue int
	backoffMax     time.Duration
}

func (f *forwarderFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "listen address")
	fs.StringVar(&f.sinks, "sinks", "", "comma-separated sink URLs")
	fs.IntVar(&f.workers, "workers", 16, "forwarding workers (and connections) per sink")
	fs.IntVar(&f.queue, "queue", 100000, "queued webhooks per sink before the handler blocks")
	fs.DurationVar(&f.backoffMax, "backoff-max", 5*time.Second, "cap of the retry wait after a failed POST")
}

func (f *forwarderFlags) sinkURLs() ([]string, error) {
	if f.sinks == "" {
		return nil, errors.New("--sinks is empty")
	}
	return strings.Split(f.sinks, ","), nil
}
