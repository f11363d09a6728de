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
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	sinks := fs.String("sinks", "", "comma-separated sink URLs")
	workers := fs.Int("workers", 16, "forwarding workers (and connections) per sink")
	queue := fs.Int("queue", 100000, "queued webhooks per sink before the handler blocks")
	backoffMax := fs.Duration("backoff-max", 5*time.Second, "cap of the retry wait after a failed POST")
	if err := fs.Parse(args); err != nil {
		return err
	}
	urls := strings.Split(*sinks, ",")
	if *sinks == "" || len(urls) == 0 {
		return errors.New("baseline-server: --sinks is empty")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	queues := make([]chan []byte, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		queues[i] = make(chan []byte, *queue)
		client := &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        *workers,
				MaxIdleConnsPerHost: *workers,
				IdleConnTimeout:     90 * time.Second,
			},
		}
		for range *workers {
			wg.Go(func() { forward(ctx, client, u, queues[i], *backoffMax) })
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
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
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
