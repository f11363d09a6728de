package config

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Masked returns a deep copy of c safe to print: webhook_secret, admin_token,
// metrics_token, wamm.token, every target's signing_secret and header values, and
// tracing.headers values become "****"
// where set, and passwords in store.dsn and in URLs (user info, and query
// parameters named like password, secret, token or key) are replaced too.
func (c Config) Masked() Config {
	m := c
	m.Server.WebhookSecret = mask(c.Server.WebhookSecret)
	m.Server.AdminToken = mask(c.Server.AdminToken)
	m.Server.MetricsToken = mask(c.Server.MetricsToken)
	m.Server.TrustedProxies = slices.Clone(c.Server.TrustedProxies)
	m.WAMM.Token = mask(c.WAMM.Token)
	m.WAMM.APIURL = maskURL(c.WAMM.APIURL)
	m.Server.PublicURL = maskURL(c.Server.PublicURL)
	m.Store.DSN = maskDSN(c.Store.DSN)
	if c.WAMM.Channels != nil {
		m.WAMM.Channels = make([]Channel, len(c.WAMM.Channels))
		for i, ch := range c.WAMM.Channels {
			ch.Token = mask(ch.Token)
			ch.WebhookSecret = mask(ch.WebhookSecret)
			ch.APIURL = maskURL(ch.APIURL)
			m.WAMM.Channels[i] = ch
		}
	}
	m.Tracing.Endpoint = maskURL(c.Tracing.Endpoint)
	if c.Tracing.Headers != nil {
		h := make(map[string]string, len(c.Tracing.Headers))
		for k, v := range c.Tracing.Headers {
			h[k] = mask(v)
		}
		m.Tracing.Headers = h
	}
	if c.Targets != nil {
		m.Targets = make([]Target, len(c.Targets))
		for i, t := range c.Targets {
			t.URL = maskURL(t.URL)
			t.SigningSecret = mask(t.SigningSecret)
			t.Events = slices.Clone(t.Events)
			t.Channels = slices.Clone(t.Channels)
			if t.Headers != nil {
				h := make(map[string]string, len(t.Headers))
				for k, v := range t.Headers {
					h[k] = mask(v)
				}
				t.Headers = h
			}
			m.Targets[i] = t
		}
	}
	return m
}

// WriteTOML writes c as a TOML document that Parse reads back to the same
// Config (as long as no string holds a literal ${NAME}, which Parse would
// expand). Call it on Masked() before showing it to anyone.
func (c Config) WriteTOML(w io.Writer) error {
	enc := toml.NewEncoder(w)
	enc.Indent = ""
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	return nil
}

func mask(s string) string {
	if s == "" {
		return ""
	}
	return masked
}

// maskURL hides the password of the user info and the values of query
// parameters that look like credentials. A string that does not parse is
// hidden entirely if it could carry either.
func maskURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.ContainsAny(s, "@?") {
			return masked
		}
		return s
	}
	hidePassword := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.User(u.User.Username())
			hidePassword = true
		}
	}
	queryChanged := false
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, part := range parts {
			name, value, _ := strings.Cut(part, "=")
			if value == "" {
				continue
			}
			if unescaped, err := url.QueryUnescape(name); err == nil {
				name = unescaped
			}
			if isSecretParam(name) {
				parts[i] = url.QueryEscape(name) + "=" + masked
				queryChanged = true
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if !hidePassword && !queryChanged {
		return s
	}
	out := u.String()
	if hidePassword {
		// Added by hand: url.UserPassword would percent-encode the asterisks.
		// The first "@" ends the user info, whose own "@"s are escaped.
		at := strings.Index(out, "@")
		out = out[:at] + ":" + masked + out[at:]
	}
	return out
}

func isSecretParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"pass", "pwd", "secret", "token", "key", "sig", "auth", "credential"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// maskDSN hides the password of a postgres URL or key=value connection
// string; a SQLite path comes back unchanged.
func maskDSN(dsn string) string {
	if isPostgresURL(dsn) {
		return maskURL(dsn)
	}
	spans, err := parseKeyValueDSN(dsn)
	if err != nil {
		return dsn
	}
	out := dsn
	for _, sp := range slices.Backward(spans) {
		if isSecretParam(sp.key) && sp.end > sp.start {
			out = out[:sp.start] + masked + out[sp.end:]
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// tomlKeyPiece writes one piece of a dotted key the way TOML would: bare
// when it can be, quoted otherwise.
func tomlKeyPiece(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) {
		return s
	}
	return strconv.Quote(s)
}
