package wamm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-resty/resty/v2"
)

// Defaults for ClientOptions.
const (
	DefaultBaseURL   = "https://wamm.chat/api2"
	DefaultTimeout   = 10 * time.Second
	DefaultUserAgent = "wamm-relay"
	// MaxResponseBytes caps a response body; 100 messages are far smaller.
	MaxResponseBytes = 8 << 20
	// MaxCount is the largest col WAMM accepts.
	MaxCount = 100
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// BaseURL is the API root, without the method; default DefaultBaseURL.
	BaseURL string
	// Token is the channel's API token. It travels in the URL path and is
	// redacted from every error the client returns.
	Token string
	// Timeout bounds each request; default DefaultTimeout.
	Timeout time.Duration
	// UserAgent is sent with each request; default DefaultUserAgent.
	UserAgent string
	// HTTPClient is used when set (tests); it is copied, not modified.
	HTTPClient *http.Client
}

func (o *ClientOptions) validate() error {
	if o.Token == "" {
		return errors.New("wamm client options: Token is empty")
	}
	if strings.ContainsAny(o.Token, " \t\r\n") {
		return errors.New("wamm client options: Token contains whitespace")
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("wamm client options: BaseURL %q is not an absolute http(s) URL", o.BaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("wamm client options: BaseURL %q has a query or fragment", o.BaseURL)
	}
	if o.Timeout < 0 {
		return errors.New("wamm client options: Timeout is negative")
	}
	return nil
}

// Client calls WAMM's msg_get_last and msg_get. It never logs, and every
// error it returns has the token replaced by "***". It is safe for
// concurrent use.
type Client struct {
	rc      *resty.Client
	base    string // without trailing slash
	token   string
	timeout time.Duration
	skipped atomic.Int64
}

// NewClient builds a Client.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.UserAgent == "" {
		opts.UserAgent = DefaultUserAgent
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	var hc http.Client
	if opts.HTTPClient != nil {
		hc = *opts.HTTPClient
	}
	if hc.Transport == nil {
		hc.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	hc.Jar = nil
	// Only same-host redirects are followed, never from https to http: the
	// token is in the path, and such a redirect would expose it.
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("stopped after 5 redirects")
		}
		if req.URL.Host != via[0].URL.Host {
			return errors.New("refusing redirect to another host")
		}
		if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			return errors.New("refusing redirect from https to http")
		}
		return nil
	}
	rc := resty.NewWithClient(&hc).
		SetLogger(discardLogger{}).
		SetResponseBodyLimit(MaxResponseBytes).
		SetHeader("User-Agent", opts.UserAgent).
		SetHeader("Accept", "application/json")
	return &Client{
		rc:      rc,
		base:    strings.TrimRight(opts.BaseURL, "/"),
		token:   opts.Token,
		timeout: opts.Timeout,
	}, nil
}

// LastMessages calls msg_get_last: the col newest messages across the
// channel's chats, newest first as WAMM returns them. fromMe is 0 for
// incoming only, 1 for outgoing only, -1 for both; col is 1..MaxCount.
// "msgs not be" comes back as ErrNoMessages.
func (c *Client) LastMessages(ctx context.Context, fromMe int, col int) ([]Message, error) {
	if fromMe < -1 || fromMe > 1 {
		return nil, fmt.Errorf("get last messages: from_me %d is not -1, 0 or 1", fromMe)
	}
	if col < 1 || col > MaxCount {
		return nil, fmt.Errorf("get last messages: col %d out of range 1..%d", col, MaxCount)
	}
	q := url.Values{"col": {strconv.Itoa(col)}}
	if fromMe >= 0 {
		q.Set("from_me", strconv.Itoa(fromMe))
	}
	msgs, err := c.get(ctx, "msg_get_last", q)
	if err != nil {
		return nil, fmt.Errorf("get last messages: %w", err)
	}
	return msgs, nil
}

// ChatMessages calls msg_get: the col newest messages of one chat (phone, or
// chat id for Telegram and MAX). "msgs not be" comes back as ErrNoMessages.
func (c *Client) ChatMessages(ctx context.Context, phone string, col int) ([]Message, error) {
	if phone == "" {
		return nil, errors.New("get chat messages: phone is empty")
	}
	if col < 1 || col > MaxCount {
		return nil, fmt.Errorf("get chat messages: col %d out of range 1..%d", col, MaxCount)
	}
	q := url.Values{"phone": {phone}, "col": {strconv.Itoa(col)}}
	msgs, err := c.get(ctx, "msg_get", q)
	if err != nil {
		return nil, fmt.Errorf("get chat messages: %w", err)
	}
	return msgs, nil
}

// SkippedEntries is the number of response entries skipped so far because
// they had no usable msg_id or from_me (see Batch.Skipped); for a metric.
func (c *Client) SkippedEntries() int64 { return c.skipped.Load() }

func (c *Client) get(ctx context.Context, method string, q url.Values) ([]Message, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := c.base + "/" + method + "/" + url.PathEscape(c.token) + "/?" + q.Encode()
	resp, err := c.rc.R().SetContext(ctx).Get(u)
	if err != nil {
		return nil, c.redact(classifyTransport(err))
	}
	if status := resp.StatusCode(); status < 200 || status > 299 {
		he := &HTTPError{Status: status}
		if _, derr := DecodeBatch(resp.Body()); derr != nil {
			var ae *APIError
			if errors.As(derr, &ae) {
				he.API = ae
			}
		}
		return nil, c.redact(he)
	}
	b, err := DecodeBatch(resp.Body())
	if err != nil {
		return nil, c.redact(err)
	}
	c.skipped.Add(int64(b.Skipped))
	return b.Messages, nil
}

func classifyTransport(err error) error {
	if errors.Is(err, resty.ErrResponseBodyTooLarge) {
		return fmt.Errorf("%w: response larger than %d bytes", ErrBadResponse, MaxResponseBytes)
	}
	return err
}

// redact makes sure the token appears nowhere in err: *url.Error's URL is
// rewritten in place of the original, and if the token still shows up in the
// message (a wrapped error quoting the URL) the error is replaced by one
// carrying the redacted text and only the chain's classification.
func (c *Client) redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		// The *url.Error was made for this request alone; rewriting it in
		// place also covers callers that errors.As it out of the chain.
		ue.URL = Redact(ue.URL, c.token)
	}
	msg := err.Error()
	if red := Redact(msg, c.token); red != msg {
		return &redactedError{msg: red, cause: causeOf(err)}
	}
	return err
}

// causeOf keeps what callers branch on (sentinels, context errors, types)
// without any text that could hold the token.
func causeOf(err error) error {
	var apiErr *APIError
	var httpErr *HTTPError
	switch {
	case errors.As(err, &httpErr):
		return httpErr
	case errors.As(err, &apiErr):
		return apiErr
	case errors.Is(err, ErrBadResponse):
		return ErrBadResponse
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	}
	return nil
}

type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.cause }

// discardLogger keeps resty from writing anything (its messages may hold the
// URL, and so the token).
type discardLogger struct{}

func (discardLogger) Errorf(string, ...any) {}
func (discardLogger) Warnf(string, ...any)  {}
func (discardLogger) Debugf(string, ...any) {}
