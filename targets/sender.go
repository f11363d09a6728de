package targets

import (
	"bytes"
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
	client    *http.Client
	transport *http.Transport
	signer    *Signer
	header    http.Header // sent with every attempt; copied, never changed
}

// attemptResponse is what one attempt produced, before classification.
type attemptResponse struct {
	status     int    // 0 when no response arrived
	retryAfter string // the Retry-After header, if any
	err        error  // transport error; nil when the target answered
}

func newSender(t Target, workers int, userAgent string) (*sender, error) {
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
	client := &http.Client{
		Transport: transport,
		Timeout:   t.Timeout,
		// A 3xx comes back as the response: a target that moved is a
		// failure an operator must see, not something to chase (possibly
		// to another host, with the target's credentials).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// The headers every attempt carries, built once: the operator's, then
	// ours, canonicalised as http.Header.Set would.
	base := http.Header{}
	for k, v := range t.Headers {
		base.Set(k, v)
	}
	base.Set("User-Agent", userAgent)
	base.Set("Accept", "application/json")
	base.Set("Content-Type", "application/json")
	return &sender{target: t, client: client, transport: transport, signer: signer, header: base}, nil
}

// send POSTs the delivery's body once. at is the attempt's time, used for
// webhook-timestamp and the signature, which are fresh on every attempt.
func (s *sender) send(ctx context.Context, d event.Delivery, attempt int, at time.Time) attemptResponse {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.target.URL, bytes.NewReader(d.Body))
	if err != nil {
		return attemptResponse{err: fmt.Errorf("build request: %w", err)}
	}
	h := make(http.Header, len(s.header)+8)
	for k, v := range s.header {
		h[k] = v
	}
	// Standard Webhooks' names are lower-case; set verbatim, as sent before.
	h["webhook-id"] = []string{string(d.EventKey)}
	h["webhook-timestamp"] = []string{strconv.FormatInt(at.Unix(), 10)}
	h["X-Wamm-Relay-Attempt"] = []string{strconv.Itoa(attempt)}
	h["X-Wamm-Channel"] = []string{event.ChannelOf(d.EventKey)}
	if d.Source != "" {
		h["X-Wamm-Relay-Source"] = []string{string(d.Source)}
	}
	if s.signer != nil {
		h["webhook-signature"] = []string{s.signer.Sign(string(d.EventKey), at, d.Body)}
	}
	req.Header = h
	tracing.Inject(ctx, req.Header) // traceparent of the attempt's span, when tracing is on
	resp, err := s.client.Do(req)
	if err != nil {
		return attemptResponse{err: err}
	}
	// The status decides; a body that fails to read does not change it. It
	// is drained (up to the cap) only so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, responseBodyCap))
	_ = resp.Body.Close()
	return attemptResponse{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
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
