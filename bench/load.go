package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// idBase offsets the generated msg_ids so they look like WAMM's.
const idBase = 1_000_000_000

// appendBody writes a WAMM msg webhook (the vendor example's keys) for
// message seq, stamped with the send time for the latency measurement. The
// extra msg_data key bench_sent_ns is relayed verbatim like any other.
func appendBody(b []byte, seq int64, sent time.Time) []byte {
	b = append(b, `{"tip":"msg","msg_data":{"msg_id":`...)
	b = strconv.AppendInt(b, idBase+seq, 10)
	b = append(b, `,"qoute_msg_id":null,"from_api":0,"from_me":0,"phone_acc":"79000000000","phone":"7900`...)
	b = strconv.AppendInt(b, 1000000+seq%1000000, 10)
	b = append(b, `","chat_name":"Bench Contact","tip_msg":"textMessage","msg_text":"Good afternoon, I'm interested in your offer (message `...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `)","msg_link":null,"date_ins":"2026-03-01 12:35:29","state":"received","senderId":null,"senderName":null,"bench_sent_ns":`...)
	b = strconv.AppendInt(b, sent.UnixNano(), 10)
	b = append(b, "}}"...)
	return b
}

// generator posts webhooks with unique msg_ids and records which were
// accepted and how long each acknowledgement took.
type generator struct {
	url    string
	client *http.Client
	seq    atomic.Int64

	accepted   atomic.Int64
	rejected   atomic.Int64 // non-200 answers
	duplicates atomic.Int64 // 200 with "duplicate":true (should not happen)
	failed     atomic.Int64 // transport errors
	firstErr   atomic.Value

	mu  sync.Mutex
	ok  []bool // [seq]: accepted
	ack samples
}

func newGenerator(url string, conns int) *generator {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &generator{url: url, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

var duplicateTrue = []byte(`"duplicate":true`)

// send posts one new webhook. scheduled is when it should have gone out:
// the acknowledgement latency is measured from then, so a generator that
// falls behind does not hide queueing (coordinated omission).
func (g *generator) send(buf *bytes.Buffer, body []byte, scheduled time.Time, lat *[]time.Duration) []byte {
	seq := g.seq.Add(1)
	body = appendBody(body[:0], seq, time.Now())
	resp, err := g.client.Post(g.url, "application/json", bytes.NewReader(body))
	if err != nil {
		g.failed.Add(1)
		g.firstErr.CompareAndSwap(nil, err.Error())
		return body
	}
	buf.Reset()
	_, _ = buf.ReadFrom(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	took := time.Since(scheduled)
	switch {
	case resp.StatusCode != http.StatusOK:
		g.rejected.Add(1)
		g.firstErr.CompareAndSwap(nil, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(buf.Bytes())))
	case bytes.Contains(buf.Bytes(), duplicateTrue):
		g.duplicates.Add(1)
	default:
		g.accepted.Add(1)
		*lat = append(*lat, took)
		g.mu.Lock()
		g.ok = grow(g.ok, int(seq))
		g.ok[seq] = true
		g.mu.Unlock()
	}
	return body
}

// closedLoop runs conns senders back to back until ctx ends or count
// webhooks were sent (count 0: no limit).
func (g *generator) closedLoop(ctx context.Context, conns int, count int64) {
	var wg sync.WaitGroup
	var budget atomic.Int64
	budget.Store(count)
	for range conns {
		wg.Go(func() {
			var buf bytes.Buffer
			body := make([]byte, 0, 512)
			lat := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				if count > 0 && budget.Add(-1) < 0 {
					break
				}
				body = g.send(&buf, body, time.Now(), &lat)
			}
			g.ack.AddAll(lat)
		})
	}
	wg.Wait()
}

// openLoop sends at a fixed rate for d, from up to conns concurrent
// senders; a send that finds every sender busy waits, and that wait counts
// in its latency.
func (g *generator) openLoop(ctx context.Context, rate float64, d time.Duration, conns int) {
	total := int64(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	due := make(chan time.Time, 1<<16)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			var buf bytes.Buffer
			body := make([]byte, 0, 512)
			lat := make([]time.Duration, 0, 4096)
			for at := range due {
				body = g.send(&buf, body, at, &lat)
			}
			g.ack.AddAll(lat)
		})
	}
	start := time.Now()
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		due <- at
	}
	close(due)
	wg.Wait()
}

// acceptedSet returns the accepted flags by seq.
func (g *generator) acceptedSet() []bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]bool(nil), g.ok...)
}

func (g *generator) errorSample() string {
	if v, ok := g.firstErr.Load().(string); ok {
		return v
	}
	return ""
}
