package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

// DemoOptions configures RunDemo.
type DemoOptions struct {
	// Duration stops the demo by itself; zero runs until ctx ends.
	Duration time.Duration
	// Out receives the live summary.
	Out io.Writer
	// Logger receives the relay's own logs; nil discards them.
	Logger *logrus.Logger
	// DropRate is the fraction of webhooks the fake WAMM account loses.
	DropRate float64
	// TrafficEvery is how often the fake account does something.
	TrafficEvery time.Duration
	// ReportEvery is how often a summary line is printed.
	ReportEvery time.Duration
}

// DemoSummary is what the demo saw, for its final line and for tests.
type DemoSummary struct {
	Messages        int
	WebhooksSent    int
	WebhooksDropped int
	Received        int // events the relay stored from webhooks
	Duplicates      int
	Reconciled      int // events the reconciler found and enqueued
	Targets         []DemoTarget
	// MissingAtCRM lists messages the account produced that the crm target
	// has not received (should be empty once the reconciler caught up).
	MissingAtCRM []string
}

// DemoTarget counts what one sample target received.
type DemoTarget struct {
	Name              string
	Delivered         int
	FromWebhook       int
	FromReconcile     int
	FailedOnPurpose   int
	DistinctEventKeys int
}

// demoTarget is a sample HTTP target that counts deliveries and can fail on
// purpose to show retries.
type demoTarget struct {
	name     string
	failEach int // every n-th request answers 503; 0 never
	srv      *httptest.Server

	mu       sync.Mutex
	requests int
	stats    DemoTarget
	keys     map[string]bool
}

func newDemoTarget(name string, failEach int) *demoTarget {
	t := &demoTarget{name: name, failEach: failEach, keys: map[string]bool{}}
	t.stats.Name = name
	t.srv = httptest.NewServer(http.HandlerFunc(t.serve))
	return t
}

func (t *demoTarget) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.requests++
	if t.failEach > 0 && t.requests%t.failEach == 0 {
		t.stats.FailedOnPurpose++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	t.stats.Delivered++
	if r.Header.Get("X-Wamm-Relay-Source") == "reconcile" {
		t.stats.FromReconcile++
	} else {
		t.stats.FromWebhook++
	}
	t.keys[r.Header.Get("webhook-id")] = true
	t.stats.DistinctEventKeys = len(t.keys)
	w.WriteHeader(http.StatusOK)
}

func (t *demoTarget) snapshot() (DemoTarget, map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make(map[string]bool, len(t.keys))
	for k := range t.keys {
		keys[k] = true
	}
	return t.stats, keys
}

// RunDemo runs a simulated WAMM account, a relay on a throw-away embedded
// store and two sample targets in one process, losing some webhooks on
// purpose so the reconciler has gaps to fill, and prints a live summary.
func RunDemo(ctx context.Context, opts DemoOptions) (DemoSummary, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.TrafficEvery <= 0 {
		opts.TrafficEvery = 150 * time.Millisecond
	}
	if opts.ReportEvery <= 0 {
		opts.ReportEvery = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = logrus.New()
		log.SetOutput(io.Discard)
	}
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}

	dir, err := os.MkdirTemp("", "wamm-relay-demo-")
	if err != nil {
		return DemoSummary{}, fmt.Errorf("demo: create temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	const token = "demo-token"
	account := wammfake.New(wammfake.Options{Token: token, DropRate: opts.DropRate, RetryBackoff: 50 * time.Millisecond})
	api := httptest.NewServer(account.Handler())
	defer api.Close()
	crm := newDemoTarget("crm", 0)
	defer crm.srv.Close()
	analytics := newDemoTarget("analytics", 7)
	defer analytics.srv.Close()

	cfg := config.Default()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = config.D(5 * time.Second)
	cfg.Store.DSN = filepath.Join(dir, "relay.db")
	cfg.WAMM.APIURL = api.URL + "/api2"
	cfg.WAMM.Token = token
	// Much shorter than production, so a few seconds of demo show gaps
	// being filled.
	cfg.Reconcile.Interval = config.D(time.Second)
	cfg.Reconcile.Grace = config.D(time.Second)
	cfg.Reconcile.BackfillOnStart = true
	cfg.Delivery.BackoffInitial = config.D(100 * time.Millisecond)
	cfg.Delivery.BackoffMax = config.D(time.Second)
	cfg.Targets = []config.Target{
		{Name: "crm", URL: crm.srv.URL + "/hooks/wamm", Events: []string{"msg", "msg_state"}},
		{Name: "analytics", URL: analytics.srv.URL + "/ingest", Events: []string{"msg"}},
	}

	a, err := New(ctx, Options{Config: cfg, Logger: log, Version: "demo"})
	if err != nil {
		return DemoSummary{}, fmt.Errorf("demo: build relay: %w", err)
	}
	defer a.Close()
	addr, err := a.Listen()
	if err != nil {
		return DemoSummary{}, err
	}
	account.SetWebhookURL("http://" + addr.String() + cfg.Server.WebhookPath)
	fmt.Fprintf(opts.Out, "wamm-relay demo: relay on http://%s, fake WAMM account at %s, targets crm and analytics\n", addr, api.URL)
	fmt.Fprintf(opts.Out, "the fake account loses %.0f%% of its webhooks; the reconciler polls every %s and fills the gaps\n\n",
		opts.DropRate*100, cfg.Reconcile.Interval.Duration)

	summarize := func() DemoSummary {
		st := account.Stats()
		s := DemoSummary{
			Messages:        st.Messages,
			WebhooksSent:    st.WebhooksSent,
			WebhooksDropped: st.WebhooksDropped,
			Received:        int(counterValue(a.registry, "wamm_relay_events_enqueued_total", "source", "webhook")),
			Duplicates:      int(counterValue(a.registry, "wamm_relay_webhooks_received_total", "outcome", "duplicate")),
			Reconciled:      int(counterValue(a.registry, "wamm_relay_events_enqueued_total", "source", "reconcile")),
		}
		crmStats, crmKeys := crm.snapshot()
		anaStats, _ := analytics.snapshot()
		s.Targets = []DemoTarget{crmStats, anaStats}
		for _, m := range account.Messages() {
			if !crmKeys["msg:"+m.ID] {
				s.MissingAtCRM = append(s.MissingAtCRM, m.ID)
			}
		}
		sort.Strings(s.MissingAtCRM)
		return s
	}
	start := time.Now()
	report := func() {
		s := summarize()
		fmt.Fprintf(opts.Out, "%5.1fs  WAMM %d msgs, %d webhooks (%d lost) | relay %d received, %d dup, %d reconciled",
			time.Since(start).Seconds(), s.Messages, s.WebhooksSent, s.WebhooksDropped, s.Received, s.Duplicates, s.Reconciled)
		for _, t := range s.Targets {
			fmt.Fprintf(opts.Out, " | %s %d (%d via reconcile", t.Name, t.Delivered, t.FromReconcile)
			if t.FailedOnPurpose > 0 {
				fmt.Fprintf(opts.Out, ", %d failed and retried", t.FailedOnPurpose)
			}
			fmt.Fprint(opts.Out, ")")
		}
		fmt.Fprintln(opts.Out)
	}
	final := func(s DemoSummary) {
		fmt.Fprintf(opts.Out, "\nsummary after %.1fs:\n", time.Since(start).Seconds())
		fmt.Fprintf(opts.Out, "  %-10s %d messages, %d webhooks sent, %d lost on purpose\n", "WAMM", s.Messages, s.WebhooksSent, s.WebhooksDropped)
		fmt.Fprintf(opts.Out, "  %-10s %d events from webhooks, %d duplicates, %d found by the reconciler\n", "relay", s.Received, s.Duplicates, s.Reconciled)
		for _, t := range s.Targets {
			fmt.Fprintf(opts.Out, "  %-10s %d delivered (%d from webhooks, %d from the reconciler), %d failed on purpose and retried\n",
				t.Name, t.Delivered, t.FromWebhook, t.FromReconcile, t.FailedOnPurpose)
		}
		if len(s.MissingAtCRM) > 0 {
			fmt.Fprintf(opts.Out, "%d message(s) not yet at crm (lost within the last %s, before the next poll): %s\n",
				len(s.MissingAtCRM), cfg.Reconcile.Interval.Duration+cfg.Reconcile.Grace.Duration, strings.Join(s.MissingAtCRM, ", "))
		} else {
			fmt.Fprintf(opts.Out, "every one of the %d messages reached crm, although %d webhooks were lost\n", s.Messages, s.WebhooksDropped)
		}
	}

	// With a fixed duration, traffic stops a little before the relay, so the
	// webhooks lost last are still found and delivered before the end.
	var trafficEnd <-chan time.Time
	if opts.Duration > 0 {
		settle := cfg.Reconcile.Interval.Duration + cfg.Reconcile.Grace.Duration + time.Second
		trafficFor := opts.Duration / 2
		if opts.Duration > 2*settle {
			trafficFor = opts.Duration - settle
		}
		t := time.NewTimer(trafficFor)
		defer t.Stop()
		trafficEnd = t.C
	}

	runCtx, stopRelay := context.WithCancel(context.Background())
	defer stopRelay()
	var g run.Group
	g.Add(func() error { return a.Run(runCtx) }, func(error) { stopRelay() })
	senderCtx, stopSender := context.WithCancel(runCtx)
	g.Add(func() error { return account.Run(senderCtx) }, func(error) { stopSender() })
	g.Add(func() error {
		ticker := time.NewTicker(opts.ReportEvery)
		defer ticker.Stop()
		traffic := time.NewTicker(opts.TrafficEvery)
		defer traffic.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-traffic.C:
				account.TrafficStep()
			case <-trafficEnd:
				traffic.Stop()
				fmt.Fprintf(opts.Out, "%5.1fs  traffic stopped; the relay keeps running so the reconciler can fill the last gaps\n",
					time.Since(start).Seconds())
			case <-ticker.C:
				report()
			}
		}
	}, func(error) {})
	err = g.Run()
	summary := summarize()
	final(summary)
	return summary, err
}

// counterValue reads one labelled counter from a registry (0 if absent).
func counterValue(g prometheus.Gatherer, name, label, value string) float64 {
	families, err := g.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
