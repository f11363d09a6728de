package relay

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/internal/logx"
)

const redacted = "REDACTED"

// accessLog writes one debug line per request with the secret taken out of
// path and query; it replaces gin.Logger, which would print both verbatim.
func (s *Server) accessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		if !logx.DebugEnabled(s.log) {
			return
		}
		fields := logrus.Fields{
			"method":      c.Request.Method,
			"path":        s.redactPath(c.Request.URL.Path),
			"status":      c.Writer.Status(),
			"duration_ms": float64(time.Since(start).Microseconds()) / 1000,
			"client_ip":   c.ClientIP(),
			"bytes_out":   c.Writer.Size(),
		}
		if q := c.Request.URL.RawQuery; q != "" {
			fields["query"] = s.redactQuery(q)
		}
		s.log.WithFields(fields).Debug("http.request")
	}
}

// recovery turns a handler panic into a 500 and an error line. gin's own
// Recovery dumps the request, whose first line carries the webhook secret.
func (s *Server) recovery() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if err, ok := r.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(r) // net/http's deliberate abort; let it through
			}
			s.log.WithFields(logrus.Fields{
				"method": c.Request.Method,
				"path":   s.redactPath(c.Request.URL.Path),
				"panic":  s.redactLiteral(fmt.Sprint(r)),
				"stack":  s.redactLiteral(string(debug.Stack())),
			}).Error("http handler panicked")
			if c.Writer.Written() {
				c.Abort()
				return
			}
			c.AbortWithStatusJSON(http.StatusInternalServerError, errorBody("internal error"))
		}()
		c.Next()
	}
}

// redactPath hides everything below the webhook path (where the secret
// sits, even on a mistyped URL), then any literal copy of the secret.
func (s *Server) redactPath(p string) string {
	if prefix := s.opts.WebhookPath + "/"; strings.HasPrefix(p, prefix) {
		p = prefix + redacted
	}
	return s.redactLiteral(p)
}

// redactQuery hides every secret= value; a query that does not parse is
// hidden whole, since we cannot tell where the secret is in it.
func (s *Server) redactQuery(raw string) string {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return redacted
	}
	for k := range q {
		if strings.EqualFold(k, "secret") {
			q[k] = []string{redacted}
		}
	}
	return s.redactLiteral(q.Encode())
}

// redactLiteral replaces the webhook secret and the admin token, raw or
// URL-escaped, wherever they appear.
func (s *Server) redactLiteral(v string) string {
	for _, secret := range s.secrets {
		if secret == "" {
			continue
		}
		v = strings.ReplaceAll(v, secret, redacted)
		v = strings.ReplaceAll(v, url.QueryEscape(secret), redacted)
		v = strings.ReplaceAll(v, url.PathEscape(secret), redacted)
	}
	return v
}

// bearerMatches reports whether an Authorization header carries want as
// its bearer token (the scheme in any case), compared in constant time.
func bearerMatches(header, want string) bool {
	const prefix = "bearer "
	if len(header) < len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return false
	}
	return equalSecret(strings.TrimSpace(header[len(prefix):]), want)
}

// equalSecret compares in constant time; hashing first hides the length too.
func equalSecret(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// newServerErrorLog routes net/http's own error lines (TLS handshakes,
// malformed requests) to the injected logger at debug level.
func newServerErrorLog(l logrus.FieldLogger, redact func(string) string) *log.Logger {
	return log.New(errorLogWriter{log: l, redact: redact}, "", 0)
}

type errorLogWriter struct {
	log    logrus.FieldLogger
	redact func(string) string
}

func (w errorLogWriter) Write(p []byte) (int, error) {
	w.log.WithField("source", "net/http").Debug(w.redact(strings.TrimSpace(string(p))))
	return len(p), nil
}
