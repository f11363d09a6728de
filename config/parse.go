package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// EnvConfigPath names the environment variable ResolvePath consults.
const EnvConfigPath = "WAMM_RELAY_CONFIG"

// DefaultPath is the configuration file used when neither the flag nor
// $WAMM_RELAY_CONFIG names one.
const DefaultPath = "config.toml"

// ResolvePath picks the configuration file: the -config flag value if set,
// else $WAMM_RELAY_CONFIG, else ./config.toml.
func ResolvePath(flagValue string) string {
	return resolvePath(flagValue, os.Getenv)
}

func resolvePath(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if p := getenv(EnvConfigPath); p != "" {
		return p
	}
	return DefaultPath
}

// Load reads the file at path and parses it with the process environment
// (see Parse), then checks that each target's ca_file holds certificates.
// Every error names the path.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	cfg, err := Parse(f)
	if err == nil {
		err = cfg.CheckFiles()
	}
	if err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a TOML configuration, expanding ${NAME} from the process
// environment. See ParseWith.
func Parse(r io.Reader) (Config, error) {
	return ParseWith(r, os.LookupEnv)
}

// ParseWith reads a TOML configuration. It starts from Default, decodes r
// strictly (a key Config does not know is a *ValidationError wrapping
// ErrUnknownKey), replaces every ${NAME} in a quoted value with
// lookupEnv(NAME) (an unset variable gives ""; a nil lookupEnv means none is
// set), fills each target's zero timeout and max_attempts from [delivery], and
// returns the result of Validate. Only the ${NAME} form is expanded: "$NAME"
// and "$$" stay as written, so secrets may contain "$".
//
// Integer and boolean keys may be written bare (workers = 16) or quoted
// (workers = "${WORKERS}"); a quoted one is expanded and then parsed with
// strconv, and one that does not parse is a *ValidationError naming the key.
//
// Expansion runs on decoded values, never on the TOML text, so a variable
// holding quotes or newlines cannot change the file's structure.
func ParseWith(r io.Reader, lookupEnv func(string) (string, bool)) (Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	raw := newRaw(Default())
	md, err := toml.Decode(string(data), raw.Interface())
	if err != nil {
		return Config{}, fmt.Errorf("decode config: %w", rawTypeNames(err))
	}
	if err := unknownKeys(md, string(data)); err != nil {
		return Config{}, err
	}
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	var cfg Config
	var p problems
	resolve(&p, reflect.ValueOf(&cfg).Elem(), raw.Elem(), "", lookupEnv)
	if err := p.err(); err != nil {
		return Config{}, err
	}
	if err := inheritChannels(&cfg, string(data)); err != nil {
		return Config{}, err
	}
	if err := inheritTargets(&cfg, string(data)); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// inheritChannels fills what each [[wamm.channels]] entry leaves out from
// [wamm] and [reconcile]. Whether a boolean was set cannot be told from its
// decoded value, so the document is read once more as plain tables.
func inheritChannels(cfg *Config, doc string) error {
	if len(cfg.WAMM.Channels) == 0 {
		return nil
	}
	var raw struct {
		WAMM struct {
			Channels []map[string]any `toml:"channels"`
		} `toml:"wamm"`
	}
	if _, err := toml.Decode(doc, &raw); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	for i := range cfg.WAMM.Channels {
		ch := &cfg.WAMM.Channels[i]
		var set map[string]any
		if i < len(raw.WAMM.Channels) {
			set, _ = raw.WAMM.Channels[i]["reconcile"].(map[string]any)
		}
		has := func(k string) bool { _, ok := set[k]; return ok }
		if ch.APIURL == "" {
			ch.APIURL = cfg.WAMM.APIURL
		}
		if ch.Timeout.Duration == 0 {
			ch.Timeout = cfg.WAMM.Timeout
		}
		r, def := &ch.Reconcile, cfg.Reconcile
		if !has("enabled") {
			r.Enabled = def.Enabled
		}
		if !has("backfill_on_start") {
			r.BackfillOnStart = def.BackfillOnStart
		}
		if !has("interval") {
			r.Interval = def.Interval
		}
		if !has("grace") {
			r.Grace = def.Grace
		}
		if !has("backoff_max") {
			r.BackoffMax = D(max(def.BackoffMax.Duration, r.Interval.Duration))
		}
	}
	return nil
}

// inheritTargets fills what each [[targets]] entry leaves out from
// [delivery]. For the keys where 0 or false is a setting of its own
// (rate_limit = 0 is "no limit" even when [delivery] has one;
// deny_private_networks = false lets one target reach a private address
// when [delivery] denies them), whether the file set the key
// is read from the document as plain tables, as inheritChannels does.
func inheritTargets(cfg *Config, doc string) error {
	if len(cfg.Targets) == 0 {
		return nil
	}
	var raw struct {
		Targets []map[string]any `toml:"targets"`
	}
	if _, err := toml.Decode(doc, &raw); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	d := cfg.Delivery
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		var set map[string]any
		if i < len(raw.Targets) {
			set = raw.Targets[i]
		}
		has := func(k string) bool { _, ok := set[k]; return ok }
		if t.Timeout.Duration == 0 {
			t.Timeout = d.Timeout
		}
		if t.MaxAttempts == 0 {
			t.MaxAttempts = d.MaxAttempts
		}
		if !has("rate_limit") {
			t.RateLimit = d.RateLimit
		}
		if !has("rate_burst") {
			t.RateBurst = d.RateBurst
		}
		if !has("breaker_failures") {
			t.BreakerFailures = d.BreakerFailures
		}
		if !has("breaker_cooldown") {
			t.BreakerCooldown = d.BreakerCooldown
		}
		if !has("deny_private_networks") {
			t.DenyPrivateNetworks = d.DenyPrivateNetworks
		}
	}
	return nil
}

// unknownKeys reports each key of the document that Config has no field for.
// Only the outermost one of a mistake is named ("zzz", not also "zzz.q"), and a
// key inside [[targets]] names its element ("targets[1].nme"), which the
// decoder's metadata does not.
func unknownKeys(md toml.MetaData, doc string) error {
	undecoded := md.Undecoded()
	if len(undecoded) == 0 {
		return nil
	}
	isUndecoded := make(map[string]bool, len(undecoded))
	for _, k := range undecoded {
		isUndecoded[k.String()] = true
	}
	var raw struct {
		Targets []map[string]any `toml:"targets"`
	}
	// The document decoded once already, so this cannot fail in a way that
	// matters: on error raw.Targets stays empty and keys go unindexed.
	_, _ = toml.Decode(doc, &raw)

	var p problems
	reported := make(map[string]bool)
	report := func(key string) {
		if !reported[key] {
			reported[key] = true
			p.add(key, "", ErrUnknownKey, "")
		}
	}
outer:
	for _, k := range undecoded {
		for i := 1; i < len(k); i++ {
			if isUndecoded[k[:i].String()] {
				continue outer
			}
		}
		if k[0] != "targets" || len(k) < 2 {
			report(k.String())
			continue
		}
		rest := k[1:]
		found := false
		for i, t := range raw.Targets {
			if hasPath(t, rest) {
				report(fmt.Sprintf("targets[%d].%s", i, rest.String()))
				found = true
			}
		}
		if !found {
			report(k.String())
		}
	}
	return p.err()
}

func hasPath(m map[string]any, key toml.Key) bool {
	v, ok := m[key[0]]
	if !ok {
		return false
	}
	if len(key) == 1 {
		return true
	}
	sub, ok := v.(map[string]any)
	return ok && hasPath(sub, key[1:])
}

// refRe is the one reference form expanded: ${NAME}.
var refRe = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*\}`)

func hasRef(s string) bool { return refRe.MatchString(s) }

func expandString(s string, lookupEnv func(string) (string, bool)) string {
	if !strings.Contains(s, "${") {
		return s
	}
	return refRe.ReplaceAllStringFunc(s, func(ref string) string {
		v, _ := lookupEnv(ref[2 : len(ref)-1])
		return v
	})
}

var durationType = reflect.TypeFor[Duration]()

// expandValue expands every string reachable from v: fields, slice elements
// and map values, plus Durations that were left unparsed because they held a
// reference. key is v's TOML key, for errors.
func expandValue(p *problems, v reflect.Value, key string, lookupEnv func(string) (string, bool)) {
	if v.Type() == durationType {
		d := v.Addr().Interface().(*Duration)
		if d.expr == "" {
			return
		}
		s := expandString(d.expr, lookupEnv)
		parsed, err := time.ParseDuration(s)
		if err != nil {
			p.add(key, s, ErrInvalid, "after expanding %s: not a Go duration such as \"30s\" or \"2h\"", d.expr)
			return
		}
		*d = D(parsed)
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(expandString(v.String(), lookupEnv))
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() {
				expandValue(p, v.Field(i), fieldKey(key, f), lookupEnv)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			expandValue(p, v.Index(i), fmt.Sprintf("%s[%d]", key, i), lookupEnv)
		}
	case reflect.Map:
		if v.Type().Elem().Kind() != reflect.String {
			return
		}
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			v.SetMapIndex(k, reflect.ValueOf(expandString(e.String(), lookupEnv)).Convert(e.Type()))
		}
	}
}

// fieldKey is the TOML key of field f of the table at key.
func fieldKey(key string, f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if key == "" {
		return name
	}
	return key + "." + name
}

// CheckFiles verifies the files the configuration names: each target's
// ca_file must be readable and hold at least one PEM certificate. Load calls
// it; Validate does not, so that Parse stays free of I/O.
func (c Config) CheckFiles() error {
	var errs []error
	for i, t := range c.Targets {
		if t.CAFile == "" {
			continue
		}
		if _, err := t.RootCAs(); err != nil {
			errs = append(errs, &ValidationError{
				Key: fmt.Sprintf("targets[%d].ca_file", i), Value: t.CAFile, Err: err,
			})
		}
	}
	return errors.Join(errs...)
}

// RootCAs returns the pool a target's TLS connections should trust: nil (the
// system roots) when ca_file is empty, otherwise the system roots plus the
// certificates in ca_file. Its errors wrap ErrInvalid.
func (t Target) RootCAs() (*x509.CertPool, error) {
	if t.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, newProblem(ErrInvalid, "read CA file: %v", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, newProblem(ErrInvalid, "holds no PEM certificate")
	}
	return pool, nil
}
