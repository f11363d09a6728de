package wammfake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Run posts queued webhooks until ctx is done, the way WAMM does: one at a
// time, in the order the events happened, each tried up to MaxAttempts times
// with growing intervals and then given up. It returns nil when ctx is done;
// a webhook interrupted then stays queued, first in line.
func (a *Account) Run(ctx context.Context) error {
	for {
		for {
			more, err := a.DeliverNext(ctx)
			if err != nil {
				return nil //nolint:nilerr // ctx done: a normal stop
			}
			if !more {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		}
	}
}

// DeliverNext sends the first queued webhook, with its retries. It reports
// false when nothing was queued, and returns ctx's error if ctx ended first
// (the webhook then stays queued). Concurrent calls take turns.
func (a *Account) DeliverNext(ctx context.Context) (bool, error) {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	a.mu.Lock()
	if len(a.queue) == 0 {
		a.mu.Unlock()
		return false, nil
	}
	w := a.queue[0]
	body := w.Body
	a.mu.Unlock()

	backoff := a.opts.RetryBackoff
	for attempt := 1; attempt <= MaxAttempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return true, ctx.Err()
			case <-t.C:
			}
			backoff *= 2
		}
		a.mu.Lock()
		target := a.webhookURL
		a.mu.Unlock()
		errText := a.post(ctx, target, body)
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
		a.mu.Lock()
		w.Attempts++
		a.stats.WebhookAttempts++
		w.LastError = errText
		if errText == "" {
			w.Status = WebhookSent
			a.stats.WebhooksSent++
			a.popLocked()
			a.mu.Unlock()
			return true, nil
		}
		a.mu.Unlock()
	}
	a.mu.Lock()
	w.Status = WebhookFailed
	a.stats.WebhooksFailed++
	a.popLocked()
	a.mu.Unlock()
	return true, nil
}

func (a *Account) popLocked() {
	a.queue[0] = nil
	a.queue = a.queue[1:]
	if len(a.queue) == 0 && a.idle != nil {
		close(a.idle)
		a.idle = nil
	}
}

// post makes one attempt; "" means HTTP 200, anything else says what failed.
func (a *Account) post(ctx context.Context, target string, body []byte) string {
	if target == "" {
		return "no webhook URL"
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("http %d", resp.StatusCode)
	}
	return ""
}
