package targets

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/wamm-relay/wamm-relay/event"
)

// Short error codes recorded on failed attempts, so operators can group
// failures ("http_<status>" covers every HTTP answer).
const (
	CodeTimeout           = "timeout"
	CodeConnectionRefused = "connection_refused"
	CodeConnectionReset   = "connection_reset"
	CodeDNS               = "dns"
	CodeTLS               = "tls"
	CodeCanceled          = "canceled"
	CodeNetwork           = "network"
	// CodePrivateAddress is an attempt refused by deny_private_networks.
	CodePrivateAddress = "private_address"
)

// Classify decides what one attempt means for its delivery, from the HTTP
// status (0 when no response arrived) and the transport error. It returns
// the result and a short code: "http_<status>" whenever the target answered,
// otherwise one of the Code constants. A 2xx is delivered; 410 Gone is dead
// at once; so is an attempt refused by deny_private_networks
// (CodePrivateAddress): the refusal is the relay's policy, not the target's
// state, and retrying would only repeat it. Everything else (3xx, other
// 4xx, 5xx, every other transport failure) is worth retrying. The attempt
// budget is applied by the caller.
func Classify(statusCode int, err error) (event.Result, string) {
	var denied *PrivateAddressError
	if statusCode == 0 && errors.As(err, &denied) {
		return event.ResultDead, CodePrivateAddress
	}
	if statusCode > 0 {
		code := "http_" + strconv.Itoa(statusCode)
		switch {
		case statusCode >= 200 && statusCode < 300:
			return event.ResultDelivered, code
		case statusCode == http.StatusGone:
			return event.ResultDead, code
		default:
			return event.ResultRetry, code
		}
	}
	return event.ResultRetry, networkCode(err)
}

func networkCode(err error) string {
	var (
		dnsErr     *net.DNSError
		netErr     net.Error
		recErr     tls.RecordHeaderError
		alertErr   tls.AlertError
		verifyErr  *tls.CertificateVerificationError
		authErr    x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
	)
	switch {
	case err == nil:
		return CodeNetwork
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return CodeTimeout
		}
		return CodeDNS
	case errors.As(err, &verifyErr), errors.As(err, &authErr), errors.As(err, &hostErr),
		errors.As(err, &invalidErr), errors.As(err, &recErr), errors.As(err, &alertErr),
		errors.Is(err, http.ErrSchemeMismatch):
		return CodeTLS
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT),
		errors.As(err, &netErr) && netErr.Timeout():
		return CodeTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return CodeConnectionRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// io.EOF: the server closed the connection without answering.
		return CodeConnectionReset
	default:
		return CodeNetwork
	}
}
