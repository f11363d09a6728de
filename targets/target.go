package targets

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
)

// Target is one HTTP endpoint that receives events.
type Target struct {
	// Name is unique; it labels metrics, logs and store rows.
	Name string
	// URL is the absolute http or https endpoint events are POSTed to.
	URL string
	// Headers are added to every request. Their values are secrets as far as
	// the relay is concerned: they are never logged.
	Headers map[string]string
	// SigningSecret is a Standard Webhooks secret ("whsec_<base64>"); when
	// set, every attempt is signed. Empty disables signing.
	SigningSecret string
	// Events lists the kinds the target receives; empty means every kind,
	// including raw events.
	Events []event.Kind
	// Channels lists the WAMM channels the target receives; empty means
	// every channel.
	Channels []string
	// Timeout bounds one attempt (connect, request, response headers and the
	// capped body read). Must be > 0.
	Timeout time.Duration
	// MaxAttempts is how many attempts a delivery gets before it is dead.
	// Must be > 0.
	MaxAttempts int
	// RateLimit caps the attempts per second this instance starts for the
	// target (0: no limit), with bursts of RateBurst (0: the rate, rounded
	// up, at least 1).
	RateLimit float64
	RateBurst int
	// BreakerFailures opens the target's circuit breaker after that many
	// consecutive failed attempts (0: no breaker); it stays open for
	// BreakerCooldown, then one probe decides.
	BreakerFailures int
	BreakerCooldown time.Duration
	// CAFile optionally names a PEM file of CAs trusted in addition to the
	// system roots. TLS verification is always on.
	CAFile string
	// DenyPrivateNetworks refuses to connect to loopback, private,
	// link-local (cloud metadata included), unspecified and CGNAT
	// addresses. The check is on the address dialed, after DNS resolution,
	// so rebinding a public name to a private address does not get past
	// it. A refused attempt is dead at once (see Classify).
	DenyPrivateNetworks bool
}

// String describes the target without its headers or signing secret, so a
// Target that ends up in a log line or error leaks nothing.
func (t Target) String() string { return "target " + t.Name }

// GoString is String, for %#v.
func (t Target) GoString() string { return t.String() }

// wants reports whether the target receives events of kind k.
func (t Target) wants(k event.Kind) bool {
	return len(t.Events) == 0 || slices.Contains(t.Events, k)
}

// knownKinds are the kinds Match precomputes; any other kind is matched by
// the targets that filter nothing or list it explicitly.
var knownKinds = []event.Kind{event.KindMsg, event.KindMsgState, event.KindRaw}

// reservedHeaders are set by the relay on every request; a target may not
// override them because receivers rely on their meaning.
var reservedHeaders = []string{
	"content-type", "content-length", "transfer-encoding", "host", "connection",
	"webhook-id", "webhook-timestamp", "webhook-signature",
	"x-wamm-relay-source", "x-wamm-relay-attempt", "x-wamm-channel",
}

// Table decides which targets receive which events. It is immutable after
// NewTable and safe for concurrent use.
type Table struct {
	targets []Target
	names   []string
	byKind  map[event.Kind][]string
	// unfiltered are the targets with no Events filter: the match for a
	// kind nobody lists.
	unfiltered []string
	// channels holds the channel filter of each target that has one; with
	// none, Match needs no per-channel step.
	channels map[string][]string
}

// NewTable validates the targets and precomputes the match for every kind.
// Errors name the target and field and never include header values or the
// signing secret. An empty list is valid: events are then stored (and
// deduplicated) but delivered nowhere.
func NewTable(ts []Target) (*Table, error) {
	t := &Table{byKind: make(map[event.Kind][]string)}
	seen := make(map[string]bool, len(ts))
	for i, tg := range ts {
		if err := validateTarget(tg); err != nil {
			return nil, fmt.Errorf("targets[%d]: %w", i, err)
		}
		if seen[tg.Name] {
			return nil, fmt.Errorf("targets[%d]: name %q: duplicate", i, tg.Name)
		}
		seen[tg.Name] = true
		tg.Headers = maps.Clone(tg.Headers)
		tg.Events = slices.Clone(tg.Events)
		tg.Channels = slices.Clone(tg.Channels)
		if len(tg.Channels) > 0 {
			if t.channels == nil {
				t.channels = map[string][]string{}
			}
			t.channels[tg.Name] = tg.Channels
		}
		t.targets = append(t.targets, tg)
		t.names = append(t.names, tg.Name)
		if len(tg.Events) == 0 {
			t.unfiltered = append(t.unfiltered, tg.Name)
		}
	}
	kinds := slices.Clone(knownKinds)
	for _, tg := range t.targets {
		for _, k := range tg.Events {
			if !slices.Contains(kinds, k) {
				kinds = append(kinds, k)
			}
		}
	}
	for _, k := range kinds {
		var names []string
		for _, tg := range t.targets {
			if tg.wants(k) {
				names = append(names, tg.Name)
			}
		}
		t.byKind[k] = names
	}
	return t, nil
}

// Match returns the names of the targets that receive events of kind k from
// channel ("" is event.DefaultChannel), in configuration order; nil when
// none does. The result is the caller's.
func (t *Table) Match(k event.Kind, channel string) []string {
	names, ok := t.byKind[k]
	if !ok {
		names = t.unfiltered
	}
	if t.channels == nil {
		return slices.Clone(names)
	}
	if channel == "" {
		channel = event.DefaultChannel
	}
	var out []string
	for _, n := range names {
		if chans, filtered := t.channels[n]; !filtered || slices.Contains(chans, channel) {
			out = append(out, n)
		}
	}
	return out
}

// Names returns every target name in configuration order.
func (t *Table) Names() []string { return slices.Clone(t.names) }

// Targets returns a copy of the validated targets in configuration order.
func (t *Table) Targets() []Target {
	out := make([]Target, len(t.targets))
	for i, tg := range t.targets {
		tg.Headers = maps.Clone(tg.Headers)
		tg.Events = slices.Clone(tg.Events)
		tg.Channels = slices.Clone(tg.Channels)
		out[i] = tg
	}
	return out
}

func validateTarget(t Target) error {
	if strings.TrimSpace(t.Name) == "" {
		return errors.New("name: must not be empty")
	}
	if strings.ContainsFunc(t.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("name %q: must not contain control characters", t.Name)
	}
	if err := validateURL(t.URL); err != nil {
		return fmt.Errorf("target %q: url: %w", t.Name, err)
	}
	if t.Timeout <= 0 {
		return fmt.Errorf("target %q: timeout: must be > 0", t.Name)
	}
	if t.MaxAttempts <= 0 {
		return fmt.Errorf("target %q: max_attempts: must be > 0", t.Name)
	}
	if t.RateLimit < 0 || t.RateBurst < 0 || t.BreakerFailures < 0 || t.BreakerCooldown < 0 {
		return fmt.Errorf("target %q: rate_limit, rate_burst, breaker_failures and breaker_cooldown must not be negative", t.Name)
	}
	if t.BreakerFailures > 0 && t.BreakerCooldown <= 0 {
		return fmt.Errorf("target %q: breaker_cooldown: must be > 0 with breaker_failures", t.Name)
	}
	for _, k := range t.Events {
		if !slices.Contains(knownKinds, k) {
			return fmt.Errorf("target %q: events: unknown kind %q (want msg, msg_state or raw)", t.Name, k)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.Headers)) {
		value := t.Headers[name]
		if !validHeaderName(name) {
			return fmt.Errorf("target %q: headers: invalid header name %q", t.Name, name)
		}
		if slices.Contains(reservedHeaders, strings.ToLower(name)) {
			return fmt.Errorf("target %q: headers: %q is set by the relay and may not be configured", t.Name, name)
		}
		// The value is a secret: say what is wrong without quoting it.
		if strings.ContainsAny(value, "\r\n\x00") {
			return fmt.Errorf("target %q: headers: value of %q contains a line break or NUL", t.Name, name)
		}
	}
	if t.SigningSecret != "" {
		if _, err := NewSigner(t.SigningSecret); err != nil {
			return fmt.Errorf("target %q: signing_secret: %w", t.Name, err)
		}
	}
	return nil
}

func validateURL(raw string) error {
	if raw == "" {
		return errors.New("must not be empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL, which may carry a credential.
		return errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("host must not be empty")
	}
	return nil
}

// validHeaderName reports whether s is an RFC 7230 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
