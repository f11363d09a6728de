package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/logx"
	"github.com/wamm-relay/wamm-relay/relay/ui"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/tracing"
)

// Defaults used for zero Options fields.
const (
	DefaultWebhookPath       = "/webhook"
	DefaultMaxBodyBytes      = 1 << 20
	DefaultShutdownTimeout   = 15 * time.Second
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 20 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxInFlight       = 256
	// DefaultIngestTimeout stays below WAMM's 10 s budget, so a stuck store
	// yields our 503 rather than a WAMM-side timeout.
	DefaultIngestTimeout = 8 * time.Second
	DefaultReadyTimeout  = 2 * time.Second
	DefaultStatsTimeout  = 5 * time.Second
)

// Ingester stores an event durably; duplicate reports an event whose key was
// already stored (nothing new written). Returning store.ErrDuplicate is
// treated the same as duplicate=true.
type Ingester interface {
	Ingest(ctx context.Context, ev event.Event) (duplicate bool, err error)
}

// Admin is what the admin API and the stats collector read and change;
// the store backends satisfy it.
type Admin interface {
	List(ctx context.Context, f store.ListFilter) ([]event.Delivery, error)
	Replay(ctx context.Context, r store.ReplayRequest) (int, error)
	TargetStats(ctx context.Context) ([]store.TargetStats, error)
	StatsSource
}

// WebhookChannel is a named channel's webhook: its name and its secret
// ("" accepts any request on its path).
type WebhookChannel struct {
	Name   string
	Secret string
}

// Options configures a Server. Zero durations and sizes take the Default
// constants; negative ones are rejected.
type Options struct {
	// Listen is the address of the public listener (":0" picks a port).
	Listen string
	// WebhookPath is where WAMM posts. With WebhookSecret set, the secret is
	// accepted as {WebhookPath}/<secret> or {WebhookPath}?secret=<secret>.
	WebhookPath   string
	WebhookSecret string
	// Channels are the named WAMM channels beside the default one. Each
	// posts to {WebhookPath}/{name}; with a secret, to
	// {WebhookPath}/{name}/<secret> or {WebhookPath}/{name}?secret=<secret>.
	// Its events are scoped to it (event.Event.ScopeTo).
	Channels     []WebhookChannel
	MaxBodyBytes int64
	// AdminToken is the bearer token of /api/v1; empty disables the admin API
	// and the dashboard (/ui), whose login asks for it.
	AdminToken string
	// DashboardSessionTTL is how long a dashboard login lasts; zero is
	// ui.DefaultSessionTTL.
	DashboardSessionTTL time.Duration
	// TrustedProxies are the CIDRs (or IPs) whose X-Forwarded-For is
	// believed; empty trusts none and uses the socket address.
	TrustedProxies []string

	ShutdownTimeout time.Duration
	// DrainDelay is how long Run keeps serving, with /readyz answering 503,
	// after its context ends and before it closes the listener: time for
	// a load balancer to see the instance leave. Zero closes it at once.
	DrainDelay        time.Duration
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// MaxInFlight caps concurrent webhook requests; beyond it a webhook gets
	// 503 with Retry-After at once.
	MaxInFlight int
	// IngestTimeout bounds one Ingest call; must be below WriteTimeout.
	IngestTimeout time.Duration
	// ReadyTimeout bounds one Ready call of /readyz.
	ReadyTimeout time.Duration
	// StatsTimeout bounds one QueueStats call of a /metrics scrape.
	StatsTimeout time.Duration

	Ingester Ingester // required
	// Admin serves the admin API (required when AdminToken is set) and feeds
	// the stats collector (registered when Admin and Registerer are set).
	Admin Admin
	// Gaps serves /api/v1/gaps when set (with AdminToken).
	Gaps GapStore
	// ChannelReports serves /api/v1/channels when set (with AdminToken).
	ChannelReports func(ctx context.Context) []ChannelReport
	// TargetControl serves pause/resume and the gate fields of
	// /api/v1/targets when set (with AdminToken).
	TargetControl TargetControl
	// Ready is /readyz's check (the store's Ping); nil checks nothing.
	Ready func(ctx context.Context) error
	// Targets are the configured target names, in configured order.
	Targets []string

	// Gatherer is served at /metrics; nil leaves /metrics unrouted.
	Gatherer prometheus.Gatherer
	// MetricsListen, when set, serves /metrics on a listener of its own
	// (":0" picks a port) and not on Listen, which then answers 404 there.
	// It needs Gatherer.
	MetricsListen string
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken string
	// Registerer receives relay's metrics and the stats collector; nil
	// registers nothing.
	Registerer prometheus.Registerer

	// Tracer records a webhook.ingest span per webhook; nil traces nothing.
	Tracer *tracing.Tracer

	// LogSampleInterval is how long repeated rejections (401, 413, 400 ...)
	// of one reason are only counted after the first is logged, before one
	// "suppressed N similar" line reports them; zero is
	// logx.DefaultSampleInterval.
	LogSampleInterval time.Duration

	Logger logrus.FieldLogger // required
	Now    func() time.Time   // nil means time.Now
}

func (o *Options) setDefaults() {
	if o.WebhookPath == "" {
		o.WebhookPath = DefaultWebhookPath
	}
	defaultInt64(&o.MaxBodyBytes, DefaultMaxBodyBytes)
	defaultDuration(&o.ShutdownTimeout, DefaultShutdownTimeout)
	defaultDuration(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	defaultDuration(&o.ReadTimeout, DefaultReadTimeout)
	defaultDuration(&o.WriteTimeout, DefaultWriteTimeout)
	defaultDuration(&o.IdleTimeout, DefaultIdleTimeout)
	defaultDuration(&o.IngestTimeout, DefaultIngestTimeout)
	defaultDuration(&o.ReadyTimeout, DefaultReadyTimeout)
	defaultDuration(&o.StatsTimeout, DefaultStatsTimeout)
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func defaultDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func defaultInt64(v *int64, def int64) {
	if *v == 0 {
		*v = def
	}
}

// reservedPaths are served by relay itself; the webhook may not shadow them.
var reservedPaths = []string{"/healthz", "/readyz", "/metrics", "/api", "/ui"}

func (o *Options) validate() error {
	if o.Listen == "" {
		return errors.New("relay options: Listen is required")
	}
	if o.Ingester == nil {
		return errors.New("relay options: Ingester is required")
	}
	if o.Logger == nil {
		return errors.New("relay options: Logger is required")
	}
	if o.MetricsListen != "" && o.Gatherer == nil {
		return errors.New("relay options: Gatherer is required when MetricsListen is set")
	}
	if o.AdminToken != "" && o.Admin == nil {
		return errors.New("relay options: Admin is required when AdminToken is set")
	}
	p := o.WebhookPath
	if !strings.HasPrefix(p, "/") || p == "/" || strings.HasSuffix(p, "/") || strings.ContainsAny(p, ":*?#") {
		return fmt.Errorf("relay options: WebhookPath %q must start with /, not end with /, and hold no : * ? #", p)
	}
	for _, r := range reservedPaths {
		if p == r || strings.HasPrefix(p, r+"/") {
			return fmt.Errorf("relay options: WebhookPath %q collides with %s", p, r)
		}
	}
	if o.WebhookSecret != "" && strings.Contains(o.WebhookSecret, "/") {
		// A / cannot be matched as one path segment; say so without the value.
		return errors.New("relay options: WebhookSecret must not contain /")
	}
	seen := map[string]bool{}
	for i, ch := range o.Channels {
		switch {
		case ch.Name == "" || strings.ContainsAny(ch.Name, "/?#%:"):
			return fmt.Errorf("relay options: Channels[%d]: name %q must be a plain path segment", i, ch.Name)
		case ch.Name == event.DefaultChannel || event.ReservedChannelName(ch.Name):
			return fmt.Errorf("relay options: Channels[%d]: name %q is reserved", i, ch.Name)
		case seen[ch.Name]:
			return fmt.Errorf("relay options: Channels[%d]: name %q repeated", i, ch.Name)
		case o.WebhookSecret != "" && ch.Name == o.WebhookSecret:
			return fmt.Errorf("relay options: Channels[%d]: name must differ from WebhookSecret", i)
		case strings.Contains(ch.Secret, "/"):
			return fmt.Errorf("relay options: Channels[%d]: secret must not contain /", i)
		}
		seen[ch.Name] = true
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ShutdownTimeout", o.ShutdownTimeout}, {"DrainDelay", o.DrainDelay}, {"ReadHeaderTimeout", o.ReadHeaderTimeout},
		{"ReadTimeout", o.ReadTimeout}, {"WriteTimeout", o.WriteTimeout}, {"IdleTimeout", o.IdleTimeout},
		{"IngestTimeout", o.IngestTimeout}, {"ReadyTimeout", o.ReadyTimeout}, {"StatsTimeout", o.StatsTimeout},
		{"LogSampleInterval", o.LogSampleInterval},
	} {
		if d.v < 0 {
			return fmt.Errorf("relay options: %s must be positive, got %s", d.name, d.v)
		}
	}
	if o.MaxBodyBytes < 0 {
		return fmt.Errorf("relay options: MaxBodyBytes must be positive, got %d", o.MaxBodyBytes)
	}
	if o.MaxHeaderBytes < 0 {
		return fmt.Errorf("relay options: MaxHeaderBytes must be positive, got %d", o.MaxHeaderBytes)
	}
	if o.MaxInFlight < 0 {
		return fmt.Errorf("relay options: MaxInFlight must be positive, got %d", o.MaxInFlight)
	}
	if o.IngestTimeout >= o.WriteTimeout {
		return fmt.Errorf("relay options: IngestTimeout (%s) must be below WriteTimeout (%s), or the answer to a slow ingest is lost",
			o.IngestTimeout, o.WriteTimeout)
	}
	return nil
}

// Server is the relay's HTTP server.
type Server struct {
	opts   Options
	log    logrus.FieldLogger
	engine *gin.Engine
	srv    *http.Server
	// metricsSrv serves /metrics on Options.MetricsListen; nil without one.
	metricsSrv *http.Server
	sem        chan struct{}
	metrics    *metrics
	// sampler logs rejections of outside requests without a line each.
	sampler *logx.Sampler
	// channelSecrets maps each named channel to its webhook secret.
	channelSecrets map[string]string
	// secrets are redacted wherever they appear in a logged value.
	secrets []string
	// ui is the dashboard, nil without an admin token.
	ui         *ui.UI
	ingestRate rateWindow

	draining     atomic.Bool
	readyFailing atomic.Bool

	mu        sync.Mutex
	ln        net.Listener
	metricsLn net.Listener
	started   bool
}

var ginModeOnce sync.Once

// New validates opts, builds the routes and registers the metrics.
func New(opts Options) (*Server, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	// Copy the slices the server keeps, so the caller cannot change them later.
	opts.Targets = append([]string(nil), opts.Targets...)

	ginModeOnce.Do(func() { gin.SetMode(gin.ReleaseMode) })

	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		sem:     make(chan struct{}, opts.MaxInFlight),
		metrics: newMetrics(),

		channelSecrets: make(map[string]string, len(opts.Channels)),
	}
	sampler, err := logx.NewSampler(opts.Logger, opts.LogSampleInterval, opts.Now)
	if err != nil {
		return nil, fmt.Errorf("relay options: %w", err)
	}
	s.sampler = sampler
	for _, secret := range []string{opts.WebhookSecret, opts.AdminToken, opts.MetricsToken} {
		if secret != "" {
			s.secrets = append(s.secrets, secret)
		}
	}
	for _, ch := range opts.Channels {
		s.channelSecrets[ch.Name] = ch.Secret
		if ch.Secret != "" && !slices.Contains(s.secrets, ch.Secret) {
			s.secrets = append(s.secrets, ch.Secret)
		}
	}
	s.ingestRate.window = time.Minute
	if opts.AdminToken != "" {
		d, err := ui.New(ui.Options{
			AdminToken: opts.AdminToken, SessionTTL: opts.DashboardSessionTTL, Logger: opts.Logger, Now: opts.Now,
			LoginRejected: func(c *gin.Context) {
				s.rejectedRequest(c, endpointDashboard, http.StatusUnauthorized, reasonUnauthorized, "wrong admin token", "dashboard login rejected")
			},
		})
		if err != nil {
			return nil, fmt.Errorf("relay options: dashboard: %w", err)
		}
		s.ui = d
	}
	if opts.Registerer != nil {
		if err := s.metrics.register(opts.Registerer); err != nil {
			return nil, err
		}
		if opts.Admin != nil {
			sc := NewStatsCollector(opts.Admin, opts.Targets, opts.StatsTimeout, opts.Now)
			if err := opts.Registerer.Register(sc); err != nil {
				return nil, fmt.Errorf("register stats collector: %w", err)
			}
		}
	}

	engine, err := s.buildEngine()
	if err != nil {
		return nil, err
	}
	s.engine = engine
	s.srv = s.newHTTPServer(engine)
	if opts.MetricsListen != "" {
		s.metricsSrv = s.buildMetricsServer()
	}
	return s, nil
}

// newHTTPServer is an http.Server with the options' limits and timeouts.
func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		ErrorLog:          newServerErrorLog(s.log, s.redactLiteral),
	}
}

func (s *Server) buildEngine() (*gin.Engine, error) {
	e := gin.New()
	// Strict routing: no redirects (a redirect of a POST is never what WAMM
	// wants), and 405 rather than 404 for a known path with the wrong method.
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	if err := e.SetTrustedProxies(s.opts.TrustedProxies); err != nil {
		return nil, fmt.Errorf("relay options: TrustedProxies: %w", err)
	}
	// Our own access log instead of gin.Logger: the path carries the webhook
	// secret, and gin's recovery dumps the request line.
	e.Use(s.accessLog(), s.recovery())
	e.NoRoute(func(c *gin.Context) { c.JSON(http.StatusNotFound, errorBody("not found")) })
	e.NoMethod(func(c *gin.Context) { c.JSON(http.StatusMethodNotAllowed, errorBody("method not allowed")) })

	// One wildcard segment serves both the default channel's secret and a
	// named channel (gin cannot route two wildcards at one position): a
	// segment naming a channel is that channel, anything else is the
	// default channel's secret.
	e.POST(s.opts.WebhookPath, s.handleWebhook)
	if s.opts.WebhookSecret != "" || len(s.opts.Channels) > 0 {
		e.POST(s.opts.WebhookPath+"/:seg", s.handleWebhook)
	}
	if len(s.opts.Channels) > 0 {
		e.POST(s.opts.WebhookPath+"/:seg/:secret", s.handleWebhook)
	}
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"ok": true}) })
	e.GET("/readyz", s.handleReadyz)
	if s.opts.Gatherer != nil && s.opts.MetricsListen == "" {
		s.routeMetrics(e)
	}
	if s.opts.AdminToken != "" {
		s.routeAdmin(e.Group("/api/v1", s.requireAdmin))
		s.ui.Register(e)
	}
	return e, nil
}

// Handler returns the server's routes, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.engine }

// Listen binds Options.Listen (and Options.MetricsListen), so callers
// learn the port before Run. A second call returns the same address.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr(), nil
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.opts.Listen, err)
	}
	if s.metricsSrv != nil {
		mln, err := net.Listen("tcp", s.opts.MetricsListen)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("listen for metrics on %s: %w", s.opts.MetricsListen, err)
		}
		s.metricsLn = mln
	}
	s.ln = ln
	return ln.Addr(), nil
}

// MetricsAddr is the bound address of Options.MetricsListen; nil before
// Listen or without a metrics listener.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// SetDraining makes /readyz answer 503 from now on.
func (s *Server) SetDraining() {
	if !s.draining.Swap(true) {
		s.log.Info("draining: readiness now reports 503")
	}
}

// Run serves until ctx ends (calling Listen if needed), then marks the
// server draining, keeps serving for DrainDelay, and shuts it down, letting
// in-flight requests finish within ShutdownTimeout. A metrics listener is
// served and drained alongside, so a scrape still works during the drain.
// It returns nil on a clean drain.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("run http server: already run")
	}
	s.started = true
	servers := []served{{name: "http server", srv: s.srv, ln: s.ln}}
	if s.metricsLn != nil {
		servers = append(servers, served{name: "metrics server", srv: s.metricsSrv, ln: s.metricsLn})
	}
	s.mu.Unlock()

	// The sampler stops after the last request is answered, so the last
	// interval's rejections are reported, not dropped.
	samplerCtx, stopSampler := context.WithCancel(context.Background())
	samplerDone := make(chan struct{})
	go func() { s.sampler.Run(samplerCtx); close(samplerDone) }()
	defer func() { stopSampler(); <-samplerDone }()

	// Serve returns only after Shutdown or on a fatal error; the first
	// fatal one ends every server.
	serveErr := make(chan error, len(servers))
	for _, sv := range servers {
		go func() {
			err := sv.srv.Serve(sv.ln)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			} else {
				err = fmt.Errorf("serve %s: %w", sv.name, err)
			}
			serveErr <- err
		}()
		s.log.WithField("addr", sv.ln.Addr().String()).Info(sv.name + " listening")
	}
	fatal := func(err error) error {
		for _, sv := range servers {
			_ = sv.srv.Close()
		}
		return err
	}

	select {
	case err := <-serveErr:
		return fatal(err)
	case <-ctx.Done():
	}

	s.SetDraining()
	if d := s.opts.DrainDelay; d > 0 {
		s.log.WithField("drain_delay", d.String()).Info("draining: still serving until load balancers see /readyz fail")
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case err := <-serveErr:
			timer.Stop()
			return fatal(err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, sv := range servers {
		wg.Go(func() {
			if err := sv.srv.Shutdown(shutdownCtx); err != nil {
				// Requests still running past the bound are cut off.
				_ = sv.srv.Close()
				errs[i] = fmt.Errorf("drain %s: %w", sv.name, err)
			}
		})
	}
	wg.Wait()
	for range servers {
		errs = append(errs, <-serveErr)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.Info("http server drained")
	return nil
}

// served is one http.Server of Run and its listener.
type served struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

func (s *Server) handleReadyz(c *gin.Context) {
	if s.draining.Load() {
		c.JSON(http.StatusServiceUnavailable, errorBody("draining"))
		return
	}
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request.Context(), s.opts.ReadyTimeout)
		err := s.opts.Ready(ctx)
		cancel()
		if err != nil {
			reason := "store unreachable"
			if errors.Is(err, store.ErrDiskFull) {
				// Reachable, but refusing every write: say what to fix.
				reason = "store disk full"
			}
			// Probes come every few seconds: log the change, not every probe.
			if !s.readyFailing.Swap(true) {
				s.log.WithError(err).Warn("readiness failing: " + reason)
			}
			c.JSON(http.StatusServiceUnavailable, errorBody(reason))
			return
		}
		if s.readyFailing.Swap(false) {
			s.log.Info("readiness recovered: store reachable")
		}
	}
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

type errorResponse struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

func errorBody(msg string) errorResponse { return errorResponse{OK: false, Error: msg} }
