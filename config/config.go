package config

import (
	"fmt"
	"strings"
	"time"
)

// Config mirrors the TOML file key for key; see /config.toml for an annotated
// example. Durations are Go duration strings in the file.
type Config struct {
	Server    Server    `toml:"server"`
	WAMM      WAMM      `toml:"wamm"`
	Reconcile Reconcile `toml:"reconcile"`
	Dedup     Dedup     `toml:"dedup"`
	Store     Store     `toml:"store"`
	Delivery  Delivery  `toml:"delivery"`
	Log       Log       `toml:"log"`
	Tracing   Tracing   `toml:"tracing"`
	Targets   []Target  `toml:"targets"`
}

// Server is the [server] table: the public HTTP listener.
type Server struct {
	Listen          string   `toml:"listen"`
	WebhookPath     string   `toml:"webhook_path"`
	WebhookSecret   string   `toml:"webhook_secret"`
	MaxBodyBytes    int64    `toml:"max_body_bytes"`
	AdminToken      string   `toml:"admin_token"`
	TrustedProxies  []string `toml:"trusted_proxies"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`

	// Extensions beyond the interface contract.
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	ReadTimeout       Duration `toml:"read_timeout"`
	WriteTimeout      Duration `toml:"write_timeout"`
	IdleTimeout       Duration `toml:"idle_timeout"`
	MaxHeaderBytes    int      `toml:"max_header_bytes"`
	// MaxInFlight caps concurrent webhook requests; beyond it ingest answers 503.
	MaxInFlight int `toml:"max_in_flight"`
	// DrainDelay keeps the listener open, /readyz failing, this long after
	// a stop signal, before the graceful stop begins.
	DrainDelay Duration `toml:"drain_delay"`
	// PublicURL is this relay's base URL as WAMM reaches it
	// ("https://relay.example.com"); the channel check compares each
	// channel's hook with it plus the webhook path. "" = not compared.
	PublicURL string `toml:"public_url"`
	// MetricsListen moves /metrics to a listener of its own
	// ("127.0.0.1:9100"); the public one then answers 404 there.
	// "" serves it on Listen.
	MetricsListen string `toml:"metrics_listen"`
	// MetricsToken, when set, is the bearer token a scrape of /metrics
	// must send; "" leaves /metrics open.
	MetricsToken string `toml:"metrics_token"`
}

// WAMM is the [wamm] table: the WAMM.chat API used by the reconciler. An empty
// Token means there is nothing to poll; app then disables the reconciler.
type WAMM struct {
	APIURL  string   `toml:"api_url"`
	Token   string   `toml:"token"`
	Timeout Duration `toml:"timeout"`
	// Channels are further WAMM channels (one per WhatsApp number,
	// Telegram or MAX account) beside the default one this table
	// describes. Parse fills each one's unset keys from [wamm] and
	// [reconcile].
	Channels []Channel `toml:"channels"`
}

// Channel is one [[wamm.channels]] entry.
type Channel struct {
	// Name is unique, used in the webhook path ({webhook_path}/{name}),
	// event keys, metrics, logs and the admin API.
	Name    string   `toml:"name"`
	Token   string   `toml:"token"`
	APIURL  string   `toml:"api_url"`
	Timeout Duration `toml:"timeout"`
	// WebhookSecret guards this channel's webhook path; "" means
	// server.webhook_secret.
	WebhookSecret string           `toml:"webhook_secret"`
	Reconcile     ChannelReconcile `toml:"reconcile"`
}

// ChannelReconcile is a channel's [reconcile] override; a key the file does
// not set takes the value of [reconcile].
type ChannelReconcile struct {
	Enabled         bool     `toml:"enabled"`
	Interval        Duration `toml:"interval"`
	Grace           Duration `toml:"grace"`
	BackfillOnStart bool     `toml:"backfill_on_start"`
	BackoffMax      Duration `toml:"backoff_max"`
}

// EffectiveChannel is a channel as the relay runs it, the default one
// included.
type EffectiveChannel struct {
	Name          string
	Token         string
	APIURL        string
	Timeout       time.Duration
	WebhookSecret string
	Reconcile     Reconcile
}

// DefaultChannel names the channel of the [wamm] table itself.
const DefaultChannel = "default"

// Channels returns every channel the relay serves: the default one (from
// [wamm], [reconcile] and server.webhook_secret), then [[wamm.channels]] in
// file order.
func (c Config) Channels() []EffectiveChannel {
	out := []EffectiveChannel{{
		Name: DefaultChannel, Token: c.WAMM.Token, APIURL: c.WAMM.APIURL, Timeout: c.WAMM.Timeout.Duration,
		WebhookSecret: c.Server.WebhookSecret, Reconcile: c.Reconcile,
	}}
	for _, ch := range c.WAMM.Channels {
		secret := ch.WebhookSecret
		if secret == "" {
			secret = c.Server.WebhookSecret
		}
		out = append(out, EffectiveChannel{
			Name: ch.Name, Token: ch.Token, APIURL: ch.APIURL, Timeout: ch.Timeout.Duration, WebhookSecret: secret,
			Reconcile: Reconcile{
				Enabled: ch.Reconcile.Enabled, Interval: ch.Reconcile.Interval, Grace: ch.Reconcile.Grace,
				BackfillOnStart: ch.Reconcile.BackfillOnStart, BackoffMax: ch.Reconcile.BackoffMax,
				CheckEvery: c.Reconcile.CheckEvery,
			},
		})
	}
	return out
}

// Reconcile is the [reconcile] table.
type Reconcile struct {
	Enabled         bool     `toml:"enabled"`
	Interval        Duration `toml:"interval"`
	Grace           Duration `toml:"grace"`
	BackfillOnStart bool     `toml:"backfill_on_start"`
	BackoffMax      Duration `toml:"backoff_max"`
	// CheckEvery is how many passes apart the reconciler checks the channel
	// with channel_list (the first pass always checks).
	CheckEvery int `toml:"check_every"`
}

// Dedup is the [dedup] table.
type Dedup struct {
	LRUSize   int      `toml:"lru_size"`
	Retention Duration `toml:"retention"`
}

// Store drivers accepted in [store] driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Store is the [store] table.
type Store struct {
	Driver string `toml:"driver"`
	DSN    string `toml:"dsn"`
	// VacuumEvery is, on PostgreSQL, how many recorded outcomes an
	// instance lets pass between its VACUUMs of the deliveries table;
	// 0 leaves vacuuming to autovacuum. SQLite ignores it.
	VacuumEvery int `toml:"vacuum_every"`
}

// Delivery is the [delivery] table: defaults for every target.
type Delivery struct {
	Workers        int      `toml:"workers"`
	Timeout        Duration `toml:"timeout"`
	MaxAttempts    int      `toml:"max_attempts"`
	BackoffInitial Duration `toml:"backoff_initial"`
	BackoffMax     Duration `toml:"backoff_max"`

	// Extensions beyond the interface contract: defaults for the targets'
	// keys of the same names.

	// RateLimit caps each target's attempts per second on each instance;
	// 0 is no limit. RateBurst is the bucket size (0: the rate, rounded up).
	RateLimit float64 `toml:"rate_limit"`
	RateBurst int     `toml:"rate_burst"`
	// BreakerFailures consecutive failed attempts open a target's circuit
	// breaker for BreakerCooldown (doubling, up to 16x, while probes fail);
	// 0 disables the breaker.
	BreakerFailures int      `toml:"breaker_failures"`
	BreakerCooldown Duration `toml:"breaker_cooldown"`
	// DenyPrivateNetworks refuses connections to loopback, private
	// (RFC 1918, fc00::/7), link-local (169.254.0.0/16 with the cloud
	// metadata address, fe80::/10), unspecified and CGNAT (100.64.0.0/10)
	// addresses, checked on the address dialed after DNS resolution. A
	// refused attempt is dead at once. Off by default.
	DenyPrivateNetworks bool `toml:"deny_private_networks"`
}

// Log levels and formats accepted in [log].
const (
	LogDebug = "debug"
	LogInfo  = "info"
	LogWarn  = "warn"
	LogError = "error"

	FormatJSON = "json"
	FormatText = "text"
)

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Tracing is the [tracing] table: OpenTelemetry traces exported over
// OTLP/HTTP. Off by default; the standard OTEL_* variables the SDK reads
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...) apply when it is on.
type Tracing struct {
	Enabled bool `toml:"enabled"`
	// Endpoint is the collector's OTLP/HTTP base URL; /v1/traces is
	// appended. Empty leaves it to OTEL_EXPORTER_OTLP_ENDPOINT.
	Endpoint string `toml:"endpoint"`
	// SampleRatio is the share of events traced, from 0 to 1.
	SampleRatio float64 `toml:"sample_ratio"`
	ServiceName string  `toml:"service_name"`
	// Insecure sends plain HTTP; an http:// endpoint implies it.
	Insecure bool `toml:"insecure"`
	// Headers go with every export (e.g. a vendor's API key); masked.
	Headers map[string]string `toml:"headers"`
}

// Event kinds a target may subscribe to; they match event.Kind values.
const (
	EventMsg      = "msg"
	EventMsgState = "msg_state"
	EventRaw      = "raw"
)

// Target is one [[targets]] entry.
//
// Timeout and MaxAttempts of zero mean "use [delivery]". Parse resolves them,
// so a Config returned by Parse or Load always carries the effective values
// (and check-config prints them); for a Config built in code, use
// EffectiveTimeout and EffectiveMaxAttempts.
type Target struct {
	Name    string            `toml:"name"`
	URL     string            `toml:"url"`
	Headers map[string]string `toml:"headers"`
	// SigningSecret is a Standard Webhooks secret, "whsec_" + base64.
	SigningSecret string `toml:"signing_secret"`
	// Events lists the event kinds this target receives; empty means all.
	Events []string `toml:"events"`
	// Channels lists the WAMM channels this target receives; empty means all.
	Channels    []string `toml:"channels"`
	Timeout     Duration `toml:"timeout"`
	MaxAttempts int      `toml:"max_attempts"`
	// CAFile is a PEM file of extra CAs trusted for this target, on top of the
	// system roots; "" means the system roots only. A relative path is
	// relative to the working directory, like store.dsn.
	CAFile string `toml:"ca_file"`

	// RateLimit, RateBurst, BreakerFailures and BreakerCooldown override
	// [delivery]'s keys of the same names; Parse fills the ones the file
	// leaves out, so an explicit 0 (no limit, no breaker) stays 0.
	RateLimit       float64  `toml:"rate_limit"`
	RateBurst       int      `toml:"rate_burst"`
	BreakerFailures int      `toml:"breaker_failures"`
	BreakerCooldown Duration `toml:"breaker_cooldown"`
	// DenyPrivateNetworks overrides [delivery]'s; Parse fills it when the
	// file leaves it out, so an explicit false stays false.
	DenyPrivateNetworks bool `toml:"deny_private_networks"`
}

// EffectiveTimeout is the target's timeout, or d.Timeout when it has none.
func (t Target) EffectiveTimeout(d Delivery) time.Duration {
	if t.Timeout.Duration > 0 {
		return t.Timeout.Duration
	}
	return d.Timeout.Duration
}

// EffectiveMaxAttempts is the target's max_attempts, or d.MaxAttempts when it
// has none.
func (t Target) EffectiveMaxAttempts(d Delivery) int {
	if t.MaxAttempts > 0 {
		return t.MaxAttempts
	}
	return d.MaxAttempts
}

// Receives reports whether the target subscribes to events of kind k.
func (t Target) Receives(kind string) bool {
	if len(t.Events) == 0 {
		return true
	}
	for _, e := range t.Events {
		if e == kind {
			return true
		}
	}
	return false
}

// Default returns the configuration used for every key the file leaves out.
// It has no targets and no WAMM token.
func Default() Config {
	return Config{
		Server: Server{
			Listen:            ":8080",
			WebhookPath:       "/webhook",
			MaxBodyBytes:      1 << 20,
			TrustedProxies:    []string{},
			ShutdownTimeout:   D(15 * time.Second),
			ReadHeaderTimeout: D(5 * time.Second),
			ReadTimeout:       D(15 * time.Second),
			WriteTimeout:      D(15 * time.Second),
			IdleTimeout:       D(60 * time.Second),
			MaxHeaderBytes:    16 << 10,
			MaxInFlight:       1024,
		},
		WAMM: WAMM{
			APIURL:  "https://wamm.chat/api2",
			Timeout: D(10 * time.Second),
		},
		Reconcile: Reconcile{
			Enabled:    true,
			Interval:   D(30 * time.Second),
			Grace:      D(20 * time.Second),
			BackoffMax: D(5 * time.Minute),
			CheckEvery: 10,
		},
		Dedup: Dedup{
			LRUSize:   100000,
			Retention: D(2160 * time.Hour),
		},
		Store: Store{
			Driver:      DriverSQLite,
			DSN:         "data/relay.db",
			VacuumEvery: 20000,
		},
		Delivery: Delivery{
			Workers:        16,
			Timeout:        D(10 * time.Second),
			MaxAttempts:    25,
			BackoffInitial: D(time.Second),
			BackoffMax:     D(2 * time.Hour),
			// A target that failed this often in a row is down, not flaky:
			// stop draining its queue into it until a probe succeeds.
			BreakerFailures: 20,
			BreakerCooldown: D(30 * time.Second),
		},
		Log: Log{
			Level:  LogInfo,
			Format: FormatJSON,
		},
		Tracing: Tracing{
			SampleRatio: 1,
			ServiceName: "wamm-relay",
		},
	}
}

// Duration is a time.Duration written in TOML as a Go duration string
// ("1m30s").
type Duration struct {
	time.Duration

	// expr holds a value that still contains ${NAME} references: decoding
	// happens before expansion (so an environment value cannot break the TOML
	// syntax), which means such a value can only be parsed once Parse has
	// expanded it.
	expr string
}

// D wraps d as a Duration.
func D(d time.Duration) Duration { return Duration{Duration: d} }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	s := string(text)
	if hasRef(s) {
		*d = Duration{expr: s}
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (want a Go duration such as \"30s\" or \"2h\")", s)
	}
	*d = Duration{Duration: v}
	return nil
}

// MarshalText writes the duration as a short Go duration string: "2h", not
// "2h0m0s".
func (d Duration) MarshalText() ([]byte, error) {
	if d.expr != "" {
		return []byte(d.expr), nil
	}
	return []byte(d.String()), nil
}

// String is the short Go duration string MarshalText writes.
func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") { // "5m0s" -> "5m", "2h0m0s" -> "2h0m"
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") { // "2h0m" -> "2h"
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
