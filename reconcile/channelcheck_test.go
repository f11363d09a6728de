package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/wamm"
	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

const (
	chanToken  = "tok-SECRET-123"
	hookSecret = "hooksecret42"
	publicURL  = "https://relay.example.com"
)

// ourHook is what WAMM should have for the channel "sales".
var ourHook = WebhookURL(publicURL, "/webhook", "sales", hookSecret)

// channelFixture is a wammfake account behind httptest, a real wamm.Client
// for it, and a checker for the channel "sales".
type channelFixture struct {
	acct  *wammfake.Account
	srv   *httptest.Server
	reg   *prometheus.Registry
	logs  *logtest.Hook
	check *ChannelChecker
}

func newChannelFixture(t *testing.T, mod func(*ChannelCheckOptions)) *channelFixture {
	t.Helper()
	acct := wammfake.New(wammfake.Options{Token: chanToken, WebhookURL: ourHook})
	srv := httptest.NewServer(acct.Handler())
	t.Cleanup(srv.Close)
	client, err := wamm.NewClient(wamm.ClientOptions{BaseURL: srv.URL + "/api2", Token: chanToken, Timeout: 5 * time.Second})
	require.NoError(t, err)
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	f := &channelFixture{acct: acct, srv: srv, reg: prometheus.NewPedanticRegistry(), logs: hook}
	opts := ChannelCheckOptions{
		Lister:     client,
		Channel:    "sales",
		WebhookURL: ourHook,
		PublicPath: WebhookPublicPath("/webhook", "sales"),
		Logger:     logger,
		Registerer: f.reg,
		Now:        func() time.Time { return t0 },
	}
	if mod != nil {
		mod(&opts)
	}
	f.check, err = NewChannelChecker(opts)
	require.NoError(t, err)
	return f
}

// metric returns the value of the series name{labels}, and whether it exists.
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func ptr(b bool) *bool { return &b }

// requireNoSecrets fails if a token or hook secret shows anywhere in s.
func requireNoSecrets(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{chanToken, hookSecret, "OTHER-secret", "s3cret-pw"} {
		require.NotContains(t, s, secret)
	}
}

func allLogText(hook *logtest.Hook) string {
	var b strings.Builder
	for _, e := range hook.AllEntries() {
		s, _ := e.String()
		b.WriteString(s)
	}
	return b.String()
}

func TestChannelCheck(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*ChannelCheckOptions)
		setup   func(f *channelFixture)
		result  string
		ok      bool
		auth    bool
		matches *bool // nil: not compared
		hook    string
		warning string // substring; "" means none
		errText string // substring of Error; "" means none
	}{
		{name: "authorized, hook is ours", result: CheckOK, ok: true, auth: true, matches: ptr(true),
			hook: "https://relay.example.com/webhook/sales/***"},
		{name: "case of scheme and host, default port, trailing slash don't matter",
			setup: func(f *channelFixture) {
				f.acct.SetChannel(wammfake.Channel{Hook: "HTTPS://Relay.Example.COM:443/webhook/sales/" + hookSecret + "/"})
			},
			result: CheckOK, ok: true, auth: true, matches: ptr(true), hook: "https://Relay.Example.COM:443/webhook/sales/***/"},
		{name: "the secret as a query value is the same hook",
			setup: func(f *channelFixture) {
				f.acct.SetChannel(wammfake.Channel{Hook: "https://relay.example.com/webhook/sales?secret=" + hookSecret})
			},
			result: CheckOK, ok: true, auth: true, matches: ptr(true), hook: "https://relay.example.com/webhook/sales?secret=***"},
		{name: "another secret is another hook",
			setup: func(f *channelFixture) {
				f.acct.SetChannel(wammfake.Channel{Hook: "https://relay.example.com/webhook/sales/OTHER-secret"})
			},
			result: CheckHookMismatch, auth: true, matches: ptr(false), hook: "https://relay.example.com/webhook/sales/***",
			warning: "hook is https://relay.example.com/webhook/sales/***, want https://relay.example.com/webhook/sales/***"},
		{name: "the path's case matters",
			setup:  func(f *channelFixture) { f.acct.SetChannel(wammfake.Channel{Hook: strings.ToUpper(ourHook)}) },
			result: CheckHookMismatch, auth: true, matches: ptr(false), hook: "https://RELAY.EXAMPLE.COM/***/***/***",
			warning: "hook is https://RELAY.EXAMPLE.COM/***/***/***, want"},
		{name: "another host, secrets in the path and user info hidden",
			setup: func(f *channelFixture) {
				f.acct.SetChannel(wammfake.Channel{Hook: "https://user:s3cret-pw@other.example.com/webhook/sales/" + hookSecret + "?k=OTHER-secret"})
			},
			result: CheckHookMismatch, auth: true, matches: ptr(false), hook: "https://***@other.example.com/webhook/sales/***?k=***",
			warning: "hook is https://***@other.example.com/webhook/sales/***?k=***"},
		{name: "a foreign path is hidden entirely",
			setup: func(f *channelFixture) {
				f.acct.SetChannel(wammfake.Channel{Hook: "https://hooks.example.net/OTHER-secret/x"})
			},
			result: CheckHookMismatch, auth: true, matches: ptr(false), hook: "https://hooks.example.net/***/***",
			warning: "hook is https://hooks.example.net/***/***, want"},
		{name: "no hook set",
			setup:  func(f *channelFixture) { f.acct.SetWebhookURL("") },
			result: CheckHookMismatch, auth: true, matches: ptr(false), hook: "", warning: "hook is (none)"},
		{name: "not authorized",
			setup:  func(f *channelFixture) { f.acct.SetChannelState(wamm.ChannelNotAuthorized) },
			result: CheckNotAuthorized, matches: ptr(true), hook: "https://relay.example.com/webhook/sales/***",
			warning: `channel state is "notAuthorized", not "authorized"`},
		{name: "blocked with a wrong hook: not authorized first, both warned",
			setup: func(f *channelFixture) {
				f.acct.SetChannel(wammfake.Channel{State: wamm.ChannelBlocked, Hook: "http://relay.example.com/webhook/sales/" + hookSecret})
			},
			result: CheckNotAuthorized, matches: ptr(false), hook: "http://relay.example.com/webhook/sales/***",
			warning: `channel state is "blocked", not "authorized"; hook is http://`},
		{name: "no public URL: hooks not compared",
			mod: func(o *ChannelCheckOptions) {
				o.WebhookURL = ""
			},
			setup:  func(f *channelFixture) { f.acct.SetChannel(wammfake.Channel{Hook: "https://anything.example/x"}) },
			result: CheckOK, ok: true, auth: true, hook: "https://anything.example/***"},
		{name: "fail get data",
			setup:  func(f *channelFixture) { f.acct.SetAPIFailure(wammfake.APIFailure{Err: "fail get data"}) },
			result: CheckError, errText: "fail get data"},
		{name: "HTTP 502 with garbage",
			setup:  func(f *channelFixture) { f.acct.SetAPIFailure(wammfake.APIFailure{Status: http.StatusBadGateway}) },
			result: CheckError, errText: "http status 502"},
		{name: "token fail",
			setup:  func(f *channelFixture) { f.acct.SetAPIFailure(wammfake.APIFailure{Err: "token fail"}) },
			result: CheckError, errText: "token fail"},
		{name: "an empty list",
			mod: func(o *ChannelCheckOptions) {
				o.Lister = listerFunc(func(context.Context, string) ([]wamm.Channel, error) { return nil, nil })
			},
			result: CheckNotFound, matches: ptr(false), warning: "lists no channel"},
		{name: "several channels: the one with our hook is taken",
			mod: func(o *ChannelCheckOptions) {
				o.Lister = listerFunc(func(context.Context, string) ([]wamm.Channel, error) {
					return []wamm.Channel{
						{APIID: "1", State: wamm.ChannelBlocked, Hook: "https://x.example/a"},
						{APIID: "2", State: wamm.ChannelAuthorized, Hook: ourHook},
					}, nil
				})
			},
			result: CheckOK, ok: true, auth: true, matches: ptr(true), hook: "https://relay.example.com/webhook/sales/***",
			warning: "listed 2 channels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newChannelFixture(t, tc.mod)
			if tc.setup != nil {
				tc.setup(f)
			}
			st := f.check.Check(context.Background())
			require.Equal(t, st, f.check.Status())
			require.Equal(t, "sales", st.Name)
			require.Equal(t, t0, st.CheckedAt)
			require.Equal(t, tc.ok, st.OK, "status: %+v", st)
			require.Equal(t, tc.auth, st.Authorized)
			if tc.result != CheckError {
				require.Equal(t, tc.matches, st.HookMatches)
				require.Equal(t, tc.hook, st.Hook)
			}
			if tc.warning == "" {
				require.Empty(t, st.Warning)
			} else {
				require.Contains(t, st.Warning, tc.warning)
			}
			if tc.errText == "" {
				require.Empty(t, st.Error)
			} else {
				require.Contains(t, st.Error, tc.errText)
			}
			body, err := json.Marshal(st)
			require.NoError(t, err)
			requireNoSecrets(t, string(body))
			requireNoSecrets(t, allLogText(f.logs))

			labels := map[string]string{"channel": "sales"}
			v, ok := metric(t, f.reg, "wamm_relay_channel_ok", labels)
			require.True(t, ok)
			require.Equal(t, boolGauge(tc.ok), v)
			v, _ = metric(t, f.reg, "wamm_relay_channel_checks_total", map[string]string{"channel": "sales", "result": tc.result})
			require.Equal(t, 1.0, v)
			v, ok = metric(t, f.reg, "wamm_relay_channel_authorized", labels)
			hv, hok := metric(t, f.reg, "wamm_relay_channel_hook_matches", labels)
			if tc.result == CheckError {
				require.False(t, ok, "unknown after a failure with nothing known before")
				require.False(t, hok)
				return
			}
			require.True(t, ok)
			require.Equal(t, boolGauge(tc.auth), v)
			require.True(t, hok)
			want := -1.0
			if tc.matches != nil {
				want = boolGauge(*tc.matches)
			}
			require.Equal(t, want, hv)
		})
	}
}

type listerFunc func(ctx context.Context, filter string) ([]wamm.Channel, error)

func (f listerFunc) Channels(ctx context.Context, filter string) ([]wamm.Channel, error) {
	return f(ctx, filter)
}

func TestChannelCheckAsksForOneChannel(t *testing.T) {
	var filters []string
	f := newChannelFixture(t, func(o *ChannelCheckOptions) {
		o.Lister = listerFunc(func(_ context.Context, filter string) ([]wamm.Channel, error) {
			filters = append(filters, filter)
			return nil, nil
		})
	})
	f.check.Check(context.Background())
	require.Equal(t, []string{wamm.ChannelsOne}, filters)
}

// Each change of condition is one log line; the same condition again is
// none.
func TestChannelCheckLogsChangesOnly(t *testing.T) {
	f := newChannelFixture(t, nil)
	steps := []struct {
		name  string
		setup func()
		level logrus.Level // 0: no line expected
		msg   string
	}{
		{"first check, fine", nil, logrus.InfoLevel, "channel is authorized"},
		{"fine again", nil, 0, ""},
		{"not authorized", func() { f.acct.SetChannelState(wamm.ChannelNotAuthorized) }, logrus.WarnLevel, "notAuthorized"},
		{"still not authorized", nil, 0, ""},
		{"now starting", func() { f.acct.SetChannelState(wamm.ChannelStarting) }, logrus.WarnLevel, "starting"},
		{"API fails", func() { f.acct.SetAPIFailure(wammfake.APIFailure{Err: "fail get data"}) }, logrus.WarnLevel, "channel_list failed"},
		{"API still fails", nil, 0, ""},
		{"API fails another way", func() { f.acct.SetAPIFailure(wammfake.APIFailure{Status: 500}) }, logrus.WarnLevel, "channel_list failed"},
		{"API back, still starting", func() { f.acct.ClearAPIFailure() }, logrus.WarnLevel, "starting"},
		{"authorized, wrong secret", func() {
			f.acct.SetChannel(wammfake.Channel{Hook: "https://relay.example.com/webhook/sales/OTHER-secret"})
		}, logrus.WarnLevel, "hook is https://relay.example.com/webhook/sales/***"},
		{"same mismatch", nil, 0, ""},
		{"fixed", func() { f.acct.SetChannel(wammfake.Channel{}) }, logrus.InfoLevel, "fine again"},
		{"still fixed", nil, 0, ""},
	}
	for _, s := range steps {
		if s.setup != nil {
			s.setup()
		}
		f.logs.Reset()
		f.check.Check(context.Background())
		entries := f.logs.AllEntries()
		if s.level == 0 {
			require.Empty(t, entries, s.name)
			continue
		}
		require.Len(t, entries, 1, s.name)
		require.Equal(t, s.level, entries[0].Level, s.name)
		require.Contains(t, entries[0].Message, s.msg, s.name)
		require.Equal(t, "sales", entries[0].Data["channel"], s.name)
		line, err := entries[0].String()
		require.NoError(t, err)
		requireNoSecrets(t, line)
	}
	v, _ := metric(t, f.reg, "wamm_relay_channel_checks_total", map[string]string{"channel": "sales", "result": CheckError})
	require.Equal(t, 3.0, v)
}

// A check cut short by shutdown records nothing.
func TestChannelCheckCanceled(t *testing.T) {
	f := newChannelFixture(t, nil)
	first := f.check.Check(context.Background())
	require.True(t, first.OK)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Equal(t, first, f.check.Check(ctx))
	v, _ := metric(t, f.reg, "wamm_relay_channel_checks_total", map[string]string{"channel": "sales", "result": CheckError})
	require.Zero(t, v)
}

// Several checkers, one per channel, share one registry.
func TestChannelCheckersShareARegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	ok := listerFunc(func(context.Context, string) ([]wamm.Channel, error) {
		return []wamm.Channel{{State: wamm.ChannelAuthorized, Hook: "https://r.example/webhook"}}, nil
	})
	bad := listerFunc(func(context.Context, string) ([]wamm.Channel, error) {
		return []wamm.Channel{{State: wamm.ChannelBlocked}}, nil
	})
	var checkers []*ChannelChecker
	for name, l := range map[string]ChannelLister{"default": ok, "sales": bad} {
		logger, _ := logtest.NewNullLogger()
		c, err := NewChannelChecker(ChannelCheckOptions{Lister: l, Channel: name, Logger: logger, Registerer: reg,
			WebhookURL: WebhookURL("https://r.example", "/webhook", "", "")})
		require.NoError(t, err, name)
		checkers = append(checkers, c)
	}
	for _, c := range checkers {
		c.Check(context.Background())
	}
	v, _ := metric(t, reg, "wamm_relay_channel_ok", map[string]string{"channel": "default"})
	require.Equal(t, 1.0, v)
	v, _ = metric(t, reg, "wamm_relay_channel_ok", map[string]string{"channel": "sales"})
	require.Zero(t, v)
	v, _ = metric(t, reg, "wamm_relay_channel_checks_total", map[string]string{"channel": "sales", "result": CheckNotAuthorized})
	require.Equal(t, 1.0, v)

	// A different collector under one of the names is still an error.
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "wamm_relay_channel_ok", Help: "x"}))
	_, err := NewChannelMetrics(reg2)
	require.Error(t, err)
}

func TestNewChannelCheckerRejectsBadOptions(t *testing.T) {
	good := ChannelCheckOptions{Lister: listerFunc(nil), Channel: "c", Logger: logrus.New()}
	tests := []struct {
		name string
		mod  func(*ChannelCheckOptions)
		want string
	}{
		{"no lister", func(o *ChannelCheckOptions) { o.Lister = nil }, "missing Lister"},
		{"no channel", func(o *ChannelCheckOptions) { o.Channel = "" }, "missing Channel"},
		{"no logger", func(o *ChannelCheckOptions) { o.Logger = nil }, "missing Logger"},
		{"relative webhook URL, secret not echoed", func(o *ChannelCheckOptions) { o.WebhookURL = "/webhook/" + hookSecret }, "invalid WebhookURL"},
		{"ftp webhook URL", func(o *ChannelCheckOptions) { o.WebhookURL = "ftp://h/x" }, "invalid WebhookURL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mod(&o)
			_, err := NewChannelChecker(o)
			require.ErrorContains(t, err, tc.want)
			requireNoSecrets(t, err.Error())
		})
	}
	_, err := NewChannelChecker(good)
	require.NoError(t, err)
}

func TestChannelStatusJSON(t *testing.T) {
	f := newChannelFixture(t, nil)
	before, err := json.Marshal(f.check.Status())
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"sales","ok":false,"authorized":false,"hook_matches":null,
		"expected_hook":"https://relay.example.com/webhook/sales/***"}`, string(before))

	body, err := json.Marshal(f.check.Check(context.Background()))
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"sales","checked_at":"2026-03-01T12:00:00Z","ok":true,"authorized":true,
		"state":"authorized","pay_state":"active","api_id":"1","api_tip":"whatsapp","api_tag":"wammfake",
		"phone":"79990000000","hook":"https://relay.example.com/webhook/sales/***",
		"expected_hook":"https://relay.example.com/webhook/sales/***","hook_matches":true}`, string(body))
}

// Status may be read while checks run (the admin API and the reconciler).
func TestChannelStatusConcurrent(t *testing.T) {
	f := newChannelFixture(t, nil)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if i%2 == 0 {
					f.check.Check(context.Background())
				} else {
					_ = f.check.Status()
				}
			}
		}()
	}
	wg.Wait()
	v, _ := metric(t, f.reg, "wamm_relay_channel_checks_total", map[string]string{"channel": "sales", "result": CheckOK})
	require.Equal(t, 40.0, v)
}

func TestWebhookURL(t *testing.T) {
	tests := []struct {
		publicURL, path, channel, secret string
		want, public                     string
	}{
		{"https://relay.example.com", "/webhook", "", "", "https://relay.example.com/webhook", "/webhook"},
		{"https://relay.example.com/", "/webhook", "", "s3", "https://relay.example.com/webhook/s3", "/webhook"},
		{"https://relay.example.com", "/webhook", "sales", "", "https://relay.example.com/webhook/sales", "/webhook/sales"},
		{"https://relay.example.com", "/webhook", "sales", "s3", "https://relay.example.com/webhook/sales/s3", "/webhook/sales"},
		{"https://relay.example.com/base", "/hooks/wamm", "sales", "a b", "https://relay.example.com/base/hooks/wamm/sales/a%20b", "/hooks/wamm/sales"},
		{"https://relay.example.com", "/", "", "s3", "https://relay.example.com/s3", "/"},
		{"https://relay.example.com", "/", "sales", "", "https://relay.example.com/sales", "/sales"},
		{"", "/webhook", "sales", "s3", "", "/webhook/sales"},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%s %s %q %q", tc.publicURL, tc.path, tc.channel, tc.secret)
		require.Equal(t, tc.want, WebhookURL(tc.publicURL, tc.path, tc.channel, tc.secret), name)
		require.Equal(t, tc.public, WebhookPublicPath(tc.path, tc.channel), name)
	}
}

func TestRedactHook(t *testing.T) {
	tests := []struct {
		hook, public, want string
	}{
		{"https://r.example/webhook/sales/sec", "/webhook/sales", "https://r.example/webhook/sales/***"},
		{"https://r.example/webhook/sec", "/webhook", "https://r.example/webhook/***"},
		{"https://r.example/webhook?secret=sec&x=1", "/webhook", "https://r.example/webhook?secret=***&x=***"},
		{"https://r.example/webhook/", "/webhook", "https://r.example/webhook/"},
		{"https://r.example/webhooks/sec", "/webhook", "https://r.example/***/***"},
		{"https://r.example/webhook/sec", "", "https://r.example/***/***"},
		{"https://u:p@r.example:8443/webhook#frag", "/webhook", "https://***@r.example:8443/webhook#***"},
		{"https://r.example", "/webhook", "https://r.example"},
		{"not a url sec", "/webhook", "***"},
		{"://bad", "/webhook", "***"},
		{"", "/webhook", ""},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, redactHook(tc.hook, tc.public), tc.hook)
	}
}

func TestHookComparison(t *testing.T) {
	want := "https://relay.example.com/webhook/sales/sec"
	tests := []struct {
		hook  string
		match bool
	}{
		{want, true},
		{"https://RELAY.example.com/webhook/sales/sec/", true},
		{"HTTPS://relay.example.com:443/webhook/sales/sec", true},
		{"https://relay.example.com/webhook/sales?secret=sec", true},
		{" https://relay.example.com/webhook/sales/sec ", true},
		{"https://relay.example.com/webhook/sales/sec#x", true},
		{"http://relay.example.com/webhook/sales/sec", false},
		{"https://relay.example.com:8443/webhook/sales/sec", false},
		{"https://relay.example.com/webhook/sales/SEC", false},
		{"https://relay.example.com/webhook/sales?secret=sec&x=1", false},
		{"https://relay.example.com/webhook/sales", false},
		{"https://relay.example.com/webhook/sec", false},
		{"", false},
		{"relay.example.com/webhook/sales/sec", false},
	}
	c := &ChannelChecker{}
	c.want, _ = parseHook(want)
	for _, tc := range tests {
		require.Equal(t, tc.match, c.hookMatches(tc.hook), tc.hook)
	}
	v6, _ := parseHook("http://[::1]:80/x/")
	require.Equal(t, "http://[::1]/x", v6.String())
	v6, _ = parseHook("http://[::1]:8080/x")
	require.Equal(t, "http://[::1]:8080/x", v6.String())
}

// The reconciler checks the channel at its first led pass and every
// CheckEvery-th after; a failing check does not fail the pass.
func TestReconcilerChecksTheChannel(t *testing.T) {
	tests := []struct {
		name       string
		checkEvery int
		passes     int
		want       int
	}{
		{"default: every 10th", 0, 21, 3},
		{"every pass", 1, 4, 4},
		{"every 3rd", 3, 7, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			checks := 0
			f.opts.Checker = checkerFunc(func(context.Context) ChannelStatus {
				checks++
				return ChannelStatus{Error: "channel_list failed"}
			})
			f.opts.CheckEvery = tc.checkEvery
			r := f.new(t)
			for range tc.passes {
				once(t, r)
			}
			require.Equal(t, tc.want, checks)
		})
	}

	t.Run("not while another instance leads", func(t *testing.T) {
		f := newFixture(t, false)
		leader := false
		f.store.holdLeader = func() (bool, error) { return leader, nil }
		checks := 0
		f.opts.Checker = checkerFunc(func(context.Context) ChannelStatus { checks++; return ChannelStatus{} })
		f.opts.CheckEvery = 5
		r := f.new(t)
		for range 3 {
			once(t, r)
		}
		require.Zero(t, checks)
		leader = true
		once(t, r)
		require.Equal(t, 1, checks, "the first led pass checks")
	})

	t.Run("a real checker failing leaves the pass alone", func(t *testing.T) {
		f := newFixture(t, false)
		cf := newChannelFixture(t, nil)
		cf.acct.SetAPIFailure(wammfake.APIFailure{Err: "token fail"})
		f.opts.Checker = cf.check
		rep := once(t, f.new(t))
		require.False(t, rep.NotLeader)
		require.Contains(t, cf.check.Status().Error, "token fail")
	})

	t.Run("negative CheckEvery is rejected", func(t *testing.T) {
		f := newFixture(t, false)
		f.opts.CheckEvery = -1
		_, err := New(f.opts)
		require.ErrorContains(t, err, "CheckEvery")
	})
}

type checkerFunc func(context.Context) ChannelStatus

func (f checkerFunc) Check(ctx context.Context) ChannelStatus { return f(ctx) }
