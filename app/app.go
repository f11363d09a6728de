package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/dedup"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/reconcile"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/targets"
	"github.com/wamm-relay/wamm-relay/tracing"
	"github.com/wamm-relay/wamm-relay/wamm"
)

// Options are what the embedding program (cmd or a test) decides.
type Options struct {
	Config config.Config
	// Logger is the root logger; nil builds one from Config.Log on stderr.
	Logger *logrus.Logger
	// Version is reported in the User-Agent and logs.
	Version string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// IdlePoll overrides how often idle delivery loops re-check the store
	// (tests shorten it to see expired leases of a killed process sooner).
	IdlePoll time.Duration
}

// App is one running relay instance.
type App struct {
	cfg        config.Config
	log        *logrus.Logger
	store      store.Store
	registry   *prometheus.Registry
	server     *relay.Server
	dispatcher *targets.Dispatcher
	// reconcilers has one entry per channel with a token and reconciling
	// on, the default channel first.
	reconcilers []*reconcile.Reconciler
	pruner      *pruner
	instance    string

	closeOnce sync.Once
	closers   []func() error // LIFO teardown
	closeErr  error
}

// New builds every component; nothing runs until Run. On error, whatever was
// already opened is closed.
func New(ctx context.Context, opts Options) (_ *App, err error) {
	cfg := opts.Config
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log, err = NewLogger(cfg.Log)
		if err != nil {
			return nil, err
		}
	}
	a := &App{cfg: cfg, log: log, registry: prometheus.NewRegistry(), instance: instanceID()}
	defer func() {
		if err != nil {
			_ = a.Close()
		}
	}()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tp, err := newTracing(ctx, cfg.Tracing, opts.Version, log)
	if err != nil {
		return nil, err
	}
	// Registered first, so it runs last: every span has ended by then.
	a.onClose(func() error { return flushTracing(tp, log.WithField("component", "tracing")) })

	st, err := OpenStore(ctx, cfg, log.WithField("component", "store"))
	if err != nil {
		return nil, err
	}
	a.store = st
	a.onClose(st.Close)

	targetList := make([]targets.Target, 0, len(cfg.Targets))
	for _, t := range cfg.Targets {
		kinds := make([]event.Kind, 0, len(t.Events))
		for _, k := range t.Events {
			kinds = append(kinds, event.Kind(k))
		}
		targetList = append(targetList, targets.Target{
			Name:                t.Name,
			URL:                 t.URL,
			Headers:             t.Headers,
			SigningSecret:       t.SigningSecret,
			Events:              kinds,
			Channels:            t.Channels,
			Timeout:             t.EffectiveTimeout(cfg.Delivery),
			MaxAttempts:         t.EffectiveMaxAttempts(cfg.Delivery),
			CAFile:              t.CAFile,
			RateLimit:           t.RateLimit,
			RateBurst:           t.RateBurst,
			BreakerFailures:     t.BreakerFailures,
			BreakerCooldown:     t.BreakerCooldown.Duration,
			DenyPrivateNetworks: t.DenyPrivateNetworks,
		})
	}
	table, err := targets.NewTable(targetList)
	if err != nil {
		return nil, fmt.Errorf("build target table: %w", err)
	}
	warnOrphans(ctx, st, table.Names(), log.WithField("component", "store"))

	enqueued := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wamm_relay_events_enqueued_total",
		Help: "Events newly written to the outbox, by source (webhook, reconcile).",
	}, []string{"source"})
	for _, s := range []event.Source{event.SourceWebhook, event.SourceReconcile} {
		enqueued.WithLabelValues(string(s))
	}
	a.registry.MustRegister(enqueued)
	fanout := &fanoutIngester{store: st, router: table, enqueued: enqueued}
	cache, err := dedup.New(dedup.Options{
		Size:       cfg.Dedup.LRUSize,
		Next:       fanout,
		Registerer: a.registry,
	})
	if err != nil {
		return nil, fmt.Errorf("build dedup cache: %w", err)
	}

	shutdown := cfg.Server.ShutdownTimeout.Duration
	a.dispatcher, err = targets.New(targets.Options{
		Targets:        targetList,
		Store:          st,
		Owner:          a.instance,
		Workers:        cfg.Delivery.Workers,
		BackoffInitial: cfg.Delivery.BackoffInitial.Duration,
		BackoffMax:     cfg.Delivery.BackoffMax.Duration,
		IdlePoll:       opts.IdlePoll,
		// Leave a little of the shutdown budget for releasing leases.
		DrainTimeout: shutdown * 4 / 5,
		UserAgent:    "wamm-relay/" + opts.Version,
		Logger:       log.WithField("component", "targets"),
		Registerer:   a.registry,
		Now:          now,
		Tracer:       tp.Tracer("targets"),
	})
	if err != nil {
		return nil, fmt.Errorf("build dispatcher: %w", err)
	}
	fanout.handoff = a.dispatcher
	// A target paused before this start stays paused from its first claim,
	// not from the first pause sync.
	paused, err := st.PausedTargets(ctx)
	if err != nil {
		return nil, fmt.Errorf("read paused targets: %w", err)
	}
	for _, name := range paused {
		a.dispatcher.SetPaused(name, true)
	}

	// An ingest must end before the write deadline, or its answer is lost:
	// a short write_timeout shortens it (relay would reject the config).
	ingestTimeout := min(relay.DefaultIngestTimeout, cfg.Server.WriteTimeout.Duration*4/5)
	var webhookChannels []relay.WebhookChannel
	for _, ch := range cfg.Channels()[1:] {
		webhookChannels = append(webhookChannels, relay.WebhookChannel{Name: ch.Name, Secret: ch.WebhookSecret})
	}
	a.server, err = relay.New(relay.Options{
		Listen:            cfg.Server.Listen,
		WebhookPath:       cfg.Server.WebhookPath,
		WebhookSecret:     cfg.Server.WebhookSecret,
		Channels:          webhookChannels,
		MaxBodyBytes:      cfg.Server.MaxBodyBytes,
		AdminToken:        cfg.Server.AdminToken,
		TrustedProxies:    cfg.Server.TrustedProxies,
		ShutdownTimeout:   shutdown,
		DrainDelay:        cfg.Server.DrainDelay.Duration,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.Duration,
		ReadTimeout:       cfg.Server.ReadTimeout.Duration,
		WriteTimeout:      cfg.Server.WriteTimeout.Duration,
		IdleTimeout:       cfg.Server.IdleTimeout.Duration,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		MaxInFlight:       cfg.Server.MaxInFlight,
		IngestTimeout:     ingestTimeout,
		Ingester:          cache,
		Admin:             st,
		Gaps:              st,
		ChannelReports:    a.channelReports,
		TargetControl:     targetControl{dispatcher: a.dispatcher, pauses: st, now: now},
		Ready:             st.Ping,
		Targets:           table.Names(),
		Gatherer:          a.registry,
		MetricsListen:     cfg.Server.MetricsListen,
		MetricsToken:      cfg.Server.MetricsToken,
		Registerer:        a.registry,
		Logger:            log.WithField("component", "relay"),
		Now:               now,
		Tracer:            tp.Tracer("relay"),
	})
	if err != nil {
		return nil, fmt.Errorf("build relay: %w", err)
	}

	for _, ch := range cfg.Channels() {
		r, err := newReconciler(cfg, ch, st, cache, log, a.registry, now, tp.Tracer("reconcile"))
		if err != nil {
			return nil, err
		}
		if r != nil {
			a.reconcilers = append(a.reconcilers, r)
		}
	}

	a.pruner = &pruner{
		store:     st,
		retention: cfg.Dedup.Retention.Duration,
		interval:  time.Hour,
		log:       log.WithField("component", "pruner"),
		now:       now,
	}
	return a, nil
}

// newReconciler builds the reconciler of one channel, or returns nil when
// it is switched off or has no token to poll with.
func newReconciler(cfg config.Config, ch config.EffectiveChannel, st store.Store, ingester reconcile.Ingester, log *logrus.Logger, reg prometheus.Registerer, now func() time.Time, tr *tracing.Tracer) (*reconcile.Reconciler, error) {
	rlog := log.WithFields(logrus.Fields{"component": "reconcile", "channel": ch.Name})
	switch {
	case !ch.Reconcile.Enabled:
		rlog.Info("reconciler disabled by configuration")
		return nil, nil
	case ch.Token == "" && ch.Name == config.DefaultChannel:
		rlog.Info("reconciler disabled: no [wamm] token configured")
		return nil, nil
	case ch.Token == "":
		rlog.Info("reconciler disabled: the channel has no token")
		return nil, nil
	}
	client, err := wamm.NewClient(wamm.ClientOptions{
		BaseURL: ch.APIURL,
		Token:   ch.Token,
		Timeout: ch.Timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("build wamm client of channel %s: %w", ch.Name, err)
	}
	pathName := ch.Name
	if pathName == config.DefaultChannel {
		pathName = ""
	}
	checker, err := reconcile.NewChannelChecker(reconcile.ChannelCheckOptions{
		Lister:     client,
		Channel:    ch.Name,
		WebhookURL: reconcile.WebhookURL(cfg.Server.PublicURL, cfg.Server.WebhookPath, pathName, ch.WebhookSecret),
		PublicPath: reconcile.WebhookPublicPath(cfg.Server.WebhookPath, pathName),
		Logger:     rlog,
		Registerer: reg,
		Now:        now,
	})
	if err != nil {
		return nil, fmt.Errorf("build channel check of %s: %w", ch.Name, err)
	}
	r, err := reconcile.New(reconcile.Options{
		Channel:         ch.Name,
		Checker:         checker,
		CheckEvery:      ch.Reconcile.CheckEvery,
		Poller:          client,
		Store:           st,
		Ingester:        ingester,
		Seen:            seenIngester{store: st},
		Interval:        ch.Reconcile.Interval.Duration,
		Grace:           ch.Reconcile.Grace.Duration,
		BackoffMax:      ch.Reconcile.BackoffMax.Duration,
		BackfillOnStart: ch.Reconcile.BackfillOnStart,
		// Messages older than the dedup retention may have been pruned from
		// the store; without this bound they would look missed again.
		MaxAge:     cfg.Dedup.Retention.Duration * 9 / 10,
		Logger:     rlog,
		Registerer: reg,
		Now:        now,
		Tracer:     tr,
	})
	if err != nil {
		return nil, fmt.Errorf("build reconciler of channel %s: %w", ch.Name, err)
	}
	return r, nil
}

// channelReports is /api/v1/channels: every channel, with its
// reconciler's status where it has one.
func (a *App) channelReports(context.Context) []relay.ChannelReport {
	var out []relay.ChannelReport
	for _, ch := range a.cfg.Channels() {
		rep := relay.ChannelReport{Name: ch.Name, WebhookPath: a.cfg.Server.WebhookPath}
		if ch.Name != config.DefaultChannel {
			rep.WebhookPath += "/" + ch.Name
		}
		enabled := false
		for _, r := range a.reconcilers {
			if r.Channel() == ch.Name {
				enabled = true
				rep.Reconcile = channelReconcileJSON{Enabled: true, Status: r.Status()}
				if c, ok := r.Checker().(*reconcile.ChannelChecker); ok {
					rep.Check = c.Status()
				}
			}
		}
		if !enabled {
			rep.Reconcile = channelReconcileJSON{Enabled: false}
		}
		out = append(out, rep)
	}
	return out
}

// channelReconcileJSON is the reconcile part of a channel report.
type channelReconcileJSON struct {
	Enabled bool `json:"enabled"`
	reconcile.Status
}

// Listen binds the public listener (and the metrics listener, when
// configured) so their addresses are known before Run.
func (a *App) Listen() (net.Addr, error) {
	addr, err := a.server.Listen()
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", a.cfg.Server.Listen, err)
	}
	return addr, nil
}

// MetricsAddr is the bound address of server.metrics_listen once Listen
// has run; nil when /metrics is served on the public listener.
func (a *App) MetricsAddr() net.Addr { return a.server.MetricsAddr() }

// Store is the instance's outbox (for CLI verbs and tests).
func (a *App) Store() store.Store { return a.store }

// Reconciler is the default channel's reconciler, or the first channel's
// when the default one has none; nil when no channel reconciles.
func (a *App) Reconciler() *reconcile.Reconciler {
	if len(a.reconcilers) == 0 {
		return nil
	}
	return a.reconcilers[0]
}

// Reconcilers are the reconcilers of every channel that has one, the
// default channel's first.
func (a *App) Reconcilers() []*reconcile.Reconciler { return a.reconcilers }

// Run runs every component until ctx ends or one of them fails, then waits
// for all of them to drain. It returns the first fatal error, nil on a clean
// stop.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.log.WithFields(logrus.Fields{
		"instance": a.instance,
		"store":    a.cfg.Store.Driver,
		"targets":  len(a.cfg.Targets),
		"channels": len(a.cfg.Channels()),
	}).Info("wamm-relay starting")

	var g run.Group
	add := func(name string, fn func(context.Context) error) {
		g.Add(func() error {
			if err := fn(ctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}, func(error) { cancel() })
	}
	add("relay", a.server.Run)
	add("targets", a.dispatcher.Run)
	add("target pauses", func(ctx context.Context) error {
		return a.dispatcher.SyncPauses(ctx, a.store, pauseSyncInterval)
	})
	add("pruner", a.pruner.Run)
	for _, r := range a.reconcilers {
		add("reconcile "+r.Channel(), r.Run)
	}
	// Keeps the group alive until ctx ends even if every component is idle.
	g.Add(func() error { <-ctx.Done(); return nil }, func(error) { cancel() })

	err := g.Run()
	if err != nil {
		a.log.WithError(err).Error("wamm-relay stopped on error")
		return err
	}
	a.log.Info("wamm-relay stopped")
	return nil
}

// Close releases everything New opened, last opened first.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		var errs []error
		for i := len(a.closers) - 1; i >= 0; i-- {
			errs = append(errs, a.closers[i]())
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

func (a *App) onClose(fn func() error) { a.closers = append(a.closers, fn) }

// instanceID names this process in delivery leases: host, pid and a random
// suffix so a restarted process never mistakes an old lease for its own.
func instanceID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
