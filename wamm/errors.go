package wamm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// APIError is an error WAMM reported in the response envelope ("err" was a
// string, or a non-zero number). The documented codes are the sentinels
// below; any other code comes back as a new *APIError carrying it.
type APIError struct {
	Code string
}

func (e *APIError) Error() string { return "wamm api: " + e.Code }

// Is matches another *APIError with the same code, so a sentinel matches an
// equal code wherever it was built.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	return ok && t.Code == e.Code
}

// The documented error codes of msg_get_last and msg_get.
var (
	ErrTokenFail     error = &APIError{Code: "token fail"}
	ErrNotAuthorized error = &APIError{Code: "acc not authorized"}
	ErrBadCount      error = &APIError{Code: "col fail or more 100"}
	// ErrNoMessages: the API found no messages. Callers treat it as an empty
	// result. Both spellings WAMM uses ("msgs not be", and "msg not be" of
	// msg_state) map to it.
	ErrNoMessages error = &APIError{Code: "msgs not be"}
	// ErrFailGetData: channel_list could not read the account's channels.
	ErrFailGetData error = &APIError{Code: "fail get data"}
)

// ErrBadResponse: the API answered 2xx with something that is not a response
// envelope (not JSON, wrong shape, or too large).
var ErrBadResponse = errors.New("wamm api: bad response")

// HTTPError is a non-2xx HTTP status from the API. WAMM documents errors as
// HTTP 200 with a string err; when a non-2xx body nevertheless carries one,
// API holds it and errors.Is matches it too.
type HTTPError struct {
	Status int
	API    *APIError // nil unless the body held an err string
}

func (e *HTTPError) Error() string {
	s := "wamm api: http status " + strconv.Itoa(e.Status)
	if e.API != nil {
		s += " (" + e.API.Code + ")"
	}
	return s
}

func (e *HTTPError) Unwrap() error {
	if e.API == nil {
		return nil
	}
	return e.API
}

func apiError(code string) error {
	switch code {
	case "token fail":
		return ErrTokenFail
	case "acc not authorized":
		return ErrNotAuthorized
	case "col fail or more 100":
		return ErrBadCount
	case "msgs not be", "msg not be":
		return ErrNoMessages
	case "fail get data":
		return ErrFailGetData
	}
	return &APIError{Code: code}
}

// Reason returns a short, label-safe reason for err, for metrics and logs:
// token_fail, not_authorized, bad_count, no_messages, fail_get_data,
// api_error, http_<status>,
// bad_response, timeout, canceled, connection_refused, dns, tls, network; ""
// for nil and "error" for anything else.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var apiErr *APIError
	var httpErr *HTTPError
	var netErr net.Error
	var dnsErr *net.DNSError
	var urlErr *url.Error
	switch {
	case errors.Is(err, ErrTokenFail):
		return "token_fail"
	case errors.Is(err, ErrNotAuthorized):
		return "not_authorized"
	case errors.Is(err, ErrBadCount):
		return "bad_count"
	case errors.Is(err, ErrNoMessages):
		return "no_messages"
	case errors.Is(err, ErrFailGetData):
		return "fail_get_data"
	case errors.As(err, &httpErr):
		return "http_" + strconv.Itoa(httpErr.Status)
	case errors.As(err, &apiErr):
		return "api_error"
	case errors.Is(err, ErrBadResponse):
		return "bad_response"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.As(err, &dnsErr):
		return "dns"
	case isTLSError(err):
		return "tls"
	case errors.As(err, &netErr), errors.As(err, &urlErr):
		return "network"
	}
	return "error"
}

func isTLSError(err error) bool {
	var verifyErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var alertErr tls.AlertError
	return errors.As(err, &verifyErr) || errors.As(err, &unknownAuth) ||
		errors.As(err, &hostErr) || errors.As(err, &invalidErr) ||
		errors.As(err, &recordErr) || errors.As(err, &alertErr)
}

// Redact replaces every occurrence of token in s, raw or URL-escaped, by
// "***". An empty token leaves s unchanged.
func Redact(s, token string) string {
	if token == "" {
		return s
	}
	forms := []string{token}
	for _, f := range [...]string{url.PathEscape(token), url.QueryEscape(token)} {
		if f != token {
			forms = append(forms, f)
		}
	}
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, "***")
	}
	return s
}
