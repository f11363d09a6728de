package config

import (
	"encoding/base64"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	maxWorkers          = 1024
	maxMaxBodyBytes     = 1 << 30
	minAdminTokenLen    = 16
	minSigningSecretLen = 16 // decoded bytes; Standard Webhooks recommends 24 to 64
	signingSecretPrefix = "whsec_"
	masked              = "****"
)

var (
	// targetNameRe keeps names safe as Prometheus label values, log fields and
	// admin API path segments.
	targetNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	// webhookPathRe rejects characters gin would read as route parameters
	// (":", "*") and anything that needs escaping.
	webhookPathRe = regexp.MustCompile(`^[A-Za-z0-9/_.~-]+$`)
)

// reservedPaths are the relay's own endpoints; a webhook_path on one of them
// would shadow it or make gin refuse the route table at startup.
var reservedPaths = []string{"/healthz", "/readyz", "/metrics", "/api"}

// reservedHeaders are set by the relay on every request to a target; letting
// a target's headers override them would break signing, dedup or framing.
var reservedHeaders = []string{
	"Content-Type", "Content-Length", "Transfer-Encoding", "Host", "Connection",
	"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature",
	"X-Wamm-Relay-Source", "X-Wamm-Relay-Attempt", "X-Wamm-Channel",
}

var eventKinds = []string{EventMsg, EventMsgState, EventRaw}

// Validate checks every value and returns all problems found, each a
// *ValidationError naming its key, joined with errors.Join; nil when the
// configuration is usable. It does not touch the file system (Load checks
// target ca_file files).
func (c *Config) Validate() error {
	var p problems
	c.Server.validate(&p)
	c.WAMM.validate(&p)
	c.Reconcile.validate(&p)
	c.validateChannels(&p)
	c.Dedup.validate(&p)
	c.Store.validate(&p)
	c.Delivery.validate(&p)
	c.Log.validate(&p)
	c.Tracing.validate(&p)
	validateTargets(&p, c.Targets)
	c.validateTargetChannels(&p)
	return p.err()
}

func (s *Server) validate(p *problems) {
	validateListen(p, "server.listen", s.Listen)
	validateWebhookPath(p, "server.webhook_path", s.WebhookPath)
	if strings.ContainsFunc(s.WebhookSecret, isSpaceOrControl) {
		p.add("server.webhook_secret", masked, ErrInvalid, "must not contain spaces or control characters")
	} else if strings.ContainsAny(s.WebhookSecret, "/?#%") {
		// It travels as one URL path segment: these would split or escape it.
		p.add("server.webhook_secret", masked, ErrInvalid, "must not contain / ? # or %%")
	}
	if s.MaxBodyBytes <= 0 || s.MaxBodyBytes > maxMaxBodyBytes {
		p.add("server.max_body_bytes", strconv.FormatInt(s.MaxBodyBytes, 10), ErrOutOfRange, "must be between 1 and %d", maxMaxBodyBytes)
	}
	if s.AdminToken != "" {
		if len(s.AdminToken) < minAdminTokenLen {
			p.add("server.admin_token", masked, ErrInvalid, "must be at least %d characters (or empty to disable the admin API)", minAdminTokenLen)
		} else if strings.ContainsFunc(s.AdminToken, isSpaceOrControl) {
			p.add("server.admin_token", masked, ErrInvalid, "must not contain spaces or control characters")
		}
	}
	s.validateMetrics(p)
	for i, tp := range s.TrustedProxies {
		if _, err := netip.ParsePrefix(tp); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(tp); err == nil {
			continue
		}
		p.add(fmt.Sprintf("server.trusted_proxies[%d]", i), tp, ErrInvalid, "must be a CIDR (10.0.0.0/8) or an IP address")
	}
	positive(p, "server.shutdown_timeout", s.ShutdownTimeout)
	validDuration(p, "server.drain_delay", s.DrainDelay)
	if s.DrainDelay.Duration < 0 {
		p.add("server.drain_delay", s.DrainDelay.String(), ErrOutOfRange, "must not be negative")
	}
	positive(p, "server.read_header_timeout", s.ReadHeaderTimeout)
	positive(p, "server.read_timeout", s.ReadTimeout)
	positive(p, "server.write_timeout", s.WriteTimeout)
	positive(p, "server.idle_timeout", s.IdleTimeout)
	if s.MaxHeaderBytes <= 0 {
		p.add("server.max_header_bytes", strconv.Itoa(s.MaxHeaderBytes), ErrOutOfRange, "must be positive")
	}
	if s.MaxInFlight <= 0 {
		p.add("server.max_in_flight", strconv.Itoa(s.MaxInFlight), ErrOutOfRange, "must be positive")
	}
	validatePublicURL(p, "server.public_url", s.PublicURL)
}

// validatePublicURL accepts "" or an absolute http(s) base URL, to which the
// webhook path is appended: a query or fragment would end up in the middle.
func validatePublicURL(p *problems, key, v string) {
	if v == "" {
		return
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		p.add(key, maskURL(v), ErrInvalid, "is not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		p.add(key, maskURL(v), ErrInvalid, "must be an absolute http:// or https:// URL, such as \"https://relay.example.com\"")
	case u.Host == "" || u.Hostname() == "":
		p.add(key, maskURL(v), ErrInvalid, "has no host")
	case u.User != nil:
		p.add(key, maskURL(v), ErrInvalid, "must not contain user info")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(v, "#"):
		p.add(key, maskURL(v), ErrInvalid, "must not have a query or fragment (the webhook path is appended to it)")
	}
}

// validateMetrics checks the optional listener and token of /metrics.
func (s *Server) validateMetrics(p *problems) {
	if s.MetricsListen != "" {
		validateListen(p, "server.metrics_listen", s.MetricsListen)
		if sameListener(s.MetricsListen, s.Listen) {
			p.add("server.metrics_listen", s.MetricsListen, ErrInvalid, "must differ from server.listen (%s)", s.Listen)
		}
	}
	if s.MetricsToken != "" {
		if len(s.MetricsToken) < minAdminTokenLen {
			p.add("server.metrics_token", masked, ErrInvalid, "must be at least %d characters (or empty to leave /metrics open)", minAdminTokenLen)
		} else if strings.ContainsFunc(s.MetricsToken, isSpaceOrControl) {
			p.add("server.metrics_token", masked, ErrInvalid, "must not contain spaces or control characters")
		}
	}
}

// sameListener reports whether two host:port addresses would collide: the
// same fixed port on the same host, or on a wildcard host, which takes the
// port on every address. Port 0 picks a free port and never collides.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return a == b
	}
	if pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return strings.EqualFold(ha, hb) || wildcard(ha) || wildcard(hb)
}

func validateListen(p *problems, key, v string) {
	if v == "" {
		p.add(key, v, ErrRequired, "")
		return
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		p.add(key, v, ErrInvalid, "must be host:port, such as \":8080\" or \"127.0.0.1:8080\"")
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.add(key, v, ErrInvalid, "port must be a number from 0 to 65535")
	}
}

func validateWebhookPath(p *problems, key, v string) {
	switch {
	case v == "":
		p.add(key, v, ErrRequired, "")
	case !strings.HasPrefix(v, "/"):
		p.add(key, v, ErrInvalid, "must start with \"/\"")
	case v == "/":
		p.add(key, v, ErrInvalid, "must not be the root path")
	case !webhookPathRe.MatchString(v):
		p.add(key, v, ErrInvalid, "may contain only letters, digits and / _ . ~ -")
	case path.Clean(v) != v:
		p.add(key, v, ErrInvalid, "must be a clean path (no trailing slash, \"//\", \".\" or \"..\"), such as %q", path.Clean(v))
	default:
		for _, r := range reservedPaths {
			if v == r || strings.HasPrefix(v, r+"/") {
				p.add(key, v, ErrInvalid, "collides with the relay's own %s endpoint", r)
				return
			}
		}
	}
}

func (w *WAMM) validate(p *problems) {
	validateHTTPURL(p, "wamm.api_url", w.APIURL)
	if strings.ContainsFunc(w.Token, isSpaceOrControl) || strings.ContainsAny(w.Token, "/?#") {
		// The token becomes a path segment of every API URL.
		p.add("wamm.token", masked, ErrInvalid, "must not contain spaces, control characters, \"/\", \"?\" or \"#\"")
	}
	positive(p, "wamm.timeout", w.Timeout)
}

func (r *Reconcile) validate(p *problems) {
	validDuration(p, "reconcile.interval", r.Interval)
	validDuration(p, "reconcile.grace", r.Grace)
	validDuration(p, "reconcile.backoff_max", r.BackoffMax)
	if r.Interval.Duration < time.Second {
		p.add("reconcile.interval", r.Interval.String(), ErrOutOfRange, "must be at least 1s")
	}
	if r.Grace.Duration < 0 {
		p.add("reconcile.grace", r.Grace.String(), ErrOutOfRange, "must not be negative")
	}
	if r.BackoffMax.Duration < r.Interval.Duration {
		p.add("reconcile.backoff_max", r.BackoffMax.String(), ErrOutOfRange, "must be at least reconcile.interval (%s)", r.Interval)
	}
	if r.CheckEvery < 1 {
		p.add("reconcile.check_every", strconv.Itoa(r.CheckEvery), ErrOutOfRange, "must be at least 1")
	}
}

// channelNameRe is what a channel name may hold: it is a URL path segment,
// a metric label value and a key prefix.
var channelNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func (c *Config) validateChannels(p *problems) {
	names := map[string]int{}
	for i, ch := range c.WAMM.Channels {
		key := func(field string) string { return fmt.Sprintf("wamm.channels[%d].%s", i, field) }
		switch lower := strings.ToLower(ch.Name); {
		case ch.Name == "":
			p.add(key("name"), "", ErrRequired, "")
		case !channelNameRe.MatchString(ch.Name):
			p.add(key("name"), ch.Name, ErrInvalid, "must be 1 to 64 of A-Z a-z 0-9 _ . -")
		case lower == DefaultChannel:
			p.add(key("name"), ch.Name, ErrInvalid, "is the channel of the [wamm] table itself; configure it there")
		case lower == "msg" || lower == "state" || lower == "raw":
			p.add(key("name"), ch.Name, ErrInvalid, "is reserved (it would read as an event key's kind)")
		case ch.Name == c.Server.WebhookSecret:
			p.add(key("name"), ch.Name, ErrInvalid, "must differ from server.webhook_secret (both are path segments after webhook_path)")
		default:
			if j, dup := names[lower]; dup {
				p.add(key("name"), ch.Name, ErrDuplicate, "wamm.channels[%d] has the same name (names are compared case-insensitively)", j)
			} else {
				names[lower] = i
			}
		}
		validateHTTPURL(p, key("api_url"), ch.APIURL)
		if strings.ContainsFunc(ch.Token, isSpaceOrControl) || strings.ContainsAny(ch.Token, "/?#") {
			p.add(key("token"), masked, ErrInvalid, "must not contain spaces, control characters, \"/\", \"?\" or \"#\"")
		}
		if strings.ContainsFunc(ch.WebhookSecret, isSpaceOrControl) || strings.ContainsAny(ch.WebhookSecret, "/?#%") {
			p.add(key("webhook_secret"), masked, ErrInvalid, "must not contain spaces, control characters, / ? # or %%")
		}
		positive(p, key("timeout"), ch.Timeout)
		r := ch.Reconcile
		validDuration(p, key("reconcile.interval"), r.Interval)
		validDuration(p, key("reconcile.grace"), r.Grace)
		validDuration(p, key("reconcile.backoff_max"), r.BackoffMax)
		if r.Interval.Duration < time.Second {
			p.add(key("reconcile.interval"), r.Interval.String(), ErrOutOfRange, "must be at least 1s")
		}
		if r.Grace.Duration < 0 {
			p.add(key("reconcile.grace"), r.Grace.String(), ErrOutOfRange, "must not be negative")
		}
		if r.BackoffMax.Duration < r.Interval.Duration {
			p.add(key("reconcile.backoff_max"), r.BackoffMax.String(), ErrOutOfRange, "must be at least the channel's reconcile.interval (%s)", r.Interval)
		}
	}
}

// validateTargetChannels checks that every channel a target names exists.
func (c *Config) validateTargetChannels(p *problems) {
	known := map[string]bool{DefaultChannel: true}
	for _, ch := range c.WAMM.Channels {
		known[ch.Name] = true
	}
	for i, t := range c.Targets {
		for j, name := range t.Channels {
			if !known[name] {
				p.add(fmt.Sprintf("targets[%d].channels[%d]", i, j), name, ErrInvalid, "names no channel (\"default\" or a [[wamm.channels]] name)")
			}
		}
	}
}

func (d *Dedup) validate(p *problems) {
	if d.LRUSize <= 0 {
		p.add("dedup.lru_size", strconv.Itoa(d.LRUSize), ErrOutOfRange, "must be positive")
	}
	positive(p, "dedup.retention", d.Retention)
}

func (s *Store) validate(p *problems) {
	if s.VacuumEvery < 0 {
		p.add("store.vacuum_every", strconv.Itoa(s.VacuumEvery), ErrOutOfRange, "must be 0 (autovacuum only) or positive")
	}
	switch s.Driver {
	case DriverSQLite, DriverPostgres:
	case "":
		p.add("store.driver", "", ErrRequired, "")
	default:
		p.add("store.driver", s.Driver, ErrInvalid, "must be %q or %q", DriverSQLite, DriverPostgres)
	}
	if strings.TrimSpace(s.DSN) == "" {
		p.add("store.dsn", "", ErrRequired, "")
		return
	}
	if s.Driver != DriverPostgres {
		return
	}
	if isPostgresURL(s.DSN) {
		// Host and database may both be empty (a Unix socket, the user's
		// database), so the URL only has to parse.
		if _, err := url.Parse(s.DSN); err != nil {
			p.add("store.dsn", masked, ErrInvalid, "is not a valid postgres URL")
		}
		return
	}
	if _, err := parseKeyValueDSN(s.DSN); err != nil {
		p.add("store.dsn", masked, ErrInvalid, "must be a postgres URL (postgres://...) or key=value pairs (host=... dbname=...): %v", err)
	}
}

func (d *Delivery) validate(p *problems) {
	if d.Workers < 1 || d.Workers > maxWorkers {
		p.add("delivery.workers", strconv.Itoa(d.Workers), ErrOutOfRange, "must be between 1 and %d", maxWorkers)
	}
	positive(p, "delivery.timeout", d.Timeout)
	if d.MaxAttempts < 1 {
		p.add("delivery.max_attempts", strconv.Itoa(d.MaxAttempts), ErrOutOfRange, "must be at least 1")
	}
	positive(p, "delivery.backoff_initial", d.BackoffInitial)
	validDuration(p, "delivery.backoff_max", d.BackoffMax)
	if d.BackoffMax.Duration < d.BackoffInitial.Duration {
		p.add("delivery.backoff_max", d.BackoffMax.String(), ErrOutOfRange, "must be at least delivery.backoff_initial (%s)", d.BackoffInitial)
	}
	validateGate(p, "delivery.", d.RateLimit, d.RateBurst, d.BreakerFailures, d.BreakerCooldown)
}

// validateGate checks the rate limit and breaker keys of [delivery] or of
// one target; prefix is the key's table ("delivery." or "targets[2].").
func validateGate(p *problems, prefix string, rateLimit float64, burst, failures int, cooldown Duration) {
	if rateLimit < 0 || math.IsNaN(rateLimit) || math.IsInf(rateLimit, 0) {
		p.add(prefix+"rate_limit", strconv.FormatFloat(rateLimit, 'g', -1, 64), ErrOutOfRange, "must be a finite number of requests per second, 0 for no limit")
	}
	if burst < 0 {
		p.add(prefix+"rate_burst", strconv.Itoa(burst), ErrOutOfRange, "must not be negative (0 uses the rate, rounded up)")
	}
	if failures < 0 {
		p.add(prefix+"breaker_failures", strconv.Itoa(failures), ErrOutOfRange, "must not be negative (0 disables the breaker)")
	}
	if validDuration(p, prefix+"breaker_cooldown", cooldown) && failures > 0 && cooldown.Duration <= 0 {
		p.add(prefix+"breaker_cooldown", cooldown.String(), ErrOutOfRange, "must be positive while breaker_failures is set")
	}
}

func (l *Log) validate(p *problems) {
	switch l.Level {
	case LogDebug, LogInfo, LogWarn, LogError:
	default:
		p.add("log.level", l.Level, ErrInvalid, "must be one of debug, info, warn, error")
	}
	switch l.Format {
	case FormatJSON, FormatText:
	default:
		p.add("log.format", l.Format, ErrInvalid, "must be json or text")
	}
}

func validateTargets(p *problems, targets []Target) {
	names := make(map[string]int, len(targets))
	for i, t := range targets {
		key := func(field string) string { return fmt.Sprintf("targets[%d].%s", i, field) }

		switch {
		case t.Name == "":
			p.add(key("name"), "", ErrRequired, "")
		case !targetNameRe.MatchString(t.Name):
			p.add(key("name"), t.Name, ErrInvalid, "must be 1 to 64 of A-Z a-z 0-9 _ . -")
		default:
			lower := strings.ToLower(t.Name)
			if j, dup := names[lower]; dup {
				p.add(key("name"), t.Name, ErrDuplicate, "targets[%d] has the same name (names are compared case-insensitively)", j)
			} else {
				names[lower] = i
			}
		}

		validateHTTPURL(p, key("url"), t.URL)

		for _, name := range sortedKeys(t.Headers) {
			hkey := key("headers." + tomlKeyPiece(name))
			switch {
			case !isHTTPToken(name):
				p.add(hkey, "", ErrInvalid, "is not a valid HTTP header name")
			case isReservedHeader(name):
				p.add(hkey, "", ErrInvalid, "is set by the relay and cannot be overridden")
			case strings.ContainsFunc(t.Headers[name], isHeaderValueControl):
				p.add(hkey, masked, ErrInvalid, "value must not contain control characters")
			}
		}

		if t.SigningSecret != "" {
			validateSigningSecret(p, key("signing_secret"), t.SigningSecret)
		}

		seen := make(map[string]bool, len(t.Events))
		for j, e := range t.Events {
			ekey := fmt.Sprintf("targets[%d].events[%d]", i, j)
			switch {
			case !slices.Contains(eventKinds, e):
				p.add(ekey, e, ErrInvalid, "must be one of msg, msg_state, raw")
			case seen[e]:
				p.add(ekey, e, ErrDuplicate, "is listed twice")
			}
			seen[e] = true
		}

		validDuration(p, key("timeout"), t.Timeout)
		if t.Timeout.Duration < 0 {
			p.add(key("timeout"), t.Timeout.String(), ErrOutOfRange, "must not be negative (0 uses delivery.timeout)")
		}
		if t.MaxAttempts < 0 {
			p.add(key("max_attempts"), strconv.Itoa(t.MaxAttempts), ErrOutOfRange, "must not be negative (0 uses delivery.max_attempts)")
		}
		validateGate(p, fmt.Sprintf("targets[%d].", i), t.RateLimit, t.RateBurst, t.BreakerFailures, t.BreakerCooldown)
	}
}

func validateSigningSecret(p *problems, key, secret string) {
	raw, ok := strings.CutPrefix(secret, signingSecretPrefix)
	if !ok {
		p.add(key, masked, ErrInvalid, "must start with %q (a Standard Webhooks secret)", signingSecretPrefix)
		return
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		p.add(key, masked, ErrInvalid, "must be %q followed by standard base64", signingSecretPrefix)
		return
	}
	if len(b) < minSigningSecretLen {
		p.add(key, masked, ErrInvalid, "must decode to at least %d bytes (24 to 64 recommended), got %d", minSigningSecretLen, len(b))
	}
}

func validateHTTPURL(p *problems, key, v string) {
	if v == "" {
		p.add(key, "", ErrRequired, "")
		return
	}
	u, err := url.Parse(v)
	if err != nil {
		p.add(key, maskURL(v), ErrInvalid, "is not a valid URL")
		return
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		p.add(key, maskURL(v), ErrInvalid, "must be an absolute http:// or https:// URL")
		return
	}
	if u.Host == "" || u.Hostname() == "" {
		p.add(key, maskURL(v), ErrInvalid, "has no host")
	}
}

// validDuration reports a duration whose ${NAME} reference was never expanded
// (a Duration decoded outside Parse).
func validDuration(p *problems, key string, d Duration) bool {
	if d.expr != "" {
		p.add(key, d.expr, ErrInvalid, "contains an unexpanded ${NAME} reference")
		return false
	}
	return true
}

func positive(p *problems, key string, d Duration) {
	if validDuration(p, key, d) && d.Duration <= 0 {
		p.add(key, d.String(), ErrOutOfRange, "must be positive")
	}
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// isHeaderValueControl reports characters net/http refuses in a header value.
func isHeaderValueControl(r rune) bool {
	return (r < ' ' && r != '\t') || r == 0x7f
}

// isHTTPToken reports whether s is an RFC 9110 token, the syntax of a header
// name.
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}

func isReservedHeader(name string) bool {
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

func (t *Tracing) validate(p *problems) {
	if t.SampleRatio < 0 || t.SampleRatio > 1 || t.SampleRatio != t.SampleRatio {
		p.add("tracing.sample_ratio", strconv.FormatFloat(t.SampleRatio, 'g', -1, 64), ErrOutOfRange, "must be between 0 and 1")
	}
	if strings.TrimSpace(t.ServiceName) == "" {
		p.add("tracing.service_name", "", ErrRequired, "")
	}
	if t.Endpoint != "" {
		before := len(p.errs)
		validateHTTPURL(p, "tracing.endpoint", t.Endpoint)
		if len(p.errs) == before && t.Insecure && strings.HasPrefix(strings.ToLower(t.Endpoint), "https://") {
			p.add("tracing.insecure", "true", ErrInvalid, "contradicts the https:// tracing.endpoint")
		}
	}
	for _, name := range sortedKeys(t.Headers) {
		key := "tracing.headers." + tomlKeyPiece(name)
		if !isHTTPToken(name) {
			p.add(key, "", ErrInvalid, "is not a valid HTTP header name")
		}
		if strings.ContainsFunc(t.Headers[name], isHeaderValueControl) {
			p.add(key, masked, ErrInvalid, "must not contain control characters")
		}
	}
}
