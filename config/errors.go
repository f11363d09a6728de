package config

import (
	"errors"
	"fmt"
)

// Sentinel errors a ValidationError wraps; check them with errors.Is.
var (
	ErrRequired   = errors.New("required")
	ErrInvalid    = errors.New("invalid")
	ErrOutOfRange = errors.New("out of range")
	ErrDuplicate  = errors.New("duplicate")
	ErrUnknownKey = errors.New("unknown key")
)

// ValidationError reports one bad configuration value. Key is the TOML key
// ("server.listen", "targets[1].url"); Value is the offending value as text,
// "****" for a secret and "" when there is none to show. Err explains the
// problem and wraps one of the sentinel errors.
type ValidationError struct {
	Key   string
	Value string
	Err   error
}

// Error reads `config: KEY = "VALUE": PROBLEM`, or `config: KEY: PROBLEM`
// when there is no value to show.
func (e *ValidationError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("config: %s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("config: %s = %q: %v", e.Key, e.Value, e.Err)
}

// Unwrap returns Err, so errors.Is finds the sentinel it wraps.
func (e *ValidationError) Unwrap() error { return e.Err }

// problem is a ValidationError.Err: it reads as its message ("must be
// positive") and unwraps to its sentinel (ErrOutOfRange).
type problem struct {
	kind error
	msg  string
}

func (p *problem) Error() string { return p.msg }
func (p *problem) Unwrap() error { return p.kind }

func newProblem(kind error, format string, args ...any) error {
	if format == "" {
		return kind
	}
	return &problem{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// problems collects every ValidationError of one pass, so an operator fixes
// the whole file in one go rather than one key per run.
type problems struct {
	errs []error
}

func (p *problems) add(key, value string, kind error, format string, args ...any) {
	p.errs = append(p.errs, &ValidationError{Key: key, Value: value, Err: newProblem(kind, format, args...)})
}

func (p *problems) err() error {
	return errors.Join(p.errs...)
}
