package targets

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/tracing"
)

// responseBodyCap bounds how much of a target's answer is read. The body is
// only drained so the connection can be reused; nothing in it matters.
const responseBodyCap = 64 << 10

// sender makes one HTTP attempt against one target. Each target owns its
// client and connection pool, so one target's connections, DNS or TLS
// trouble never touch another's.
type sender struct {
	target    Target
	client    *resty.Client
	transport *http.Transport
	signer    *Signer
}

// attemptResponse is what one attempt produced, before classification.
type attemptResponse struct {
	status     int    // 0 when no response arrived
	retryAfter string // the Retry-After header, if any
	err        error  // transport error; nil when the target answered
}

func newSender(t Target, workers int, userAgent string, log logrus.FieldLogger) (*sender, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("target %q: ca_file: read: %w", t.Name, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("target %q: ca_file %q: no PEM certificate found", t.Name, t.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	dialer := net.Dialer{Timeout: t.Timeout, KeepAlive: 30 * time.Second}
	dial, proxy := dialer.DialContext, http.ProxyFromEnvironment
	if t.DenyPrivateNetworks {
		g := newGuardedDialer(dialer)
		dial, proxy = g.DialContext, g.guardProxy(proxy)
	}
	transport := &http.Transport{
		Proxy:                 proxy,
		DialContext:           dial,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   t.Timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          workers,
		MaxIdleConnsPerHost:   workers,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	var signer *Signer
	if t.SigningSecret != "" {
		var err error
		if signer, err = NewSigner(t.SigningSecret); err != nil {
			return nil, fmt.Errorf("target %q: signing_secret: %w", t.Name, err)
		}
	}
	client := resty.NewWithClient(&http.Client{Transport: transport}).
		SetTimeout(t.Timeout).
		// A 3xx comes back as the response: a target that moved is a
		// failure an operator must see, not something to chase (possibly
		// to another host, with the target's credentials).
		SetRedirectPolicy(resty.RedirectPolicyFunc(func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		})).
		// Read the body ourselves, with a cap.
		SetDoNotParseResponse(true).
		SetLogger(restyLogger{log}).
		SetHeader("User-Agent", userAgent).
		// What resty would send anyway for a JSON body; set here, it skips
		// resty's per-request regexp match of the content type.
		SetHeader("Accept", "application/json").
		SetHeaders(t.Headers)
	return &sender{target: t, client: client, transport: transport, signer: signer}, nil
}

// send POSTs the delivery's body once. at is the attempt's time, used for
// webhook-timestamp and the signature, which are fresh on every attempt.
func (s *sender) send(ctx context.Context, d event.Delivery, attempt int, at time.Time) attemptResponse {
	ts := strconv.FormatInt(at.Unix(), 10)
	req := s.client.R().
		SetContext(ctx).
		SetBody(d.Body).
		SetHeader("Content-Type", "application/json").
		SetHeaderVerbatim("webhook-id", string(d.EventKey)).
		SetHeaderVerbatim("webhook-timestamp", ts).
		SetHeader("X-Wamm-Relay-Attempt", strconv.Itoa(attempt)).
		SetHeaderVerbatim("X-Wamm-Channel", event.ChannelOf(d.EventKey))
	if d.Source != "" {
		req.SetHeader("X-Wamm-Relay-Source", string(d.Source))
	}
	if s.signer != nil {
		req.SetHeaderVerbatim("webhook-signature", s.signer.Sign(string(d.EventKey), at, d.Body))
	}
	tracing.Inject(ctx, req.Header) // traceparent of the attempt's span, when tracing is on
	resp, err := req.Post(s.target.URL)
	if resp != nil && resp.RawResponse != nil {
		raw := resp.RawResponse
		// The status decides; a body that fails to read does not change it.
		_, _ = io.Copy(io.Discard, io.LimitReader(raw.Body, responseBodyCap))
		_ = raw.Body.Close()
		if err == nil {
			return attemptResponse{status: raw.StatusCode, retryAfter: raw.Header.Get("Retry-After")}
		}
	}
	if err == nil {
		err = errors.New("no response")
	}
	return attemptResponse{err: err}
}

func (s *sender) close() { s.transport.CloseIdleConnections() }

// errorDetail is the transport error without the request URL, which may
// carry a credential in its query.
func errorDetail(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err.Error()
	}
	return err.Error()
}

// restyLogger routes resty's own messages to the injected logger, at a level
// that keeps them out of production logs unless asked for.
type restyLogger struct{ log logrus.FieldLogger }

func (l restyLogger) Errorf(format string, v ...any) { l.log.Warnf("resty: "+format, v...) }
func (l restyLogger) Warnf(format string, v ...any)  { l.log.Debugf("resty: "+format, v...) }
func (l restyLogger) Debugf(format string, v ...any) { l.log.Debugf("resty: "+format, v...) }
