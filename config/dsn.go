package config

import (
	"errors"
	"strings"
)

func isPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// kvSpan is one keyword=value pair of a libpq connection string; start and end
// delimit the value in the string, quotes included.
type kvSpan struct {
	key        string
	start, end int
}

// parseKeyValueDSN splits a libpq key=value connection string
// ("host=db user=relay password='a b'"). Its errors never quote the input,
// which may hold a password.
func parseKeyValueDSN(s string) ([]kvSpan, error) {
	var out []kvSpan
	i := 0
	skipSpace := func() {
		for i < len(s) && isDSNSpace(s[i]) {
			i++
		}
	}
	for {
		skipSpace()
		if i == len(s) {
			break
		}
		keyStart := i
		for i < len(s) && s[i] != '=' && !isDSNSpace(s[i]) {
			i++
		}
		key := s[keyStart:i]
		skipSpace()
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, errors.New("expected key=value pairs")
		}
		i++ // the '='
		skipSpace()
		valStart := i
		if i < len(s) && s[i] == '\'' {
			i++
			for {
				if i >= len(s) {
					return nil, errors.New("unterminated quoted value")
				}
				if s[i] == '\\' {
					i += 2
					continue
				}
				i++
				if s[i-1] == '\'' {
					break
				}
			}
		} else {
			for i < len(s) && !isDSNSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			i = min(i, len(s))
		}
		out = append(out, kvSpan{key: key, start: valStart, end: i})
	}
	if len(out) == 0 {
		return nil, errors.New("empty connection string")
	}
	return out, nil
}

func isDSNSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}
