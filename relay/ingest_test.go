package relay_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/store"
)

func TestWebhookStatusTable(t *testing.T) {
	errStore := errors.New("database is locked")
	big := `{"tip":"msg","pad":"` + strings.Repeat("x", 2048) + `"}`
	tests := []struct {
		name     string
		method   string
		path     string
		body     io.Reader
		ingest   func(ctx context.Context, ev event.Event) (bool, error)
		want     int
		wantBody string // exact JSON; empty: an {"ok":false,"error":...} body
		ingested bool
	}{
		{name: "accepted, secret in path", path: "/webhook/" + testSecret, body: strings.NewReader(msgBody),
			want: 200, wantBody: `{"ok":true,"duplicate":false}`, ingested: true},
		{name: "accepted, secret in query", path: "/webhook?secret=" + testSecret, body: strings.NewReader(msgBody),
			want: 200, wantBody: `{"ok":true,"duplicate":false}`, ingested: true},
		{name: "duplicate reported by the ingester", path: "/webhook/" + testSecret, body: strings.NewReader(msgBody),
			ingest: func(context.Context, event.Event) (bool, error) { return true, nil },
			want:   200, wantBody: `{"ok":true,"duplicate":true}`, ingested: true},
		{name: "duplicate as store.ErrDuplicate", path: "/webhook/" + testSecret, body: strings.NewReader(msgBody),
			ingest: func(context.Context, event.Event) (bool, error) { return false, store.ErrDuplicate },
			want:   200, wantBody: `{"ok":true,"duplicate":true}`, ingested: true},
		{name: "not JSON", path: "/webhook/" + testSecret, body: strings.NewReader(`{"tip":`), want: 400},
		{name: "empty body", path: "/webhook/" + testSecret, body: strings.NewReader(``), want: 400},
		{name: "JSON array", path: "/webhook/" + testSecret, body: strings.NewReader(`[{"tip":"msg"}]`), want: 400},
		{name: "JSON string", path: "/webhook/" + testSecret, body: strings.NewReader(`"msg"`), want: 400},
		{name: "secret missing", path: "/webhook", body: strings.NewReader(msgBody), want: 401},
		{name: "wrong secret in path", path: "/webhook/guess-guess", body: strings.NewReader(msgBody), want: 401},
		{name: "wrong secret in query", path: "/webhook?secret=guess-guess", body: strings.NewReader(msgBody), want: 401},
		{name: "secret prefix only", path: "/webhook/" + testSecret[:10], body: strings.NewReader(msgBody), want: 401},
		{name: "wrong path secret is not rescued by the query",
			path: "/webhook/guess-guess?secret=" + testSecret, body: strings.NewReader(msgBody), want: 401},
		{name: "body over the limit with Content-Length", path: "/webhook/" + testSecret, body: strings.NewReader(big), want: 413},
		{name: "body over the limit, chunked", path: "/webhook/" + testSecret,
			body: io.MultiReader(strings.NewReader(big)), want: 413},
		{name: "ingest fails", path: "/webhook/" + testSecret, body: strings.NewReader(msgBody),
			ingest: func(context.Context, event.Event) (bool, error) { return false, errStore },
			want:   503, ingested: true},
		{name: "GET on the webhook", method: http.MethodGet, path: "/webhook/" + testSecret, want: 405},
		{name: "below the secret", path: "/webhook/" + testSecret + "/more", body: strings.NewReader(msgBody), want: 404},
		{name: "trailing slash", path: "/webhook/", body: strings.NewReader(msgBody), want: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.ing.fn = tc.ingest
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			resp := h.do(t, method, tc.path, http.Header{"Content-Type": {"application/json"}}, tc.body)
			require.Equal(t, tc.want, resp.status, resp.body)
			if tc.wantBody != "" {
				require.JSONEq(t, tc.wantBody, resp.body)
			} else {
				require.Contains(t, resp.body, `"ok":false`)
				require.Contains(t, resp.body, `"error":"`)
			}
			got := h.ing.received()
			if !tc.ingested {
				require.Empty(t, got, "nothing may reach the ingester")
				return
			}
			require.Len(t, got, 1)
			require.Equal(t, event.MsgKey("1234567"), got[0].Key)
			require.Equal(t, event.KindMsg, got[0].Kind)
			require.Equal(t, event.SourceWebhook, got[0].Source)
			require.Equal(t, msgBody, string(got[0].Body))
			require.True(t, fixedNow.Equal(got[0].ReceivedAt))
		})
	}
}

func TestWebhookWithoutSecret(t *testing.T) {
	h := newHarness(t, func(o *relay.Options) { o.WebhookSecret = "" })

	resp := h.post(t, "/webhook", msgBody)
	require.Equal(t, 200, resp.status)

	resp = h.post(t, "/webhook?secret=anything", msgBody)
	require.Equal(t, 200, resp.status, "a stray query is ignored when no secret is configured")

	resp = h.post(t, "/webhook/anything", msgBody)
	require.Equal(t, 404, resp.status, "only the bare path is routed")
	require.Len(t, h.ing.received(), 2)
}

func TestWebhookIngestTimeoutGives503(t *testing.T) {
	h := newHarness(t, func(o *relay.Options) { o.IngestTimeout = 50 * time.Millisecond })
	var hadDeadline atomic.Bool
	h.ing.fn = func(ctx context.Context, _ event.Event) (bool, error) {
		_, ok := ctx.Deadline()
		hadDeadline.Store(ok)
		<-ctx.Done() // a stuck store
		return false, ctx.Err()
	}
	resp := h.post(t, "/webhook/"+testSecret, msgBody)
	require.Equal(t, 503, resp.status)
	require.True(t, hadDeadline.Load(), "Ingest must run under the ingest timeout")
	require.Len(t, h.logs.find(t, "webhook rejected"), 1)
}

func TestWebhookOverMaxInFlight(t *testing.T) {
	h := newHarness(t, func(o *relay.Options) { o.MaxInFlight = 1 })
	entered := make(chan struct{})
	release := make(chan struct{})
	h.ing.fn = func(context.Context, event.Event) (bool, error) {
		close(entered)
		<-release
		return false, nil
	}

	first := make(chan response, 1)
	go func() { first <- h.post(t, "/webhook/"+testSecret, msgBody) }()
	<-entered

	resp := h.post(t, "/webhook/"+testSecret, `{"tip":"msg","msg_data":{"msg_id":2}}`)
	require.Equal(t, 503, resp.status)
	require.Equal(t, "1", resp.header.Get("Retry-After"))
	require.Len(t, h.ing.received(), 1, "the overloaded request must not reach the ingester")

	close(release)
	require.Equal(t, 200, (<-first).status)

	// The slot is free again.
	h.ing.fn = nil
	require.Equal(t, 200, h.post(t, "/webhook/"+testSecret, msgBody).status)
}

func TestWebhookEventReceivedLogLine(t *testing.T) {
	h := newHarness(t, nil)
	h.ing.fn = func(context.Context, event.Event) (bool, error) { return true, nil }
	require.Equal(t, 200, h.post(t, "/webhook/"+testSecret, msgBody).status)

	lines := h.logs.find(t, "event.received")
	require.Len(t, lines, 1)
	l := lines[0]
	require.Equal(t, "debug", l["level"])
	require.Equal(t, "msg:1234567", l["event_key"])
	require.Equal(t, "msg", l["kind"])
	require.Equal(t, true, l["duplicate"])
	require.Equal(t, "127.0.0.1", l["client_ip"])
	require.EqualValues(t, len(msgBody), l["bytes"])
}

func TestClientIPHonoursTrustedProxies(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		xff     string
		want    string
	}{
		{name: "no trusted proxies: the socket address", trusted: nil, xff: "203.0.113.9", want: "127.0.0.1"},
		{name: "loopback trusted: X-Forwarded-For", trusted: []string{"127.0.0.0/8"}, xff: "203.0.113.9", want: "203.0.113.9"},
		{name: "another network trusted: the socket address", trusted: []string{"10.0.0.0/8"}, xff: "203.0.113.9", want: "127.0.0.1"},
		{name: "spoofed left entry: the first untrusted hop from the right", trusted: []string{"127.0.0.1"},
			xff: "198.51.100.66, 203.0.113.9", want: "203.0.113.9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(o *relay.Options) { o.TrustedProxies = tc.trusted })
			resp := h.do(t, http.MethodPost, "/webhook/"+testSecret,
				http.Header{"X-Forwarded-For": {tc.xff}}, strings.NewReader(msgBody))
			require.Equal(t, 200, resp.status)
			lines := h.logs.find(t, "event.received")
			require.Len(t, lines, 1)
			require.Equal(t, tc.want, lines[0]["client_ip"])
			access := h.logs.find(t, "http.request")
			require.Len(t, access, 1)
			require.Equal(t, tc.want, access[0]["client_ip"], "the access log uses the same client IP")
		})
	}
}

// TestSecretsNeverLogged hits every form a secret can take in a request,
// including a panicking handler, and scans everything logged.
func TestSecretsNeverLogged(t *testing.T) {
	const wrongGuess = "Wrong-Guess-Value-99"
	h := newHarness(t, func(o *relay.Options) {
		o.AdminToken = testToken
		o.Admin = &fakeAdmin{}
	})
	h.ing.fn = func(_ context.Context, ev event.Event) (bool, error) {
		if strings.Contains(string(ev.Body), "boom") {
			panic("ingester exploded")
		}
		return false, nil
	}

	for _, path := range []string{
		"/webhook/" + testSecret,
		"/webhook?secret=" + testSecret,
		"/webhook?SECRET=" + testSecret + "&x=1",
		"/webhook/" + wrongGuess,
		"/webhook?secret=" + wrongGuess,
		"/webhook/" + testSecret + "/extra",
		"/webhok/" + testSecret, // a typo path still carries the secret
		"/webhook?secret=" + testSecret + "&bad=%zz",
	} {
		h.post(t, path, msgBody)
	}
	resp := h.post(t, "/webhook/"+testSecret, `{"tip":"boom"}`)
	require.Equal(t, 500, resp.status)
	require.Equal(t, 401, h.do(t, http.MethodGet, "/api/v1/targets", bearer(wrongGuess), nil).status)
	require.Equal(t, 200, h.do(t, http.MethodGet, "/api/v1/targets", bearer(testToken), nil).status)

	logs := h.logs.String()
	require.NotEmpty(t, h.logs.find(t, "http.request"))
	require.NotEmpty(t, h.logs.find(t, "http handler panicked"))
	require.Contains(t, logs, "REDACTED")
	for _, s := range []string{testSecret, wrongGuess, testToken} {
		require.NotContains(t, logs, s)
	}
}
