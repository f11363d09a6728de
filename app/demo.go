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
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/wamm"
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
	// MissingAtCRM lists messages the accounts produced that the crm target
	// has not received (should be empty once the reconciler caught up),
	// except those of the named gap, which no API call can bring back.
	MissingAtCRM []string
	// Channels are the WAMM channels the demo runs: default and sales.
	Channels []string
	// BlackoutLost is how many sales messages arrived while its webhook
	// was down; BlackoutRecovered how many of them reached crm.
	BlackoutLost, BlackoutRecovered int
	// Gaps describes the gap records the reconciler wrote; GapMessages is
	// how many messages lie in a chat gap (beyond the API) and did not
	// reach crm.
	Gaps        []string
	GapMessages int
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
	// A second channel (another WhatsApp number, say), whose msg_ids start
	// where the first one's do: its events stay its own all the same.
	salesChats := []string{"79110000001", "79110000002", "79110000003"}
	sales := wammfake.New(wammfake.Options{Token: "demo-sales-token", Chats: salesChats, RetryBackoff: 50 * time.Millisecond})
	salesAPI := httptest.NewServer(sales.Handler())
	defer salesAPI.Close()
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
	cfg.WAMM.Channels = []config.Channel{{
		Name: "sales", Token: "demo-sales-token", APIURL: salesAPI.URL + "/api2", Timeout: config.D(5 * time.Second),
		Reconcile: config.ChannelReconcile{Enabled: true, Interval: cfg.Reconcile.Interval, Grace: cfg.Reconcile.Grace,
			BackoffMax: cfg.Reconcile.BackoffMax, BackfillOnStart: true},
	}}
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
	salesHook := "http://" + addr.String() + cfg.Server.WebhookPath + "/sales"
	sales.SetWebhookURL(salesHook)
	fmt.Fprintf(opts.Out, "wamm-relay demo: relay on http://%s, fake WAMM channels default (%s) and sales (%s), targets crm and analytics\n",
		addr, api.URL, salesAPI.URL)
	fmt.Fprintf(opts.Out, "the sales channel goes through a webhook blackout, then a flood in one chat larger than the API can page back\n")
	fmt.Fprintf(opts.Out, "the fake account loses %.0f%% of its webhooks; the reconciler polls every %s and fills the gaps\n\n",
		opts.DropRate*100, cfg.Reconcile.Interval.Duration)

	demo := &demoScript{}
	summarize := func() DemoSummary {
		st, sst := account.Stats(), sales.Stats()
		s := DemoSummary{
			Messages:        st.Messages + sst.Messages,
			WebhooksSent:    st.WebhooksSent + sst.WebhooksSent,
			WebhooksDropped: st.WebhooksDropped + sst.WebhooksDropped,
			Channels:        []string{"default", "sales"},
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
		gaps, _ := a.store.Gaps(context.Background(), store.GapFilter{Channel: "sales"})
		for _, g := range gaps {
			s.Gaps = append(s.Gaps, fmt.Sprintf("#%d %s %s chat=%s after=%s before=%s", g.ID, g.Channel, g.Reason, g.Chat, g.AfterMsgID, g.BeforeMsgID))
		}
		// A message no API call can bring back lies in a chat gap's range.
		inGap := func(m wammfake.Message) bool {
			for _, g := range gaps {
				if g.Reason == store.GapChat && g.Chat == m.Phone &&
					store.CompareMsgIDs(m.ID, g.AfterMsgID) > 0 && store.CompareMsgIDs(m.ID, g.BeforeMsgID) < 0 {
					return true
				}
			}
			return false
		}
		demo.mu.Lock()
		s.BlackoutLost = len(demo.blackout)
		for _, id := range demo.blackout {
			if crmKeys["sales:msg:"+id] {
				s.BlackoutRecovered++
			}
		}
		demo.mu.Unlock()
		for _, m := range sales.Messages() {
			switch {
			case crmKeys["sales:msg:"+m.ID]:
			case inGap(m):
				s.GapMessages++
			default:
				s.MissingAtCRM = append(s.MissingAtCRM, "sales:"+m.ID)
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
		fmt.Fprintf(opts.Out, "  %-10s sales blackout: %d of %d messages without a webhook recovered by polling\n", "reconcile",
			s.BlackoutRecovered, s.BlackoutLost)
		fmt.Fprintf(opts.Out, "  %-10s %d messages of the flood's chat are beyond the API and named in a gap record (GET /api/v1/gaps, wamm-relay gaps list):\n",
			"gaps", s.GapMessages)
		for _, g := range s.Gaps {
			fmt.Fprintf(opts.Out, "             %s\n", g)
		}
		if len(s.MissingAtCRM) > 0 {
			fmt.Fprintf(opts.Out, "%d message(s) not yet at crm (lost within the last %s, before the next poll): %s\n",
				len(s.MissingAtCRM), cfg.Reconcile.Interval.Duration+cfg.Reconcile.Grace.Duration, strings.Join(s.MissingAtCRM, ", "))
		} else {
			fmt.Fprintf(opts.Out, "every one of the %d messages reached crm but the %d named in a gap, although %d webhooks were lost\n",
				s.Messages, s.GapMessages, s.WebhooksDropped)
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
				sales.TrafficStep()
				demo.step(time.Since(start), opts.Duration, sales, salesHook, salesChats, opts.Out)
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

// floodSize is how many messages the demo's flood writes in one chat with
// every webhook lost: more than one msg_get page, so the oldest are a gap.
const floodSize = 130

// demoScript plays the sales channel's troubles at fixed points of the
// demo: a webhook blackout (a fifth of the run), then a flood in one chat.
type demoScript struct {
	mu       sync.Mutex
	phase    int
	blackout []string // ids written while the webhook was down
	flood    []string // ids of the flood, oldest first
}

func (d *demoScript) step(elapsed, total time.Duration, sales *wammfake.Account, hook string, chats []string, out io.Writer) {
	if total <= 0 {
		total = 20 * time.Second
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.phase == 0 && elapsed > total/10:
		d.phase = 1
		sales.SetWebhookURL("")
		fmt.Fprintf(out, "%5.1fs  sales: webhook blackout begins (WAMM cannot reach the relay)\n", elapsed.Seconds())
	case d.phase == 1 && elapsed > total*3/10:
		d.phase = 2
		sales.SetWebhookURL(hook)
		fmt.Fprintf(out, "%5.1fs  sales: blackout over after %d messages without a webhook\n", elapsed.Seconds(), len(d.blackout))
	case d.phase == 1:
		d.blackout = append(d.blackout, sales.Receive(chats[len(d.blackout)%len(chats)], "during the blackout").ID)
	case d.phase == 2 && elapsed > total*4/10:
		d.phase = 3
		sales.DropNext(floodSize)
		for i := range floodSize {
			d.flood = append(d.flood, sales.Receive(chats[0], fmt.Sprintf("flood %d", i)).ID)
		}
		fmt.Fprintf(out, "%5.1fs  sales: %d messages in chat %s with every webhook lost (msg_get pages back %d)\n",
			elapsed.Seconds(), floodSize, chats[0], wamm.MaxCount)
	}
}
