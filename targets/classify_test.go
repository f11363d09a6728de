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
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
)

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// timeoutErr is a net.Error that timed out, like the one http.Client returns
// when its Timeout passes.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "Client.Timeout exceeded while awaiting headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func urlErr(err error) error {
	return &url.Error{Op: "Post", URL: "https://crm.example/hook?token=secret", Err: err}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		status int
		err    error
		result event.Result
		code   string
	}{
		{"200 delivered", 200, nil, event.ResultDelivered, "http_200"},
		{"204 delivered", 204, nil, event.ResultDelivered, "http_204"},
		{"299 delivered", 299, nil, event.ResultDelivered, "http_299"},
		{"410 dead at once", 410, nil, event.ResultDead, "http_410"},
		{"302 redirect is a failure", 302, nil, event.ResultRetry, "http_302"},
		{"304 is a failure", 304, nil, event.ResultRetry, "http_304"},
		{"400 retried", 400, nil, event.ResultRetry, "http_400"},
		{"401 retried", 401, nil, event.ResultRetry, "http_401"},
		{"404 retried", 404, nil, event.ResultRetry, "http_404"},
		{"408 retried", 408, nil, event.ResultRetry, "http_408"},
		{"429 retried", 429, nil, event.ResultRetry, "http_429"},
		{"500 retried", 500, nil, event.ResultRetry, "http_500"},
		{"503 retried", 503, nil, event.ResultRetry, "http_503"},
		{"client timeout", 0, urlErr(timeoutErr{}), event.ResultRetry, CodeTimeout},
		{"context deadline", 0, urlErr(context.DeadlineExceeded), event.ResultRetry, CodeTimeout},
		{"connect timeout", 0, urlErr(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ETIMEDOUT)}), event.ResultRetry, CodeTimeout},
		{"connection refused", 0, urlErr(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), event.ResultRetry, CodeConnectionRefused},
		{"dns not found", 0, urlErr(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "crm.example", IsNotFound: true}}), event.ResultRetry, CodeDNS},
		{"dns timeout", 0, urlErr(&net.DNSError{Err: "i/o timeout", Name: "crm.example", IsTimeout: true}), event.ResultRetry, CodeTimeout},
		{"tls unknown authority", 0, urlErr(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), event.ResultRetry, CodeTLS},
		{"tls hostname", 0, urlErr(x509.HostnameError{Host: "crm.example", Certificate: &x509.Certificate{}}), event.ResultRetry, CodeTLS},
		{"tls expired", 0, urlErr(x509.CertificateInvalidError{Reason: x509.Expired, Cert: &x509.Certificate{}}), event.ResultRetry, CodeTLS},
		{"tls alert", 0, urlErr(tls.AlertError(40)), event.ResultRetry, CodeTLS},
		{"tls to plain http server", 0, urlErr(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), event.ResultRetry, CodeTLS},
		{"https url, plain http server", 0, urlErr(http.ErrSchemeMismatch), event.ResultRetry, CodeTLS},
		{"connection reset", 0, urlErr(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), event.ResultRetry, CodeConnectionReset},
		{"broken pipe", 0, urlErr(&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}), event.ResultRetry, CodeConnectionReset},
		{"closed without answer", 0, urlErr(io.EOF), event.ResultRetry, CodeConnectionReset},
		{"truncated answer", 0, urlErr(io.ErrUnexpectedEOF), event.ResultRetry, CodeConnectionReset},
		{"canceled", 0, urlErr(context.Canceled), event.ResultRetry, CodeCanceled},
		{"anything else", 0, urlErr(errors.New("proxyconnect: something odd")), event.ResultRetry, CodeNetwork},
		{"no status, no error", 0, nil, event.ResultRetry, CodeNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result, code := Classify(tt.status, tt.err)
			require.Equal(t, tt.result, result)
			require.Equal(t, tt.code, code)
		})
	}
}

func TestErrorDetailDropsURL(t *testing.T) {
	err := urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	require.NotContains(t, errorDetail(err), "token=secret")
	require.Contains(t, errorDetail(err), "connection refused")
}
