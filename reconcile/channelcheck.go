package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/wamm"
)

// DefaultCheckEvery is how many passes a reconciler lets go by between
// channel checks when Options.CheckEvery is zero.
const DefaultCheckEvery = 10

// Values of the wamm_relay_channel_checks_total result label.
const (
	CheckOK            = "ok"
	CheckNotAuthorized = "not_authorized" // state is not "authorized" (takes precedence over a hook mismatch)
	CheckHookMismatch  = "hook_mismatch"
	CheckNotFound      = "not_found" // channel_list listed no channel for the token
	CheckError         = "error"     // channel_list failed
)

// redacted stands in for whatever part of a hook URL may hold a secret.
const redacted = "***"

// ChannelLister lists WAMM channels; *wamm.Client satisfies it.
type ChannelLister interface {
	Channels(ctx context.Context, filter string) ([]wamm.Channel, error)
}

// ChannelStatus is the result of one channel check, ready to be returned by
// the admin API as JSON. Hook URLs in it are redacted (see
// ChannelCheckOptions.PublicPath).
type ChannelStatus struct {
	// Name is the channel's name (ChannelCheckOptions.Channel).
	Name string `json:"name"`
	// CheckedAt is when the check ran, UTC; zero (omitted) before the first.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// OK is true when channel_list answered, listed the channel, the
	// channel is authorized and its hook matches (or is not compared).
	OK bool `json:"ok"`
	// Authorized is true when the channel's state is "authorized".
	Authorized bool   `json:"authorized"`
	State      string `json:"state,omitempty"`
	PayState   string `json:"pay_state,omitempty"`
	APIID      string `json:"api_id,omitempty"`
	APITip     string `json:"api_tip,omitempty"`
	APITag     string `json:"api_tag,omitempty"`
	Phone      string `json:"phone,omitempty"`
	// Hook is the webhook URL WAMM has for the channel, redacted.
	Hook string `json:"hook,omitempty"`
	// ExpectedHook is the URL it should be, redacted; empty when hooks are
	// not compared.
	ExpectedHook string `json:"expected_hook,omitempty"`
	// HookMatches is null when hooks are not compared (no public URL).
	HookMatches *bool `json:"hook_matches"`
	// Warning says what is wrong with the channel, when something is.
	Warning string `json:"warning,omitempty"`
	// Error is why channel_list failed (the token is already redacted).
	Error string `json:"error,omitempty"`
}

// ChannelCheckOptions configure a ChannelChecker.
type ChannelCheckOptions struct {
	// Lister calls channel_list with the channel's token. Required.
	Lister ChannelLister
	// Channel names the channel in logs, metrics (label "channel") and the
	// status. Required.
	Channel string
	// WebhookURL is the full URL WAMM should have as the channel's hook (see
	// WebhookURL); "" means the hook is not compared.
	WebhookURL string
	// PublicPath is the part of a hook's path shown as is in logs and in the
	// status (see WebhookPublicPath): every path segment after it, every
	// query value, any user info and fragment are shown as "***". Of a hook
	// whose path does not start with it (or when it is ""), every path
	// segment is shown as "***": only scheme and host are shown as they are.
	PublicPath string
	// Logger receives one line per change of condition. Required.
	Logger logrus.FieldLogger
	// Registerer registers the channel metrics; several checkers may share
	// one (the metric vectors are registered once). nil does not register.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o *ChannelCheckOptions) validate() error {
	switch {
	case o.Lister == nil:
		return errors.New("missing Lister")
	case o.Channel == "":
		return errors.New("missing Channel")
	case o.Logger == nil:
		return errors.New("missing Logger")
	}
	if o.WebhookURL != "" {
		if _, err := parseHook(o.WebhookURL); err != nil {
			return fmt.Errorf("invalid WebhookURL %s: %w", redactHook(o.WebhookURL, o.PublicPath), err)
		}
	}
	return nil
}

// ChannelChecker asks channel_list (filter "one") whether the channel is
// authorized and whether its hook points at this relay. Problems are
// reported (status, metrics, one log line per change), never returned. Its
// methods are safe for concurrent use; checks run one at a time.
type ChannelChecker struct {
	opts    ChannelCheckOptions
	log     logrus.FieldLogger
	metrics *ChannelMetrics
	want    *url.URL // nil when hooks are not compared
	wantRed string   // WebhookURL, redacted

	checkMu sync.Mutex // one check at a time; held across the API call

	mu        sync.Mutex
	status    ChannelStatus
	condition string // what the last check found, to log changes only
}

// NewChannelChecker returns a ChannelChecker for opts, or an error naming the
// bad field.
func NewChannelChecker(opts ChannelCheckOptions) (*ChannelChecker, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("channel check options: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := NewChannelMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register channel metrics: %w", err)
	}
	c := &ChannelChecker{
		opts:    opts,
		log:     opts.Logger.WithField("channel", opts.Channel),
		metrics: m,
		status:  ChannelStatus{Name: opts.Channel},
	}
	if opts.WebhookURL != "" {
		c.want, _ = parseHook(opts.WebhookURL) // validated
		c.wantRed = redactHook(opts.WebhookURL, opts.PublicPath)
		c.status.ExpectedHook = c.wantRed
	}
	return c, nil
}

// Status returns the result of the last check (before the first: the name,
// OK false and a zero CheckedAt).
func (c *ChannelChecker) Status() ChannelStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status.clone()
}

// Check calls channel_list, records and returns the result. A failure is
// part of the result, never a panic or an error. When ctx ends during the
// call (shutdown), nothing is recorded and the previous status is returned.
func (c *ChannelChecker) Check(ctx context.Context) ChannelStatus {
	c.checkMu.Lock()
	defer c.checkMu.Unlock()
	chs, err := c.opts.Lister.Channels(ctx, wamm.ChannelsOne)
	if err != nil && ctx.Err() != nil {
		return c.Status()
	}
	st, result, reason := c.evaluate(chs, err)
	c.record(st, result)

	c.mu.Lock()
	prev := c.condition
	cond := result + "|" + reason + "|" + st.Warning
	c.condition = cond
	c.status = st
	c.mu.Unlock()
	if cond != prev {
		c.logChange(st, result, reason, prev == "")
	}
	return st.clone()
}

// evaluate turns what channel_list answered into a status, its result label
// and, for a failure, its short reason.
func (c *ChannelChecker) evaluate(chs []wamm.Channel, err error) (ChannelStatus, string, string) {
	st := ChannelStatus{
		Name:         c.opts.Channel,
		CheckedAt:    c.opts.Now().UTC(),
		ExpectedHook: c.wantRed,
	}
	if err != nil {
		st.Error = err.Error()
		return st, CheckError, wamm.Reason(err)
	}
	if c.want != nil {
		st.HookMatches = new(bool)
	}
	if len(chs) == 0 {
		st.Warning = "channel_list lists no channel for this token"
		return st, CheckNotFound, ""
	}
	// "one" should list one channel; should WAMM list more, the one whose
	// hook is ours is taken to be this channel.
	ch := chs[0]
	if c.want != nil {
		if i := slices.IndexFunc(chs, func(ch wamm.Channel) bool { return c.hookMatches(ch.Hook) }); i >= 0 {
			ch = chs[i]
		}
	}
	st.State, st.PayState, st.APIID = ch.State, ch.PayState, ch.APIID
	st.APITip, st.APITag, st.Phone = ch.APITip, ch.APITag, ch.Phone
	st.Hook = redactHook(ch.Hook, c.opts.PublicPath)
	st.Authorized = ch.State == wamm.ChannelAuthorized

	var warnings []string
	result := CheckOK
	if !st.Authorized {
		warnings = append(warnings, fmt.Sprintf("channel state is %q, not %q", ch.State, wamm.ChannelAuthorized))
		result = CheckNotAuthorized
	}
	if c.want != nil {
		*st.HookMatches = c.hookMatches(ch.Hook)
		if !*st.HookMatches {
			hook := st.Hook
			if hook == "" {
				hook = "(none)"
			}
			warnings = append(warnings, fmt.Sprintf("hook is %s, want %s", hook, st.ExpectedHook))
			if result == CheckOK {
				result = CheckHookMismatch
			}
		}
	}
	if len(chs) > 1 {
		warnings = append(warnings, fmt.Sprintf("channel_list listed %d channels for filter %q", len(chs), wamm.ChannelsOne))
	}
	st.Warning = strings.Join(warnings, "; ")
	st.OK = result == CheckOK
	return st, result, ""
}

func (c *ChannelChecker) hookMatches(hook string) bool {
	got, err := parseHook(hook)
	return err == nil && c.want != nil && got.String() == c.want.String()
}

// record updates the metrics. After a failed call, authorized and
// hook_matches keep their last known values: only ok and checks_total say
// the check failed.
func (c *ChannelChecker) record(st ChannelStatus, result string) {
	name := c.opts.Channel
	c.metrics.checks.WithLabelValues(name, result).Inc()
	c.metrics.ok.WithLabelValues(name).Set(boolGauge(st.OK))
	if result == CheckError {
		return
	}
	c.metrics.authorized.WithLabelValues(name).Set(boolGauge(st.Authorized))
	hook := -1.0
	if st.HookMatches != nil {
		hook = boolGauge(*st.HookMatches)
	}
	c.metrics.hookMatches.WithLabelValues(name).Set(hook)
}

func (c *ChannelChecker) logChange(st ChannelStatus, result, reason string, first bool) {
	l := c.log.WithField("result", result)
	switch {
	case result == CheckError:
		l.WithField("reason", reason).WithField("error", st.Error).
			Warn("channel check: channel_list failed; the channel's state and hook are unknown")
	case !st.OK:
		l.WithFields(logrus.Fields{"state": st.State, "hook": st.Hook, "expected_hook": st.ExpectedHook}).
			Warn("channel check: " + st.Warning)
	case first:
		l.WithFields(logrus.Fields{"state": st.State, "hook": st.Hook, "hook_compared": st.HookMatches != nil}).
			Info("channel check: channel is authorized")
	default:
		l.WithFields(logrus.Fields{"state": st.State, "hook": st.Hook}).
			Info("channel check: channel is fine again")
	}
}

func (s ChannelStatus) clone() ChannelStatus {
	if s.HookMatches != nil {
		v := *s.HookMatches
		s.HookMatches = &v
	}
	return s
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ChannelMetrics are the channel check metrics, one series per channel.
type ChannelMetrics struct {
	ok          *prometheus.GaugeVec
	authorized  *prometheus.GaugeVec
	hookMatches *prometheus.GaugeVec
	checks      *prometheus.CounterVec
}

// NewChannelMetrics builds the channel check metrics and registers them with
// reg (nil: not registered). When reg already holds them (another channel's
// checker registered them first), the registered vectors are used, so every
// checker of a relay may call it with the same registry.
func NewChannelMetrics(reg prometheus.Registerer) (*ChannelMetrics, error) {
	m := &ChannelMetrics{
		ok: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wamm_relay_channel_ok",
			Help: "1 when the last channel check found the channel authorized with the expected hook, else 0.",
		}, []string{"channel"}),
		authorized: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wamm_relay_channel_authorized",
			Help: "1 when channel_list last reported the channel authorized, else 0 (kept while channel_list fails).",
		}, []string{"channel"}),
		hookMatches: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wamm_relay_channel_hook_matches",
			Help: "1 when the channel's hook is this relay's webhook URL, 0 when not, -1 when not compared (no server.public_url).",
		}, []string{"channel"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wamm_relay_channel_checks_total",
			Help: "Channel checks by result (ok, not_authorized, hook_mismatch, not_found, error).",
		}, []string{"channel", "result"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	m.ok, errs = registerOnce(reg, m.ok, errs)
	m.authorized, errs = registerOnce(reg, m.authorized, errs)
	m.hookMatches, errs = registerOnce(reg, m.hookMatches, errs)
	m.checks, errs = registerOnce(reg, m.checks, errs)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// registerOnce registers c, or returns the collector already registered under
// its descriptor.
func registerOnce[C prometheus.Collector](reg prometheus.Registerer, c C, errs []error) (C, []error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, errs
		}
	}
	if err != nil {
		errs = append(errs, err)
	}
	return c, errs
}

// WebhookURL is the URL WAMM should post a channel's webhooks to:
// publicURL+webhookPath for the default channel (channel ""), and
// publicURL+webhookPath+"/"+channel for a named one, each followed by
// "/"+secret when the relay has a webhook secret. "" when publicURL is ""
// (hooks are then not compared).
func WebhookURL(publicURL, webhookPath, channel, secret string) string {
	if publicURL == "" {
		return ""
	}
	p := WebhookPublicPath(webhookPath, channel)
	if secret != "" {
		p = strings.TrimRight(p, "/") + "/" + url.PathEscape(secret)
	}
	return strings.TrimRight(publicURL, "/") + p
}

// WebhookPublicPath is the part of a channel's webhook path that holds no
// secret (ChannelCheckOptions.PublicPath): webhookPath, plus "/"+channel for
// a named channel.
func WebhookPublicPath(webhookPath, channel string) string {
	p := strings.Trim(webhookPath, "/")
	if channel != "" {
		if p != "" {
			p += "/"
		}
		p += url.PathEscape(channel)
	}
	return "/" + p
}

// parseHook parses a hook URL into a comparable form: scheme and host lower
// case, default port dropped, trailing slash, fragment and empty query
// dropped, and a lone secret query value moved into the path (the relay
// takes {path}?secret=S the same as {path}/S). Query parameters are sorted.
func parseHook(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, errors.New("not a URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("not an absolute http(s) URL")
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if port := u.Port(); port != "" && !(u.Scheme == "http" && port == "80" || u.Scheme == "https" && port == "443") {
		host += ":" + port
	}
	q := u.Query()
	path := strings.TrimRight(u.Path, "/")
	if s := q["secret"]; len(q) == 1 && len(s) == 1 && s[0] != "" && !strings.Contains(s[0], "/") {
		path += "/" + s[0]
		q = nil
	}
	out := &url.URL{Scheme: u.Scheme, User: u.User, Host: host, Path: path}
	if len(q) > 0 {
		out.RawQuery = q.Encode()
	}
	return out, nil
}

// redactHook returns hook for a log line or the admin API: scheme, host and
// the path up to publicPath as they are, every other path segment, every
// query value, user info and fragment as "***".
func redactHook(hook, publicPath string) string {
	if hook == "" {
		return ""
	}
	u, err := url.Parse(strings.TrimSpace(hook))
	if err != nil || u.Host == "" {
		return redacted
	}
	var b strings.Builder
	b.WriteString(u.Scheme + "://")
	if u.User != nil {
		b.WriteString(redacted + "@")
	}
	b.WriteString(u.Host)

	segs := strings.Split(strings.TrimPrefix(u.EscapedPath(), "/"), "/")
	if len(segs) == 1 && segs[0] == "" {
		segs = nil
	}
	// A path that is not under publicPath may be anyone's, secrets and all:
	// none of it is shown.
	keep := 0
	if pp := strings.Trim(publicPath, "/"); pp != "" {
		if pub := strings.Split(pp, "/"); len(segs) >= len(pub) && slices.Equal(segs[:len(pub)], pub) {
			keep = len(pub)
		}
	}
	for i, s := range segs {
		switch {
		case i < keep:
			b.WriteString("/" + s)
		case s == "":
			b.WriteString("/") // a trailing slash
		default:
			b.WriteString("/" + redacted)
		}
	}
	if u.RawQuery != "" {
		b.WriteByte('?')
		for i, kv := range strings.Split(u.RawQuery, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			k, _, _ := strings.Cut(kv, "=")
			b.WriteString(k + "=" + redacted)
		}
	}
	if u.Fragment != "" {
		b.WriteString("#" + redacted)
	}
	return b.String()
}

// checkChannel runs the channel check at the first pass this instance leads
// and every CheckEvery-th one after. Its result never fails the pass.
func (r *Reconciler) checkChannel(ctx context.Context) {
	if r.opts.Checker == nil {
		return
	}
	every := r.opts.CheckEvery
	if every <= 0 {
		every = DefaultCheckEvery
	}
	if r.checkPasses%every == 0 {
		r.opts.Checker.Check(ctx)
	}
	r.checkPasses++
}
