package wamm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testToken has characters that need escaping in a path, so redaction must
// catch the escaped form too.
const testToken = "s3cr3t/T0k?en"

var escapedToken = url.PathEscape(testToken)

const okBody = `{"err":0,"msg_data":[{"msg_id":"2","from_me":"1","phone":"7"},{"msg_id":"1","from_me":"0","phone":"7"}]}`

func newTestClient(t *testing.T, baseURL string, mod func(*ClientOptions)) *Client {
	t.Helper()
	opts := ClientOptions{BaseURL: baseURL, Token: testToken, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	c, err := NewClient(opts)
	require.NoError(t, err)
	return c
}

type seen struct {
	path, query, ua string
	q               url.Values
}

// recorder serves body with status and records the last request.
func recorder(t *testing.T, status int, body string) (*httptest.Server, *atomic.Pointer[seen]) {
	t.Helper()
	var last atomic.Pointer[seen]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last.Store(&seen{path: r.URL.EscapedPath(), query: r.URL.RawQuery, ua: r.UserAgent(), q: r.URL.Query()})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &last
}

func TestClientRequests(t *testing.T) {
	srv, last := recorder(t, http.StatusOK, okBody)
	c := newTestClient(t, srv.URL+"/api2/", func(o *ClientOptions) { o.UserAgent = "relay-test/1" })
	ctx := context.Background()

	tests := []struct {
		name  string
		call  func() ([]Message, error)
		path  string
		query url.Values
	}{
		{"last, both directions", func() ([]Message, error) { return c.LastMessages(ctx, -1, 20) },
			"/api2/msg_get_last/" + escapedToken + "/", url.Values{"col": {"20"}}},
		{"last, incoming", func() ([]Message, error) { return c.LastMessages(ctx, 0, 100) },
			"/api2/msg_get_last/" + escapedToken + "/", url.Values{"col": {"100"}, "from_me": {"0"}}},
		{"last, outgoing", func() ([]Message, error) { return c.LastMessages(ctx, 1, 1) },
			"/api2/msg_get_last/" + escapedToken + "/", url.Values{"col": {"1"}, "from_me": {"1"}}},
		{"chat, phone escaped in the query", func() ([]Message, error) { return c.ChatMessages(ctx, "+7 900&col=1/x", 5) },
			"/api2/msg_get/" + escapedToken + "/", url.Values{"phone": {"+7 900&col=1/x"}, "col": {"5"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := tc.call()
			require.NoError(t, err)
			require.Len(t, msgs, 2)
			require.Equal(t, "2", msgs[0].MsgID)
			got := last.Load()
			require.Equal(t, tc.path, got.path)
			require.Equal(t, tc.query, got.q, "raw query %q", got.query)
			require.Equal(t, "relay-test/1", got.ua)
		})
	}
}

func TestClientArgumentChecks(t *testing.T) {
	srv, last := recorder(t, http.StatusOK, okBody)
	c := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"col 0":       func() error { _, err := c.LastMessages(ctx, -1, 0); return err },
		"col 101":     func() error { _, err := c.LastMessages(ctx, -1, 101); return err },
		"from_me 2":   func() error { _, err := c.LastMessages(ctx, 2, 10); return err },
		"empty phone": func() error { _, err := c.ChatMessages(ctx, "", 10); return err },
		"chat col -1": func() error { _, err := c.ChatMessages(ctx, "7", -1); return err },
	} {
		require.Error(t, call(), name)
	}
	require.Nil(t, last.Load(), "no request is made for bad arguments")
}

func TestNewClientValidates(t *testing.T) {
	tests := []struct {
		name  string
		opts  ClientOptions
		field string
	}{
		{"no token", ClientOptions{}, "Token"},
		{"token with space", ClientOptions{Token: "a b"}, "Token"},
		{"relative base", ClientOptions{Token: "t", BaseURL: "wamm.chat/api2"}, "BaseURL"},
		{"ftp base", ClientOptions{Token: "t", BaseURL: "ftp://wamm.chat/api2"}, "BaseURL"},
		{"base with query", ClientOptions{Token: "t", BaseURL: "https://wamm.chat/api2?x=1"}, "BaseURL"},
		{"negative timeout", ClientOptions{Token: "t", Timeout: -time.Second}, "Timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(tc.opts)
			require.Error(t, err)
			require.Nil(t, c)
			require.Contains(t, err.Error(), tc.field)
		})
	}
	c, err := NewClient(ClientOptions{Token: "t"})
	require.NoError(t, err)
	require.Equal(t, DefaultBaseURL, c.base)
	require.Equal(t, DefaultTimeout, c.timeout)
}

// errorCase builds a server (or address) that makes the client fail one way.
type errorCase struct {
	name   string
	setup  func(t *testing.T) (baseURL string, opts func(*ClientOptions), ctx context.Context)
	is     error // errors.Is target, or nil
	reason string
}

func errorCases() []errorCase {
	plain := func(status int, body string) func(t *testing.T) (string, func(*ClientOptions), context.Context) {
		return func(t *testing.T) (string, func(*ClientOptions), context.Context) {
			srv, _ := recorder(t, status, body)
			return srv.URL, nil, context.Background()
		}
	}
	hanging := func(t *testing.T) *httptest.Server {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(func() { close(release); srv.Close() })
		return srv
	}
	return []errorCase{
		{name: "API error token fail", setup: plain(200, `{"err":"token fail"}`), is: ErrTokenFail, reason: "token_fail"},
		{name: "API error msgs not be", setup: plain(200, `{"err":"msgs not be"}`), is: ErrNoMessages, reason: "no_messages"},
		{name: "unknown API error", setup: plain(200, `{"err":"fail execution"}`), reason: "api_error"},
		{name: "HTTP 500", setup: plain(500, `oops`), reason: "http_500"},
		{name: "HTTP 502 with HTML", setup: plain(502, `<html>bad gateway</html>`), reason: "http_502"},
		{name: "HTTP 403 carrying an API code", setup: plain(403, `{"err":"token fail"}`), is: ErrTokenFail, reason: "token_fail"},
		{name: "non-JSON 200", setup: plain(200, `<html>maintenance</html>`), is: ErrBadResponse, reason: "bad_response"},
		{name: "oversized body", setup: plain(200, `{"err":0,"msg_data":"`+strings.Repeat("x", MaxResponseBytes)+`"}`),
			is: ErrBadResponse, reason: "bad_response"},
		{name: "timeout", is: context.DeadlineExceeded, reason: "timeout",
			setup: func(t *testing.T) (string, func(*ClientOptions), context.Context) {
				return hanging(t).URL, func(o *ClientOptions) { o.Timeout = 50 * time.Millisecond }, context.Background()
			}},
		{name: "caller's deadline", is: context.DeadlineExceeded, reason: "timeout",
			setup: func(t *testing.T) (string, func(*ClientOptions), context.Context) {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				t.Cleanup(cancel)
				return hanging(t).URL, nil, ctx
			}},
		{name: "canceled", is: context.Canceled, reason: "canceled",
			setup: func(t *testing.T) (string, func(*ClientOptions), context.Context) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return hanging(t).URL, nil, ctx
			}},
		{name: "connection refused", reason: "connection_refused",
			setup: func(t *testing.T) (string, func(*ClientOptions), context.Context) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				addr := ln.Addr().String()
				require.NoError(t, ln.Close())
				return "http://" + addr, nil, context.Background()
			}},
		{name: "bad TLS certificate", reason: "tls",
			setup: func(t *testing.T) (string, func(*ClientOptions), context.Context) {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = w.Write([]byte(okBody))
				}))
				srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failure is the point
				srv.StartTLS()
				t.Cleanup(srv.Close)
				return srv.URL, nil, context.Background() // default client does not trust the test CA
			}},
		{name: "redirect to another host is refused", reason: "network",
			setup: func(t *testing.T) (string, func(*ClientOptions), context.Context) {
				var hits atomic.Int32
				other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
				t.Cleanup(func() {
					other.Close()
					require.Zero(t, hits.Load(), "the token must not be sent to another host")
				})
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					u := strings.Replace(other.URL, "127.0.0.1", "localhost", 1) + r.URL.RequestURI()
					http.Redirect(w, r, u, http.StatusFound)
				}))
				t.Cleanup(srv.Close)
				return srv.URL, nil, context.Background()
			}},
	}
}

func TestClientErrors(t *testing.T) {
	for _, tc := range errorCases() {
		t.Run(tc.name, func(t *testing.T) {
			base, mod, ctx := tc.setup(t)
			c := newTestClient(t, base, mod)
			msgs, err := c.LastMessages(ctx, -1, 10)
			require.Error(t, err)
			require.Nil(t, msgs)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			require.Equal(t, tc.reason, Reason(err), "error: %v", err)
			requireNoToken(t, err)
			if ue := (*url.Error)(nil); errors.As(err, &ue) {
				require.Contains(t, err.Error(), "/***/", "the URL is kept, redacted")
			}

			_, err = c.ChatMessages(ctx, "79001234567", 10)
			require.Error(t, err)
			require.Equal(t, tc.reason, Reason(err), "error: %v", err)
			requireNoToken(t, err)
		})
	}
}

// Errors that quote the token outside a *url.Error are replaced by their
// redacted text, keeping what callers branch on.
func TestRedactFallback(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", nil)
	tests := []struct {
		name string
		err  error
		is   error
	}{
		{"context error", fmt.Errorf("call %s: %w", escapedToken, context.DeadlineExceeded), context.DeadlineExceeded},
		{"api error", fmt.Errorf("token %s: %w", testToken, ErrTokenFail), ErrTokenFail},
		{"bad response", fmt.Errorf("%w: body %s", ErrBadResponse, testToken), ErrBadResponse},
		{"nested url.Error", fmt.Errorf("wrapped: %w", &url.Error{Op: "Get", URL: "http://h/" + escapedToken + "/", Err: context.Canceled}), context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.redact(tc.err)
			requireNoToken(t, err)
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), "***")
		})
	}
}

func TestClientHTTPErrorCarriesStatus(t *testing.T) {
	srv, _ := recorder(t, http.StatusServiceUnavailable, `busy`)
	_, err := newTestClient(t, srv.URL, nil).LastMessages(context.Background(), -1, 5)
	var he *HTTPError
	require.ErrorAs(t, err, &he)
	require.Equal(t, http.StatusServiceUnavailable, he.Status)
	require.Nil(t, he.API)
}

// requireNoToken fails if the token, raw or escaped, shows in err's text,
// in the text of any error in its chain, or in a *url.Error's URL.
func requireNoToken(t *testing.T, err error) {
	t.Helper()
	check := func(s string) {
		t.Helper()
		for _, form := range []string{testToken, escapedToken, url.QueryEscape(testToken), "s3cr3t"} {
			require.NotContains(t, s, form)
		}
	}
	check(fmt.Sprintf("%v", err))
	check(fmt.Sprintf("%+v", err))
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		check(e.Error())
		var ue *url.Error
		if errors.As(e, &ue) {
			check(ue.URL)
		}
		switch u := e.(type) { //nolint:errorlint // walking the chain by hand
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
}

func TestClientSkippedEntries(t *testing.T) {
	srv, _ := recorder(t, http.StatusOK, `{"err":0,"msg_data":[{"msg_id":"1","from_me":"0"},{"msg_id":"x"},{"msg_id":"2","from_me":"9"}]}`)
	c := newTestClient(t, srv.URL, nil)
	msgs, err := c.LastMessages(context.Background(), -1, 3)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.EqualValues(t, 2, c.SkippedEntries())
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("poll: %w", ErrTokenFail), "token_fail"},
		{&APIError{Code: "token fail"}, "token_fail"},
		{&APIError{Code: "whatever"}, "api_error"},
		{&APIError{Code: "fail get data"}, "fail_get_data"},
		{&HTTPError{Status: 502}, "http_502"},
		{&HTTPError{Status: 401, API: &APIError{Code: "acc not authorized"}}, "not_authorized"},
		{fmt.Errorf("x: %w", ErrBadResponse), "bad_response"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "timeout"},
		{&net.DNSError{Err: "no such host", Name: "wamm.chat"}, "dns"},
		{&net.OpError{Op: "read", Err: errors.New("connection reset")}, "network"},
		{errors.New("something"), "error"},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, Reason(tc.err), "Reason(%v)", tc.err)
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		s, token, want string
	}{
		{`Get "https://wamm.chat/api2/msg_get_last/abc123/?col=5": EOF`, "abc123", `Get "https://wamm.chat/api2/msg_get_last/***/?col=5": EOF`},
		{"https://h/api2/msg_get/a%2Fb/?phone=7", "a/b", "https://h/api2/msg_get/***/?phone=7"},
		{"q=a+b and a b", "a b", "q=*** and ***"},
		{"nothing here", "abc123", "nothing here"},
		{"empty token keeps text", "", "empty token keeps text"},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, Redact(tc.s, tc.token), "Redact(%q, %q)", tc.s, tc.token)
	}
}
