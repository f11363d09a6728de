package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/require"
)

// testEnv is the environment the testdata files are parsed with.
var testEnv = map[string]string{
	"LISTEN_HOST":        "127.0.0.1",
	"LISTEN_PORT":        "9999",
	"ADMIN_TOKEN":        "admin-token-0123456789",
	"METRICS_TOKEN":      "metrics-token-0123456789",
	"WAMM_TOKEN":         "wamm-token-from-env",
	"RECONCILE_INTERVAL": "45s",
	"PG_PASSWORD":        "pg-secret-from-env",
	"CRM_URL":            "https://crm.example/hook",
	// Quotes, a newline and TOML syntax: harmless, since expansion runs on
	// decoded values and not on the file's text.
	"CRM_TOKEN":    "a\"b' = [x]\tc",
	"BAD_INTERVAL": "abc",
	"SAMPLE_RATIO": "0.5",
	"EMPTY":        "",
	// Integers and booleans, for keys that quote them.
	"MAX_BODY":          "65536",
	"RECONCILE_ENABLED": "false",
	"WORKERS":           "32",
	"MAX_ATTEMPTS":      "9",
	"CRM_ATTEMPTS":      "4",
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

func parseString(t *testing.T, doc string) (Config, error) {
	t.Helper()
	return ParseWith(strings.NewReader(doc), lookup(testEnv))
}

func parseFile(t *testing.T, path string) (Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return ParseWith(bytes.NewReader(data), lookup(testEnv))
}

// validationErrors flattens the (possibly joined, possibly wrapped)
// ValidationErrors in err.
func validationErrors(err error) []*ValidationError {
	var ve *ValidationError
	if errors.As(err, &ve) && ve == err {
		return []*ValidationError{ve}
	}
	var out []*ValidationError
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, validationErrors(e)...)
		}
	case interface{ Unwrap() error }:
		out = append(out, validationErrors(u.Unwrap())...)
	}
	return out
}

func TestDefaultMatchesInterfaceExample(t *testing.T) {
	c := Default()
	require.NoError(t, c.Validate())

	require.Equal(t, ":8080", c.Server.Listen)
	require.Equal(t, "/webhook", c.Server.WebhookPath)
	require.Empty(t, c.Server.WebhookSecret)
	require.Equal(t, int64(1048576), c.Server.MaxBodyBytes)
	require.Empty(t, c.Server.AdminToken)
	require.Empty(t, c.Server.TrustedProxies)
	require.Equal(t, 15*time.Second, c.Server.ShutdownTimeout.Duration)
	require.Zero(t, c.Server.DrainDelay.Duration)
	require.Equal(t, 5*time.Second, c.Server.ReadHeaderTimeout.Duration)
	require.Equal(t, 15*time.Second, c.Server.ReadTimeout.Duration)
	require.Equal(t, 15*time.Second, c.Server.WriteTimeout.Duration)
	require.Equal(t, 60*time.Second, c.Server.IdleTimeout.Duration)
	require.Equal(t, 16384, c.Server.MaxHeaderBytes)
	require.Equal(t, 1024, c.Server.MaxInFlight)

	require.Equal(t, "https://wamm.chat/api2", c.WAMM.APIURL)
	require.Empty(t, c.WAMM.Token)
	require.Equal(t, 10*time.Second, c.WAMM.Timeout.Duration)

	require.True(t, c.Reconcile.Enabled)
	require.Equal(t, 30*time.Second, c.Reconcile.Interval.Duration)
	require.Equal(t, 20*time.Second, c.Reconcile.Grace.Duration)
	require.False(t, c.Reconcile.BackfillOnStart)
	require.Equal(t, 5*time.Minute, c.Reconcile.BackoffMax.Duration)
	require.Equal(t, 10, c.Reconcile.CheckEvery)
	require.Empty(t, c.Server.PublicURL)

	require.Equal(t, 100000, c.Dedup.LRUSize)
	require.Equal(t, 2160*time.Hour, c.Dedup.Retention.Duration)

	require.Equal(t, "sqlite", c.Store.Driver)
	require.Equal(t, "data/relay.db", c.Store.DSN)
	require.Equal(t, 20000, c.Store.VacuumEvery)

	require.Equal(t, 16, c.Delivery.Workers)
	require.Equal(t, 10*time.Second, c.Delivery.Timeout.Duration)
	require.Equal(t, 25, c.Delivery.MaxAttempts)
	require.Equal(t, time.Second, c.Delivery.BackoffInitial.Duration)
	require.Equal(t, 2*time.Hour, c.Delivery.BackoffMax.Duration)

	require.Equal(t, "info", c.Log.Level)
	require.Equal(t, "json", c.Log.Format)
	require.False(t, c.Tracing.Enabled, "tracing is off unless configured")
	require.Empty(t, c.Tracing.Endpoint)
	require.InDelta(t, 1.0, c.Tracing.SampleRatio, 0)
	require.Equal(t, "wamm-relay", c.Tracing.ServiceName)
	require.False(t, c.Tracing.Insecure)
	require.Empty(t, c.Tracing.Headers)
	require.Empty(t, c.Targets)
}

func TestParseEmptyGivesDefault(t *testing.T) {
	c, err := ParseWith(strings.NewReader(""), nil)
	require.NoError(t, err)
	require.Equal(t, Default(), c)
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		file  string
		check func(t *testing.T, c Config)
	}{
		{"minimal.toml", func(t *testing.T, c Config) {
			require.Equal(t, Default(), c)
		}},
		{"full.toml", func(t *testing.T, c Config) {
			require.Equal(t, "127.0.0.1:9090", c.Server.Listen)
			require.Equal(t, []string{"10.0.0.0/8", "192.168.1.1", "fd00::/8"}, c.Server.TrustedProxies)
			require.Equal(t, 2*time.Minute, c.Server.IdleTimeout.Duration)
			require.Equal(t, 5*time.Second, c.Server.DrainDelay.Duration)
			require.Equal(t, "https://Relay.Example.com/base/", c.Server.PublicURL)
			require.Equal(t, 3, c.Reconcile.CheckEvery)
			require.False(t, c.Reconcile.Enabled)
			require.True(t, c.Reconcile.BackfillOnStart)
			require.Zero(t, c.Reconcile.Grace.Duration)
			require.Equal(t, 5000, c.Store.VacuumEvery)
			require.Equal(t, 500*time.Millisecond, c.Delivery.BackoffInitial.Duration)
			require.Equal(t, Tracing{
				Enabled: true, Endpoint: "http://otel-collector:4318", SampleRatio: 0.25,
				ServiceName: "relay-eu", Insecure: true, Headers: map[string]string{"X-Api-Key": "k-123"},
			}, c.Tracing)
			require.Len(t, c.Targets, 2)
			crm := c.Targets[0]
			require.Equal(t, map[string]string{"Authorization": "Bearer abc", "X-Tenant": "42"}, crm.Headers)
			require.Equal(t, []string{"msg", "msg_state"}, crm.Events)
			require.Equal(t, 5*time.Second, crm.Timeout.Duration)
			require.Equal(t, 7, crm.MaxAttempts)
			require.Equal(t, "testdata/ca.pem", crm.CAFile)
			require.True(t, crm.Receives(EventMsgState))
			require.False(t, crm.Receives(EventRaw))
			// Zero per-target values are resolved from [delivery].
			audit := c.Targets[1]
			require.Equal(t, "audit.log-2", audit.Name)
			require.Equal(t, 30*time.Second, audit.Timeout.Duration)
			require.Equal(t, 3, audit.MaxAttempts)
			require.Equal(t, []string{}, audit.Events)
			require.True(t, audit.Receives(EventRaw))
		}},
		{"channels.toml", func(t *testing.T, c Config) {
			chans := c.Channels()
			require.Len(t, chans, 3)
			def, sales, tg := chans[0], chans[1], chans[2]
			require.Equal(t, "default", def.Name)
			require.Equal(t, "default-token", def.Token)
			require.Equal(t, "s3cret-default", def.WebhookSecret)
			require.Equal(t, 40*time.Second, def.Reconcile.Interval.Duration)

			require.Equal(t, "sales", sales.Name)
			require.Equal(t, "s3cret-sales", sales.WebhookSecret)
			require.Equal(t, 15*time.Second, sales.Reconcile.Interval.Duration, "set in the channel")
			require.False(t, sales.Reconcile.Enabled, "a false set in the channel is kept")
			require.Equal(t, 25*time.Second, sales.Reconcile.Grace.Duration, "inherited from [reconcile]")
			require.Equal(t, "https://wamm.chat/api2", sales.APIURL, "inherited from [wamm]")
			require.Equal(t, 7*time.Second, sales.Timeout)

			require.Equal(t, "tg.support", tg.Name)
			require.True(t, tg.Reconcile.Enabled, "inherited from [reconcile]")
			require.Equal(t, "s3cret-default", tg.WebhookSecret, "server.webhook_secret when the channel sets none")
			require.Equal(t, "http://127.0.0.1:9/api2", tg.APIURL)
			require.Equal(t, []string{"sales", "default"}, c.Targets[0].Channels)

			m := c.Masked()
			require.Equal(t, masked, m.WAMM.Channels[0].Token)
			require.Equal(t, masked, m.WAMM.Channels[0].WebhookSecret)
			require.Equal(t, "sales-token", c.WAMM.Channels[0].Token, "masking copies")
		}},
		{"postgres_kv.toml", func(t *testing.T, c Config) {
			require.Equal(t, DriverPostgres, c.Store.Driver)
			require.Contains(t, c.Store.DSN, "password='p a$$ w0rd'")
		}},
		{"postgres_socket.toml", func(t *testing.T, c Config) {
			require.Equal(t, "postgresql:///relay?host=/var/run/postgresql", c.Store.DSN)
		}},
		{"inline_targets.toml", func(t *testing.T, c Config) {
			require.Len(t, c.Targets, 2)
			require.Equal(t, 10*time.Second, c.Targets[0].Timeout.Duration)
			require.Equal(t, time.Second, c.Targets[1].Timeout.Duration)
			require.Equal(t, []string{"raw"}, c.Targets[1].Events)
		}},
		{"metrics.toml", func(t *testing.T, c Config) {
			require.Equal(t, "127.0.0.1:9100", c.Server.MetricsListen)
			require.Equal(t, "metrics-token-0123456789", c.Server.MetricsToken, "expanded from the environment")
			m := c.Masked()
			require.Equal(t, masked, m.Server.MetricsToken)
			require.Equal(t, "127.0.0.1:9100", m.Server.MetricsListen, "an address is no secret")
			var buf bytes.Buffer
			require.NoError(t, m.WriteTOML(&buf))
			require.NotContains(t, buf.String(), "metrics-token-0123456789")
			require.Contains(t, buf.String(), `metrics_token = "****"`)
		}},
		{"env.toml", func(t *testing.T, c Config) {
			require.Equal(t, "127.0.0.1:9999", c.Server.Listen)
			require.Equal(t, "admin-token-0123456789", c.Server.AdminToken)
			require.Equal(t, "wamm-token-from-env", c.WAMM.Token)
			require.Equal(t, 45*time.Second, c.Reconcile.Interval.Duration, "durations expand too")
			require.Equal(t, int64(65536), c.Server.MaxBodyBytes, "integers expand when quoted")
			require.False(t, c.Reconcile.Enabled, "booleans expand when quoted")
			require.True(t, c.Reconcile.BackfillOnStart)
			require.Equal(t, 1000, c.Dedup.LRUSize)
			require.Equal(t, 32, c.Delivery.Workers)
			require.Equal(t, 9, c.Delivery.MaxAttempts, "surrounding spaces are trimmed")
			require.Equal(t, 4, c.Targets[0].MaxAttempts)
			require.InDelta(t, 0.5, c.Tracing.SampleRatio, 0, "floats expand when quoted")
			require.Equal(t, "postgres://relay:pg-secret-from-env@db/relay", c.Store.DSN)
			require.Equal(t, "https://crm.example/hook", c.Targets[0].URL)
			require.Equal(t, map[string]string{
				"Authorization": "Bearer a\"b' = [x]\tc",
				"X-Unset":       "xy",
				"X-Literal":     "$HOME and ${not valid}",
			}, c.Targets[0].Headers)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := parseFile(t, filepath.Join("testdata", "good", tt.file))
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

// badCases maps each testdata/bad file to the one problem it contains. An
// empty is means the error comes from decoding, not validation; its text
// must then contain key.
var badCases = []struct {
	file string
	key  string
	is   error
}{
	{"syntax.toml", "line 2", nil},
	{"type_mismatch.toml", `line 2 (last key "server.max_body_bytes"): incompatible types: TOML value has type float64; destination has type integer`, nil},
	{"table_type.toml", `line 1 (last key "server"): type mismatch for config.Server: expected table but found int64`, nil},
	{"int_quoted.toml", "server.max_body_bytes", ErrInvalid},
	{"int_env.toml", "delivery.workers", ErrInvalid},
	{"bool_env.toml", "reconcile.enabled", ErrInvalid},
	{"target_max_attempts_env.toml", "targets[0].max_attempts", ErrInvalid},
	{"duration_syntax.toml", "delivery.timeout", nil},
	{"duration_env.toml", "reconcile.interval", ErrInvalid},
	{"unknown_key.toml", "server.listn", ErrUnknownKey},
	{"channel_name_reserved.toml", "wamm.channels[0].name", ErrInvalid},
	{"channel_name_default.toml", "wamm.channels[0].name", ErrInvalid},
	{"channel_name_dup.toml", "wamm.channels[1].name", ErrDuplicate},
	{"channel_interval.toml", "wamm.channels[0].reconcile.interval", ErrOutOfRange},
	{"target_channel_unknown.toml", "targets[0].channels[0]", ErrInvalid},
	{"unknown_table.toml", "zzz", ErrUnknownKey},
	{"unknown_target_key.toml", "targets[1].nme", ErrUnknownKey},
	{"unknown_inline_target_key.toml", "targets[1].evnts", ErrUnknownKey},
	{"listen_no_port.toml", "server.listen", ErrInvalid},
	{"listen_bad_port.toml", "server.listen", ErrInvalid},
	{"listen_empty.toml", "server.listen", ErrRequired},
	{"webhook_path_relative.toml", "server.webhook_path", ErrInvalid},
	{"webhook_path_trailing_slash.toml", "server.webhook_path", ErrInvalid},
	{"webhook_secret_slash.toml", "server.webhook_secret", ErrInvalid},
	{"webhook_path_param.toml", "server.webhook_path", ErrInvalid},
	{"webhook_path_reserved.toml", "server.webhook_path", ErrInvalid},
	{"max_body_negative.toml", "server.max_body_bytes", ErrOutOfRange},
	{"admin_token_short.toml", "server.admin_token", ErrInvalid},
	{"metrics_listen_same.toml", "server.metrics_listen", ErrInvalid},
	{"metrics_listen_bad_port.toml", "server.metrics_listen", ErrInvalid},
	{"metrics_listen_no_port.toml", "server.metrics_listen", ErrInvalid},
	{"metrics_token_short.toml", "server.metrics_token", ErrInvalid},
	{"trusted_proxy.toml", "server.trusted_proxies[1]", ErrInvalid},
	{"shutdown_zero.toml", "server.shutdown_timeout", ErrOutOfRange},
	{"drain_delay_negative.toml", "server.drain_delay", ErrOutOfRange},
	{"max_in_flight_zero.toml", "server.max_in_flight", ErrOutOfRange},
	{"public_url_relative.toml", "server.public_url", ErrInvalid},
	{"public_url_scheme.toml", "server.public_url", ErrInvalid},
	{"public_url_query.toml", "server.public_url", ErrInvalid},
	{"public_url_userinfo.toml", "server.public_url", ErrInvalid},
	{"wamm_api_url.toml", "wamm.api_url", ErrInvalid},
	{"wamm_timeout_negative.toml", "wamm.timeout", ErrOutOfRange},
	{"reconcile_interval.toml", "reconcile.interval", ErrOutOfRange},
	{"reconcile_grace_negative.toml", "reconcile.grace", ErrOutOfRange},
	{"reconcile_backoff.toml", "reconcile.backoff_max", ErrOutOfRange},
	{"reconcile_check_every.toml", "reconcile.check_every", ErrOutOfRange},
	{"lru_zero.toml", "dedup.lru_size", ErrOutOfRange},
	{"retention_zero.toml", "dedup.retention", ErrOutOfRange},
	{"store_driver.toml", "store.driver", ErrInvalid},
	{"store_dsn_empty.toml", "store.dsn", ErrRequired},
	{"vacuum_every_negative.toml", "store.vacuum_every", ErrOutOfRange},
	{"postgres_dsn.toml", "store.dsn", ErrInvalid},
	{"postgres_dsn_quote.toml", "store.dsn", ErrInvalid},
	{"workers_zero.toml", "delivery.workers", ErrOutOfRange},
	{"workers_too_many.toml", "delivery.workers", ErrOutOfRange},
	{"max_attempts_zero.toml", "delivery.max_attempts", ErrOutOfRange},
	{"delivery_backoff.toml", "delivery.backoff_max", ErrOutOfRange},
	{"log_level.toml", "log.level", ErrInvalid},
	{"log_format.toml", "log.format", ErrInvalid},
	{"target_name_empty.toml", "targets[0].name", ErrRequired},
	{"target_name_chars.toml", "targets[0].name", ErrInvalid},
	{"target_name_dup.toml", "targets[1].name", ErrDuplicate},
	{"target_url_relative.toml", "targets[0].url", ErrInvalid},
	{"target_url_scheme.toml", "targets[0].url", ErrInvalid},
	{"target_url_empty.toml", "targets[0].url", ErrRequired},
	{"target_events.toml", "targets[0].events[1]", ErrInvalid},
	{"target_events_dup.toml", "targets[0].events[1]", ErrDuplicate},
	{"target_signing_prefix.toml", "targets[0].signing_secret", ErrInvalid},
	{"target_signing_short.toml", "targets[0].signing_secret", ErrInvalid},
	{"target_signing_base64.toml", "targets[0].signing_secret", ErrInvalid},
	{"target_header_reserved.toml", "targets[0].headers.webhook-signature", ErrInvalid},
	{"target_header_name.toml", `targets[0].headers."Bad Header"`, ErrInvalid},
	{"target_header_value.toml", "targets[0].headers.X-A", ErrInvalid},
	{"target_timeout_negative.toml", "targets[0].timeout", ErrOutOfRange},
	{"target_max_attempts_negative.toml", "targets[0].max_attempts", ErrOutOfRange},
	{"tracing_sample_ratio.toml", "tracing.sample_ratio", ErrOutOfRange},
	{"tracing_sample_ratio_env.toml", "tracing.sample_ratio", ErrInvalid},
	{"tracing_endpoint.toml", "tracing.endpoint", ErrInvalid},
	{"tracing_insecure_https.toml", "tracing.insecure", ErrInvalid},
	{"tracing_service_name.toml", "tracing.service_name", ErrRequired},
	{"tracing_header_value.toml", "tracing.headers.X-Api-Key", ErrInvalid},
	{"rate_limit_negative.toml", "delivery.rate_limit", ErrOutOfRange},
	{"target_rate_burst_negative.toml", "targets[0].rate_burst", ErrOutOfRange},
	{"breaker_failures_negative.toml", "delivery.breaker_failures", ErrOutOfRange},
	{"target_breaker_cooldown_zero.toml", "targets[0].breaker_cooldown", ErrOutOfRange},
}

func TestParseBad(t *testing.T) {
	for _, tt := range badCases {
		t.Run(tt.file, func(t *testing.T) {
			_, err := parseFile(t, filepath.Join("testdata", "bad", tt.file))
			require.Error(t, err)
			if tt.is == nil {
				require.Empty(t, validationErrors(err), "a decode error, not a validation error")
				require.Contains(t, err.Error(), tt.key)
				return
			}
			errs := validationErrors(err)
			require.Len(t, errs, 1, "each bad file holds exactly one problem; got %v", err)
			require.Equal(t, tt.key, errs[0].Key)
			require.ErrorIs(t, err, tt.is)
			require.Contains(t, err.Error(), "config: "+tt.key)
		})
	}
}

func TestEveryBadFileHasACase(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.toml"))
	require.NoError(t, err)
	covered := make(map[string]bool)
	for _, c := range badCases {
		covered[c.file] = true
	}
	for _, f := range files {
		require.True(t, covered[filepath.Base(f)], "%s has no entry in badCases", f)
	}
	require.Len(t, files, len(badCases))
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Server.Listen = "nope"
	c.Delivery.Workers = 0
	c.Targets = []Target{{Name: "a", URL: "http://x/a"}, {Name: "a", URL: "ftp://x"}}
	err := c.Validate()

	var keys []string
	for _, ve := range validationErrors(err) {
		keys = append(keys, ve.Key)
	}
	require.Equal(t, []string{"server.listen", "delivery.workers", "targets[1].name", "targets[1].url"}, keys)
	require.ErrorIs(t, err, ErrDuplicate)
	require.ErrorIs(t, err, ErrOutOfRange)
}

func TestValidationErrorText(t *testing.T) {
	c := Default()
	c.Server.MaxBodyBytes = -1
	err := c.Validate()
	require.EqualError(t, err, `config: server.max_body_bytes = "-1": must be between 1 and 1073741824`)

	c = Default()
	c.Store.DSN = ""
	require.EqualError(t, c.Validate(), `config: store.dsn: required`)
}

func TestValidationErrorsHideSecrets(t *testing.T) {
	const secret = "sup3r-s3cret-value"
	c := Default()
	c.Server.AdminToken = "s3cret"
	c.Server.WebhookSecret = secret + " with space"
	c.WAMM.Token = secret + "/x"
	c.Store = Store{Driver: DriverPostgres, DSN: "host=db password='" + secret}
	c.Targets = []Target{{
		Name:          "a",
		URL:           "http://user:" + secret + "@x/a?token=" + secret + "&ok=1",
		SigningSecret: "whsec_" + secret,
		Headers:       map[string]string{"X-Key": secret + "\n"},
	}}
	err := c.Validate()
	require.Error(t, err)
	require.Len(t, validationErrors(err), 6, "%v", err)
	require.NotContains(t, err.Error(), "s3cret")

	// A target URL that is invalid for another reason still hides its
	// credentials.
	c = Default()
	c.Targets = []Target{{Name: "a", URL: "ftp://user:" + secret + "@x/a"}}
	err = c.Validate()
	require.ErrorIs(t, err, ErrInvalid)
	require.NotContains(t, err.Error(), secret)
}

func TestUnknownKeysReportOutermostOnce(t *testing.T) {
	_, err := parseString(t, `
[server]
listn = ":1"
[zzz]
a = 1
b = { c = 2 }
[[targets]]
name = "a"
url = "http://x/a"
[targets.extra]
x = 1
[[targets]]
name = "b"
url = "http://x/b"
[targets.extra]
x = 1
`)
	var keys []string
	for _, ve := range validationErrors(err) {
		require.ErrorIs(t, ve, ErrUnknownKey)
		keys = append(keys, ve.Key)
	}
	require.Equal(t, []string{"server.listn", "zzz", "targets[0].extra", "targets[1].extra"}, keys)
	require.ErrorContains(t, err, "config: server.listn: unknown key")
}

func TestExpandString(t *testing.T) {
	env := lookup(map[string]string{"A": "1", "B": "two", "Q": `"}`, "EMPTY": ""})
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"${A}", "1"},
		{"x${A}y${B}z", "x1ytwoz"},
		{"${A}${A}", "11"},
		{"${UNSET}", ""},
		{"a${EMPTY}b", "ab"},
		{"${Q}", `"}`},
		{"$A", "$A"},             // only the braced form
		{"$$", "$$"},             // no escape processing
		{"${A", "${A"},           // unterminated
		{"${1A}", "${1A}"},       // not a name
		{"${A B}", "${A B}"},     // not a name
		{"$${A}", "$1"},          // the braced reference still expands
		{"${${A}}", "${1}"},      // one pass only
		{"p@$$w0rd", "p@$$w0rd"}, // secrets with $ survive
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, expandString(tt.in, env))
		})
	}
}

func TestQuotedScalars(t *testing.T) {
	env := map[string]string{
		"N": "7", "BIG": "9223372036854775807", "HUGE": "9223372036854775808",
		"NEG": "-3", "YES": "true", "ONE": "1", "NO": "FALSE", "WORD": "abc", "EMPTY": "",
	}
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, c Config)
		err   string // when set, the whole error text
		is    error
	}{
		{
			name:  "int from the environment",
			doc:   "[delivery]\nworkers = \"${N}\"",
			check: func(t *testing.T, c Config) { require.Equal(t, 7, c.Delivery.Workers) },
		},
		{
			name:  "int quoted without a reference",
			doc:   "[server]\nmax_in_flight = \"12\"",
			check: func(t *testing.T, c Config) { require.Equal(t, 12, c.Server.MaxInFlight) },
		},
		{
			name:  "int64 from the environment",
			doc:   "[server]\nmax_body_bytes = \"${N}000\"",
			check: func(t *testing.T, c Config) { require.Equal(t, int64(7000), c.Server.MaxBodyBytes) },
		},
		{
			name:  "float written as an integer",
			doc:   "[tracing]\nsample_ratio = 0",
			check: func(t *testing.T, c Config) { require.Zero(t, c.Tracing.SampleRatio) },
		},
		{
			name:  "float from the environment",
			doc:   "[tracing]\nsample_ratio = \"${ONE}\"",
			check: func(t *testing.T, c Config) { require.InDelta(t, 1.0, c.Tracing.SampleRatio, 0) },
		},
		{
			name: "bool from the environment",
			doc:  "[reconcile]\nenabled = \"${NO}\"\nbackfill_on_start = \"${YES}\"",
			check: func(t *testing.T, c Config) {
				require.False(t, c.Reconcile.Enabled)
				require.True(t, c.Reconcile.BackfillOnStart)
			},
		},
		{
			name:  "bool in strconv's other spellings",
			doc:   "[reconcile]\nbackfill_on_start = \"${ONE}\"",
			check: func(t *testing.T, c Config) { require.True(t, c.Reconcile.BackfillOnStart) },
		},
		{
			name: "per-target max_attempts",
			doc: "[delivery]\nmax_attempts = 5\n" +
				"[[targets]]\nname = \"a\"\nurl = \"http://x/a\"\nmax_attempts = \"${N}\"\n" +
				"[[targets]]\nname = \"b\"\nurl = \"http://x/b\"\n",
			check: func(t *testing.T, c Config) {
				require.Equal(t, 7, c.Targets[0].MaxAttempts)
				require.Equal(t, 5, c.Targets[1].MaxAttempts, "an absent one still comes from [delivery]")
			},
		},
		{
			name: "inline target max_attempts",
			doc:  "targets = [{ name = \"a\", url = \"http://x/a\", max_attempts = \"${N}\" }]",
			check: func(t *testing.T, c Config) {
				require.Equal(t, 7, c.Targets[0].MaxAttempts)
			},
		},
		{
			name: "bare values are unchanged",
			doc:  "[delivery]\nworkers = 3\n[reconcile]\nenabled = false",
			check: func(t *testing.T, c Config) {
				require.Equal(t, 3, c.Delivery.Workers)
				require.False(t, c.Reconcile.Enabled)
			},
		},
		{
			name:  "the largest int64",
			doc:   "[server]\nmax_header_bytes = \"${BIG}\"",
			check: func(t *testing.T, c Config) { require.Equal(t, 1<<63-1, c.Server.MaxHeaderBytes) },
		},
		{
			name: "not an integer after expansion",
			doc:  "[delivery]\nworkers = \"${WORD}\"",
			err:  `config: delivery.workers = "abc": must be an integer (expanded from "${WORD}")`,
			is:   ErrInvalid,
		},
		{
			name: "quoted, not an integer",
			doc:  "[delivery]\nworkers = \"abc\"",
			err:  `config: delivery.workers = "abc": must be an integer`,
			is:   ErrInvalid,
		},
		{
			name: "octal and hex are not read from strings",
			doc:  "[delivery]\nworkers = \"0x10\"",
			err:  `config: delivery.workers = "0x10": must be an integer`,
			is:   ErrInvalid,
		},
		{
			name: "unset variable",
			doc:  "[[targets]]\nname = \"a\"\nurl = \"http://x/a\"\nmax_attempts = \"${UNSET}\"",
			err:  `config: targets[0].max_attempts: must be an integer (expanded from "${UNSET}")`,
			is:   ErrInvalid,
		},
		{
			name: "integer overflow",
			doc:  "[server]\nmax_body_bytes = \"${HUGE}\"",
			err:  `config: server.max_body_bytes = "9223372036854775808": does not fit in a 64-bit integer (expanded from "${HUGE}")`,
			is:   ErrOutOfRange,
		},
		{
			name: "not a boolean after expansion",
			doc:  "[reconcile]\nenabled = \"${WORD}\"",
			err:  `config: reconcile.enabled = "abc": must be true or false (expanded from "${WORD}")`,
			is:   ErrInvalid,
		},
		{
			name: "a parsed value is still validated",
			doc:  "[delivery]\nworkers = \"${NEG}\"",
			err:  `config: delivery.workers = "-3": must be between 1 and 1024`,
			is:   ErrOutOfRange,
		},
		{
			name: "every bad scalar is reported",
			doc:  "[delivery]\nworkers = \"x\"\nmax_attempts = \"${EMPTY}\"\n[reconcile]\nenabled = \"y\"",
			err: `config: reconcile.enabled = "y": must be true or false` + "\n" +
				`config: delivery.workers = "x": must be an integer` + "\n" +
				`config: delivery.max_attempts: must be an integer (expanded from "${EMPTY}")`,
			is: ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseWith(strings.NewReader(tt.doc), lookup(env))
			if tt.err != "" {
				require.EqualError(t, err, tt.err)
				require.ErrorIs(t, err, tt.is)
				return
			}
			require.NoError(t, err)
			tt.check(t, c)
			require.Equal(t, c, roundTrip(t, c), "WriteTOML writes the parsed value bare")
		})
	}
}

func TestDecodeErrorsNameConfigTypes(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"server = 1", "type mismatch for config.Server"},
		{"targets = [1]", "type mismatch for config.Target"},
		{"[reconcile]\nenabled = 1", `(last key "reconcile.enabled"): incompatible types: TOML value has type int64; destination has type boolean`},
		{"[delivery]\nworkers = [1]", `(last key "delivery.workers"): incompatible types: TOML value has type []any; destination has type integer`},
		{"[server]\nlisten = 1", `(last key "server.listen"): incompatible types: TOML value has type int64; destination has type string`},
	}
	for _, tt := range tests {
		t.Run(tt.doc, func(t *testing.T) {
			_, err := parseString(t, tt.doc)
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "struct {")
			require.Empty(t, validationErrors(err))
		})
	}
}

func TestExpansionCannotChangeStructure(t *testing.T) {
	// Were ${X} expanded in the TOML text, this value would close the string
	// and add a key.
	env := map[string]string{"X": `evil" admin_token = "0123456789abcdef0123`}
	c, err := ParseWith(strings.NewReader(`[server]
webhook_secret = "${X}"
`), lookup(env))
	require.Error(t, err, "the quote is kept and rejected as a value, never parsed")
	require.ErrorIs(t, err, ErrInvalid)
	require.Empty(t, c.Server.AdminToken)

	c, err = ParseWith(strings.NewReader(`[[targets]]
name = "a"
url = "http://x/a"
headers = { X-A = "${X}" }
`), lookup(env))
	require.NoError(t, err)
	require.Equal(t, env["X"], c.Targets[0].Headers["X-A"])
	require.Empty(t, c.Server.AdminToken)
}

func TestUnsetTokenMeansNoToken(t *testing.T) {
	c, err := ParseWith(strings.NewReader("[wamm]\ntoken = \"${WAMM_TOKEN}\"\n"), nil)
	require.NoError(t, err)
	require.Empty(t, c.WAMM.Token)
	require.True(t, c.Reconcile.Enabled, "app, not config, turns the reconciler off")
}

func TestTargetsInheritTheGateFromDelivery(t *testing.T) {
	c, err := parseString(t, `
[delivery]
rate_limit = 50
rate_burst = 10
breaker_failures = 5
breaker_cooldown = "1m"

[[targets]]
name = "inherits"
url = "https://a.example/hook"

[[targets]]
name = "overrides"
url = "https://b.example/hook"
rate_limit = 2.5
breaker_cooldown = "5s"

[[targets]]
name = "explicit-zero"
url = "https://c.example/hook"
rate_limit = 0
rate_burst = 0
breaker_failures = 0
`)
	require.NoError(t, err)
	type gate struct {
		rate     float64
		burst    int
		failures int
		cooldown time.Duration
	}
	got := func(tg Target) gate {
		return gate{tg.RateLimit, tg.RateBurst, tg.BreakerFailures, tg.BreakerCooldown.Duration}
	}
	require.Equal(t, gate{50, 10, 5, time.Minute}, got(c.Targets[0]))
	require.Equal(t, gate{2.5, 10, 5, 5 * time.Second}, got(c.Targets[1]))
	require.Equal(t, gate{0, 0, 0, time.Minute}, got(c.Targets[2]), "an explicit 0 is no limit and no breaker")

	def, err := parseString(t, "[[targets]]\nname = \"crm\"\nurl = \"https://a.example/hook\"\n")
	require.NoError(t, err)
	require.Equal(t, gate{0, 0, 20, 30 * time.Second}, got(def.Targets[0]), "the defaults: no rate limit, a breaker")
}

func TestTargetsInheritDenyPrivateNetworks(t *testing.T) {
	c, err := ParseWith(strings.NewReader(`
[delivery]
deny_private_networks = true

[[targets]]
name = "inherits"
url = "https://a.example/hook"

[[targets]]
name = "explicit-false"
url = "http://10.0.0.5/hook"
deny_private_networks = false

[[targets]]
name = "quoted"
url = "https://c.example/hook"
deny_private_networks = "${DENY}"
`), lookup(map[string]string{"DENY": "false"}))
	require.NoError(t, err)
	require.True(t, c.Delivery.DenyPrivateNetworks)
	require.True(t, c.Targets[0].DenyPrivateNetworks, "a target inherits [delivery]'s")
	require.False(t, c.Targets[1].DenyPrivateNetworks, "an explicit false overrides [delivery]'s true")
	require.False(t, c.Targets[2].DenyPrivateNetworks, "set (quoted, expanded), so not inherited")

	c, err = parseString(t, `
[[targets]]
name = "opts-in"
url = "https://a.example/hook"
deny_private_networks = true

[[targets]]
name = "default"
url = "https://b.example/hook"
`)
	require.NoError(t, err)
	require.False(t, c.Delivery.DenyPrivateNetworks, "off by default")
	require.True(t, c.Targets[0].DenyPrivateNetworks)
	require.False(t, c.Targets[1].DenyPrivateNetworks)

	_, err = parseString(t, "[delivery]\ndeny_private_networks = \"yes please\"\n")
	var verr *ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, "delivery.deny_private_networks", verr.Key)
}

func TestEffectiveTargetValues(t *testing.T) {
	d := Default().Delivery
	tests := []struct {
		name         string
		target       Target
		wantTimeout  time.Duration
		wantAttempts int
	}{
		{"zero inherits", Target{}, d.Timeout.Duration, d.MaxAttempts},
		{"set overrides", Target{Timeout: D(3 * time.Second), MaxAttempts: 2}, 3 * time.Second, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.wantTimeout, tt.target.EffectiveTimeout(d))
			require.Equal(t, tt.wantAttempts, tt.target.EffectiveMaxAttempts(d))
		})
	}
}

func TestDurationText(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{500 * time.Millisecond, "500ms"},
		{30 * time.Second, "30s"},
		{5 * time.Minute, "5m"},
		{90 * time.Second, "1m30s"},
		{2 * time.Hour, "2h"},
		{2160 * time.Hour, "2160h"},
		{time.Hour + 30*time.Minute, "1h30m"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{-2 * time.Hour, "-2h"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			b, err := D(tt.d).MarshalText()
			require.NoError(t, err)
			require.Equal(t, tt.want, string(b))
			var back Duration
			require.NoError(t, back.UnmarshalText(b))
			require.Equal(t, tt.d, back.Duration)
		})
	}
}

// secretConfig sets every secret to a distinct, recognisable value.
func secretConfig() Config {
	c := Default()
	c.Server.WebhookSecret = "SECRET-webhook-1"
	c.Server.AdminToken = "SECRET-admin-token-2"
	c.Server.MetricsToken = "SECRET-metrics-token-12"
	c.WAMM.Token = "SECRET-wamm-3"
	c.Store = Store{Driver: DriverPostgres, DSN: "postgres://relay:SECRET-pg-4@db:5432/relay?sslmode=disable"}
	c.Targets = []Target{{
		Name:          "crm",
		URL:           "https://hook:SECRET-userinfo-5@crm.example/hook?api_key=SECRET-query-6&tenant=7",
		Headers:       map[string]string{"Authorization": "Bearer SECRET-header-7", "X-Other": "SECRET-header-8"},
		SigningSecret: "whsec_U0VDUkVULXNpZ25pbmctOS1TRUNSRVQtc2lnbmluZy05",
		Events:        []string{EventMsg},
		Timeout:       D(time.Second),
		MaxAttempts:   3,
	}}
	c.Tracing = Tracing{
		Enabled: true, Endpoint: "https://otel:SECRET-otel-10@otel.example", SampleRatio: 0.5,
		ServiceName: "wamm-relay", Headers: map[string]string{"X-Api-Key": "SECRET-otel-11"},
	}
	return c
}

func TestMaskedHidesEverySecret(t *testing.T) {
	c := secretConfig()
	require.NoError(t, c.Validate())
	orig := secretConfig()

	var buf bytes.Buffer
	require.NoError(t, c.Masked().WriteTOML(&buf))
	out := buf.String()
	require.NotContains(t, out, "SECRET")
	require.NotContains(t, out, "U0VDUkVU")
	require.Contains(t, out, `webhook_secret = "****"`)
	require.Contains(t, out, `postgres://relay:****@db:5432/relay?sslmode=disable`)
	require.Contains(t, out, `https://hook:****@crm.example/hook?api_key=****&tenant=7`)
	require.Contains(t, out, `Authorization = "****"`)
	require.Contains(t, out, `X-Api-Key = "****"`)

	require.Equal(t, orig, c, "Masked must not modify the original (maps and slices are copied)")

	// Empty secrets stay empty, so the output still says "not set".
	require.Equal(t, Default(), Default().Masked())
}

func TestMaskDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"data/relay.db", "data/relay.db"},
		{"file:relay.db?_pragma=busy_timeout(5000)", "file:relay.db?_pragma=busy_timeout(5000)"},
		{"postgres://u:pw@h/db", "postgres://u:****@h/db"},
		{"postgres://u@h/db?password=pw&sslmode=require", "postgres://u@h/db?password=****&sslmode=require"},
		{"postgresql://h/db", "postgresql://h/db"},
		{"host=h password=pw dbname=d", "host=h password=**** dbname=d"},
		{"host=h password = 'p w\\' x' dbname=d", "host=h password = **** dbname=d"},
		{"postgres://u:pw@h:bad port/db", "****"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, maskDSN(tt.in))
		})
	}
}

func roundTrip(t *testing.T, c Config) Config {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, c.WriteTOML(&buf))
	back, err := ParseWith(&buf, nil)
	require.NoError(t, err, "WriteTOML output must parse:\n%s", buf.String())
	return back
}

func TestWriteTOMLRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "good", "*.toml"))
	require.NoError(t, err)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := parseFile(t, f)
			require.NoError(t, err)
			require.Equal(t, c, roundTrip(t, c))
		})
	}
	t.Run("secrets", func(t *testing.T) {
		c := secretConfig()
		require.Equal(t, c, roundTrip(t, c))
	})
}

func TestWriteTOMLFormat(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, Default().WriteTOML(&buf))
	out := buf.String()
	require.Contains(t, out, "[server]\nlisten = \":8080\"\n")
	require.Contains(t, out, `retention = "2160h"`)
	require.Contains(t, out, `backoff_max = "2h"`)
	require.Contains(t, out, `shutdown_timeout = "15s"`)
}

func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "config.toml"))
	require.NoError(t, err)

	// WAMM_TOKEN unset: still valid, with no token.
	c, err := ParseWith(bytes.NewReader(data), nil)
	require.NoError(t, err)
	require.Empty(t, c.WAMM.Token)
	require.True(t, c.Reconcile.Enabled)
	require.Equal(t, ":8080", c.Server.Listen)
	require.Equal(t, "data/relay.db", c.Store.DSN)
	require.Len(t, c.Targets, 1)
	require.Equal(t, "http://127.0.0.1:9001/hook", c.Targets[0].URL)
	require.Equal(t, 5*time.Second, c.Targets[0].Timeout.Duration)
	require.Equal(t, 25, c.Targets[0].MaxAttempts)

	// Apart from its target, the example states the defaults.
	c.Targets = nil
	require.Equal(t, Default(), c)

	c, err = ParseWith(bytes.NewReader(data), lookup(map[string]string{"WAMM_TOKEN": "tok"}))
	require.NoError(t, err)
	require.Equal(t, "tok", c.WAMM.Token)

	// The example documents every key (headers is shown commented out).
	full := secretConfig()
	full.Targets[0].CAFile = "ca.pem"
	var buf bytes.Buffer
	require.NoError(t, full.WriteTOML(&buf))
	var all, example map[string]any
	allMD, err := toml.Decode(buf.String(), &all)
	require.NoError(t, err)
	exampleMD, err := toml.Decode(string(data), &example)
	require.NoError(t, err)
	documented := make(map[string]bool)
	for _, k := range exampleMD.Keys() {
		documented[k.String()] = true
	}
	for _, k := range allMD.Keys() {
		if len(k) >= 2 && k[0] == "targets" && k[1] == "headers" {
			require.Contains(t, string(data), "# headers = ")
			continue
		}
		if len(k) == 2 && k[0] == "targets" && slices.Contains([]string{"rate_limit", "rate_burst", "breaker_failures", "breaker_cooldown", "deny_private_networks"}, k[1]) {
			// Set on a target, these override [delivery] even when 0 or false, so
			// the example shows them commented out.
			require.Contains(t, string(data), "# "+k[1]+" = ")
			continue
		}
		if len(k) >= 2 && k[0] == "tracing" && k[1] == "headers" {
			require.Contains(t, string(data), "# headers = { \"X-Api-Key\"")
			continue
		}
		require.True(t, documented[k.String()], "config.toml does not show %s", k)
	}
}

func TestLoad(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		c, err := Load(filepath.Join("testdata", "good", "minimal.toml"))
		require.NoError(t, err)
		require.Equal(t, Default(), c)
	})
	t.Run("missing file names the path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.toml")
		_, err := Load(path)
		require.ErrorIs(t, err, os.ErrNotExist)
		require.ErrorContains(t, err, path)
	})
	t.Run("invalid file names the path and the key", func(t *testing.T) {
		path := filepath.Join("testdata", "bad", "log_level.toml")
		_, err := Load(path)
		require.ErrorIs(t, err, ErrInvalid)
		require.ErrorContains(t, err, path)
		require.ErrorContains(t, err, "log.level")
	})

	caTests := []struct {
		name    string
		caFile  string
		wantErr bool
	}{
		{"ca_file with a certificate", filepath.Join("testdata", "ca.pem"), false},
		{"ca_file missing", filepath.Join("testdata", "missing.pem"), true},
		{"ca_file without certificates", filepath.Join("testdata", "not-a-ca.pem"), true},
	}
	for _, tt := range caTests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.toml")
			doc := "[[targets]]\nname = \"a\"\nurl = \"https://x/a\"\nca_file = \"" + filepath.ToSlash(tt.caFile) + "\"\n"
			require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
			c, err := Load(path)
			if !tt.wantErr {
				require.NoError(t, err)
				pool, err := c.Targets[0].RootCAs()
				require.NoError(t, err)
				require.NotNil(t, pool)
				return
			}
			require.ErrorIs(t, err, ErrInvalid)
			errs := validationErrors(err)
			require.Len(t, errs, 1)
			require.Equal(t, "targets[0].ca_file", errs[0].Key)
		})
	}

	t.Run("no ca_file means system roots", func(t *testing.T) {
		pool, err := Target{}.RootCAs()
		require.NoError(t, err)
		require.Nil(t, pool)
	})
}

func TestResolvePath(t *testing.T) {
	tests := []struct {
		name, flag, env, want string
	}{
		{"flag wins", "/etc/relay.toml", "/env.toml", "/etc/relay.toml"},
		{"then the environment", "", "/env.toml", "/env.toml"},
		{"then ./config.toml", "", "", "config.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolvePath(tt.flag, func(name string) string {
				require.Equal(t, EnvConfigPath, name)
				return tt.env
			})
			require.Equal(t, tt.want, got)
		})
	}
}

func TestMetricsListenMustDifferFromListen(t *testing.T) {
	for _, tt := range []struct {
		listen, metrics string
		clash           bool
	}{
		{":8080", ":8080", true},
		{":8080", "127.0.0.1:8080", true}, // the wildcard already holds the port
		{"127.0.0.1:8080", "0.0.0.0:8080", true},
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"127.0.0.1:8080", "10.0.0.1:8080", false},
		{":8080", ":9100", false},
		{"127.0.0.1:0", "127.0.0.1:0", false}, // each picks its own free port
	} {
		t.Run(tt.listen+" "+tt.metrics, func(t *testing.T) {
			c := Default()
			c.Server.Listen, c.Server.MetricsListen = tt.listen, tt.metrics
			err := c.Validate()
			if !tt.clash {
				require.NoError(t, err)
				return
			}
			errs := validationErrors(err)
			require.Len(t, errs, 1, "%v", err)
			require.Equal(t, "server.metrics_listen", errs[0].Key)
			require.ErrorContains(t, err, "must differ from server.listen")
		})
	}
}
