// Command blackout measures what the reconciler recovers of a long webhook
// blackout, in simulated time: a fake WAMM account (wammfake, over real
// HTTP), the real reconciler and a real SQLite store, with the passes
// scheduled exactly as Reconciler.Run schedules them (Report.Next and the
// grace deadlines) on a clock the program moves. Two scenarios: webhooks
// lost upstream while the relay polls, and the relay down for the whole
// blackout. It prints, per scenario, the recovered fraction, the API calls
// and how long recovery took, and exits 1 if a message that could be
// recovered was not.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/reconcile"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/sqlite"
	"github.com/wamm-relay/wamm-relay/wamm"
	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

type params struct {
	rate      float64
	chats     int
	blackout  time.Duration
	before    time.Duration
	after     time.Duration
	interval  time.Duration
	grace     time.Duration
	outgoing  float64
	seed      uint64
	scenarios []string
	// hidden messages go to a chat that writes only early in the blackout:
	// unknown to the relay and out of the window by the time it polls.
	hidden int
}

func main() {
	var p params
	var scen string
	flag.Float64Var(&p.rate, "rate", 5, "messages per second")
	flag.IntVar(&p.chats, "chats", 40, "chats the messages are spread over")
	flag.DurationVar(&p.blackout, "blackout", 5*time.Minute, "how long no webhook arrives")
	flag.DurationVar(&p.before, "before", time.Minute, "normal traffic before the blackout")
	flag.DurationVar(&p.after, "after", 2*time.Minute, "normal traffic after the blackout")
	flag.DurationVar(&p.interval, "interval", 30*time.Second, "reconcile.interval")
	flag.DurationVar(&p.grace, "grace", 20*time.Second, "reconcile.grace")
	flag.Float64Var(&p.outgoing, "outgoing", 0.3, "share of outgoing messages")
	flag.Uint64Var(&p.seed, "seed", 1, "random seed (chat and direction of each message)")
	flag.StringVar(&scen, "scenario", "up,down", "comma-separated: up (webhooks lost, relay polling), down (relay down)")
	flag.IntVar(&p.hidden, "hidden", 0, "messages of a chat active only in the blackout's first seconds (beyond any window)")
	asJSON := flag.Bool("json", false, "print the results as JSON")
	flag.Parse()
	p.scenarios = strings.Split(scen, ",")

	var results []result
	failed := false
	for _, s := range p.scenarios {
		res, err := run(p, s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "blackout %s: %v\n", s, err)
			os.Exit(1)
		}
		results = append(results, res)
		failed = failed || res.Recovered < res.Lost || res.HiddenRecovered+res.HiddenNamed < res.HiddenLost
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(results)
	} else {
		for _, r := range results {
			r.print(os.Stdout, p)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// result is one scenario's figures.
type result struct {
	Scenario string `json:"scenario"`
	// Lost is how many messages of the blackout had no webhook; Recovered
	// how many of them the reconciler ingested, Duplicates how many events
	// it ingested that a webhook had already brought.
	Lost, Recovered, Duplicates int
	// ChatsFull is how many chats had every lost message recovered.
	ChatsFull, Chats int
	// Passes and API calls (msg_get_last, msg_get) over the whole run;
	// MaxCallsPerPass the most one pass made.
	Passes, LastCalls, ChatCalls, MaxCallsPerPass int
	// MaxAfterVisible is the longest a lost message waited from the first
	// pass that could see it (the first after it was written, or after the
	// restart) to its ingest; MaxLatency from its creation.
	MaxAfterVisible, MaxLatency time.Duration
	// DoneAfter is how long after the blackout ended the last lost message
	// was ingested.
	DoneAfter time.Duration
	Gaps      []string
	Baseline  int
	// HiddenLost are the messages of the chat the relay could not name,
	// HiddenRecovered those recovered anyway, HiddenNamed those inside a
	// recorded gap's range.
	HiddenLost, HiddenRecovered, HiddenNamed int
}

func (r result) print(w io.Writer, p params) {
	fmt.Fprintf(w, "scenario %s: %.0f msg/s over %d chats, %s blackout, interval %s, grace %s\n",
		r.Scenario, p.rate, p.chats, p.blackout, p.interval, p.grace)
	frac := 100.0
	if r.Lost > 0 {
		frac = 100 * float64(r.Recovered) / float64(r.Lost)
	}
	fmt.Fprintf(w, "  recovered      %d of %d lost messages (%.1f%%), %d of %d chats complete, %d duplicates\n",
		r.Recovered, r.Lost, frac, r.ChatsFull, r.Chats, r.Duplicates)
	fmt.Fprintf(w, "  API calls      %d passes, %d msg_get_last, %d msg_get, at most %d in one pass\n",
		r.Passes, r.LastCalls, r.ChatCalls, r.MaxCallsPerPass)
	fmt.Fprintf(w, "  time           at most %s after the first pass that could see a message (bound interval+grace = %s),\n",
		r.MaxAfterVisible.Round(time.Second), (p.interval + p.grace).Round(time.Second))
	fmt.Fprintf(w, "                 at most %s after it was written; the last one %s after the blackout ended\n",
		r.MaxLatency.Round(time.Second), r.DoneAfter.Round(time.Second))
	fmt.Fprintf(w, "  gaps recorded  %d %v\n", len(r.Gaps), r.Gaps)
	if r.HiddenLost > 0 {
		fmt.Fprintf(w, "  unnameable     %d messages of a chat seen only early in the blackout: %d recovered, %d inside a recorded gap\n",
			r.HiddenLost, r.HiddenRecovered, r.HiddenNamed)
	}
}

// simClock is the simulated time.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// callCounter counts the API calls by method.
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
	next  http.Handler
}

func (c *callCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := strings.Split(strings.TrimPrefix(r.URL.Path, "/api2/"), "/")[0]
	c.mu.Lock()
	c.calls[method]++
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

func (c *callCounter) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// recorder ingests into the store and notes, by message id, when the
// reconciler's events were ingested.
type recorder struct {
	st      store.Store
	clock   *simClock
	mu      sync.Mutex
	at      map[string]time.Time
	dups    int
	targets []string
}

func (r *recorder) Ingest(ctx context.Context, ev event.Event) (bool, error) {
	err := r.st.Ingest(ctx, ev, r.targets)
	r.mu.Lock()
	defer r.mu.Unlock()
	if errors.Is(err, store.ErrDuplicate) {
		r.dups++
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if ev.Kind == event.KindMsg && r.targets != nil {
		r.at[ev.MsgID] = r.clock.Now()
	}
	return false, nil
}

const token = "blackout-token"

func run(p params, scenario string) (result, error) {
	if scenario != "up" && scenario != "down" {
		return result{}, fmt.Errorf("unknown scenario %q (up or down)", scenario)
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "wamm-relay-blackout-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	log := logrus.New()
	log.SetOutput(io.Discard)

	clock := &simClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	chats := make([]string, p.chats)
	for i := range chats {
		chats[i] = fmt.Sprintf("7900%07d", i)
	}
	account := wammfake.New(wammfake.Options{Token: token, Chats: chats, Now: clock.Now})
	counter := &callCounter{calls: map[string]int{}, next: account.Handler()}
	api := httptest.NewServer(counter)
	defer api.Close()
	client, err := wamm.NewClient(wamm.ClientOptions{BaseURL: api.URL + "/api2", Token: token})
	if err != nil {
		return result{}, err
	}

	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dir, "relay.db"), Logger: log})
	if err != nil {
		return result{}, err
	}
	defer st.Close()
	rec := &recorder{st: st, clock: clock, at: map[string]time.Time{}, targets: []string{"sink"}}
	seen := &recorder{st: st, clock: clock, at: map[string]time.Time{}}

	// Webhooks that WAMM does send land in the store like the relay's
	// ingest would put them there.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := wamm.ParseWebhook(body, clock.Now())
		if err == nil {
			err = st.Ingest(r.Context(), ev, []string{"sink"})
		}
		if err != nil && !errors.Is(err, store.ErrDuplicate) {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer hook.Close()
	flush := func() {
		for {
			more, err := account.DeliverNext(ctx)
			if err != nil || !more {
				return
			}
		}
	}

	newReconciler := func() (*reconcile.Reconciler, error) {
		return reconcile.New(reconcile.Options{
			Poller: client, Store: st, Ingester: rec, Seen: seen,
			Interval: p.interval, Grace: p.grace, Logger: log, Now: clock.Now,
		})
	}

	// History before the relay's first poll: not delivered (no backfill).
	rng := rand.New(rand.NewPCG(p.seed, p.seed^0x9e3779b97f4a7c15))
	say := func(i int) wammfake.Message {
		phone := chats[rng.IntN(len(chats))]
		if rng.Float64() < p.outgoing {
			return account.SendOut(phone, fmt.Sprintf("out %d", i))
		}
		return account.Receive(phone, fmt.Sprintf("in %d", i))
	}
	for i := range 150 {
		say(-i)
	}
	account.SetWebhookURL(hook.URL)
	flush() // nothing queued before the URL was set: history has no webhooks

	var res result
	res.Scenario = scenario
	r, err := newReconciler()
	if err != nil {
		return res, err
	}
	const step = 200 * time.Millisecond
	start := clock.Now()
	blackoutStart := start.Add(p.before)
	blackoutEnd := blackoutStart.Add(p.blackout)
	end := blackoutEnd.Add(p.after)
	nextPass := start
	var nextPromote time.Time
	// firstVisible: when the first pass after each lost message ran.
	lostAt := map[string]time.Time{}
	lostChat := map[string]string{}
	var pendingVisible []string
	visibleAt := map[string]time.Time{}
	relayUp := true
	perMsg := time.Duration(float64(time.Second) / p.rate)
	var owed time.Duration
	var hiddenIDs []string
	n := 0

	doPass := func() error {
		calls := counter.get("msg_get_last") + counter.get("msg_get")
		rep, err := r.ReconcileOnce(ctx)
		if err != nil {
			return fmt.Errorf("pass: %w", err)
		}
		res.Passes++
		res.MaxCallsPerPass = max(res.MaxCallsPerPass, counter.get("msg_get_last")+counter.get("msg_get")-calls)
		now := clock.Now()
		for _, id := range pendingVisible {
			visibleAt[id] = now
		}
		pendingVisible = pendingVisible[:0]
		if os.Getenv("BLACKOUT_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "%s %s\n", now.Sub(start), rep)
		}
		nextPass = now.Add(rep.Next)
		nextPromote = rep.NextPromote
		return nil
	}

	for now := clock.Now(); now.Before(end); now = clock.Now() {
		inBlackout := !now.Before(blackoutStart) && now.Before(blackoutEnd)
		switch {
		case inBlackout && relayUp && scenario == "down":
			relayUp = false
		case !inBlackout && !relayUp:
			// Restarted: a new process knows only what the store knows.
			relayUp = true
			if r, err = newReconciler(); err != nil {
				return res, err
			}
			nextPass = now
		}
		if inBlackout {
			account.SetWebhookURL("")
		} else {
			account.SetWebhookURL(hook.URL)
		}
		if p.hidden > 0 && inBlackout && now.Sub(blackoutStart) < step {
			for i := range p.hidden {
				m := account.Receive("79999999999", fmt.Sprintf("hidden %d", i))
				hiddenIDs = append(hiddenIDs, m.ID)
			}
		}
		owed += step
		for ; owed >= perMsg; owed -= perMsg {
			m := say(n)
			n++
			if inBlackout {
				lostAt[m.ID], lostChat[m.ID] = now, m.Phone
				pendingVisible = append(pendingVisible, m.ID)
			}
		}
		flush()
		if relayUp {
			switch {
			case !now.Before(nextPass):
				if err := doPass(); err != nil {
					return res, err
				}
			case !nextPromote.IsZero() && !now.Before(nextPromote):
				rep, err := r.Promote(ctx)
				if err != nil {
					return res, fmt.Errorf("promote: %w", err)
				}
				nextPromote = rep.NextPromote
			}
		}
		clock.advance(step)
	}
	// Let the last grace periods end.
	for i := 0; i < 4; i++ {
		clock.advance(p.grace)
		if err := doPass(); err != nil {
			return res, err
		}
	}

	res.Lost = len(lostAt)
	res.Duplicates = rec.dups
	full := map[string]bool{}
	for _, c := range lostChat {
		full[c] = true
	}
	res.Chats = len(full)
	for id, at := range lostAt {
		got, ok := rec.at[id]
		if !ok {
			full[lostChat[id]] = false
			continue
		}
		res.Recovered++
		res.MaxLatency = max(res.MaxLatency, got.Sub(at))
		if v, ok := visibleAt[id]; ok {
			res.MaxAfterVisible = max(res.MaxAfterVisible, got.Sub(v))
		}
		res.DoneAfter = max(res.DoneAfter, got.Sub(blackoutEnd))
	}
	for _, ok := range full {
		if ok {
			res.ChatsFull++
		}
	}
	res.LastCalls, res.ChatCalls = counter.get("msg_get_last"), counter.get("msg_get")
	res.Baseline = int(r.Status().Baseline)
	gaps, err := st.Gaps(ctx, store.GapFilter{})
	if err != nil {
		return res, err
	}
	res.HiddenLost = len(hiddenIDs)
	for _, id := range hiddenIDs {
		if _, ok := rec.at[id]; ok {
			res.HiddenRecovered++
			continue
		}
		for _, g := range gaps {
			if store.CompareMsgIDs(id, g.AfterMsgID) > 0 && store.CompareMsgIDs(id, g.BeforeMsgID) < 0 && g.Chat == "" {
				res.HiddenNamed++
				break
			}
		}
	}
	for _, g := range gaps {
		res.Gaps = append(res.Gaps, fmt.Sprintf("%s %s(%s..%s)", g.Reason, g.Chat+g.Direction, g.AfterMsgID, g.BeforeMsgID))
	}
	slices.Sort(res.Gaps)
	return res, nil
}
