package relay_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/relay"
)

// TestRejectionFloodIsLoggedSampled sends 1,000 requests of each kind that
// anyone on the network can send and the relay must refuse. Each kind
// gets its first line at once and one "suppressed 999 similar" line when
// the server stops, not a line per request, while every counter is exact.
func TestRejectionFloodIsLoggedSampled(t *testing.T) {
	const n = 1000
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(o *relay.Options) {
		// At debug the access log writes a line per request by design.
		o.Logger.(*logrus.Logger).SetLevel(logrus.InfoLevel)
		o.Registerer, o.Gatherer = reg, reg
		o.AdminToken, o.Admin = testToken, &fakeAdmin{}
	})
	base, cancel, runDone := startRun(t, h.srv)
	client := &http.Client{}
	t.Cleanup(client.CloseIdleConnections)

	floods := []struct {
		name   string
		method string
		path   string
		header http.Header
		body   string
		status int
		// counter is the exposition line that must read n afterwards.
		counter string
		// msg is the line each rejection would have written.
		msg string
	}{
		{"wrong webhook secret", http.MethodPost, "/webhook/wrong", nil, msgBody, 401,
			`wamm_relay_webhooks_received_total{outcome="rejected",reason="unauthorized"}`, "webhook rejected"},
		{"oversize body", http.MethodPost, "/webhook/" + testSecret, nil, strings.Repeat("x", 1025), 413,
			`wamm_relay_webhooks_received_total{outcome="rejected",reason="too_large"}`, "webhook rejected"},
		{"malformed JSON", http.MethodPost, "/webhook/" + testSecret, nil, "{nope", 400,
			`wamm_relay_webhooks_received_total{outcome="rejected",reason="bad_json"}`, "webhook rejected"},
		{"wrong admin token", http.MethodGet, "/api/v1/targets", bearer("guess"), "", 401,
			`wamm_relay_requests_rejected_total{endpoint="admin",reason="unauthorized"}`, "admin request rejected"},
		{"wrong dashboard login", http.MethodPost, "/ui/login",
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, url.Values{"token": {"guess"}}.Encode(), 401,
			`wamm_relay_requests_rejected_total{endpoint="dashboard",reason="unauthorized"}`, "dashboard login rejected"},
	}
	for _, f := range floods {
		for i := range n {
			req, err := http.NewRequest(f.method, base+f.path, strings.NewReader(f.body))
			require.NoError(t, err)
			for k, v := range f.header {
				req.Header[k] = v
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, f.status, resp.StatusCode, "%s #%d", f.name, i)
		}
	}
	metricsBody := doRequest(t, base, http.MethodGet, "/metrics", nil, nil).body
	cancel()
	require.NoError(t, <-runDone)

	for _, f := range floods {
		require.Contains(t, metricsBody, fmt.Sprintf("%s %d\n", f.counter, n), "%s: one count per request", f.name)
	}
	var rejectionLines, summaries int
	for _, l := range h.logs.lines(t) {
		msg, _ := l["msg"].(string)
		if strings.Contains(msg, "rejected") {
			rejectionLines++
		}
		if strings.HasPrefix(msg, "suppressed ") {
			summaries++
			require.EqualValues(t, n-1, l["suppressed"], "%v", l)
		}
	}
	t.Logf("%d rejected requests wrote %d log lines", n*len(floods), rejectionLines)
	require.Equal(t, 2*len(floods), rejectionLines, "per kind: the first line and one summary")
	require.Equal(t, len(floods), summaries)
	require.NotContains(t, h.logs.String(), testSecret)
	require.NotContains(t, h.logs.String(), testToken)
}

// TestRejectionSummaryWhileServing: with a short LogSampleInterval the
// summary of a burst is written while the server runs, not only at the
// stop, and the next burst starts with a line of its own.
func TestRejectionSummaryWhileServing(t *testing.T) {
	h := newHarness(t, func(o *relay.Options) {
		o.Now = nil // the real clock, so intervals end
		o.LogSampleInterval = 50 * time.Millisecond
	})
	base, _, _ := startRun(t, h.srv)
	burst := func() {
		for range 10 {
			require.Equal(t, 401, doRequest(t, base, http.MethodPost, "/webhook/wrong", nil, strings.NewReader(msgBody)).status)
		}
	}
	summaries := func() int {
		n := 0
		for _, l := range h.logs.lines(t) {
			if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "suppressed ") {
				n++
			}
		}
		return n
	}
	burst()
	require.Eventually(t, func() bool { return summaries() >= 1 }, 5*time.Second, 10*time.Millisecond,
		"the ticker reports the burst once its interval ends")
	firsts := len(h.logs.find(t, "webhook rejected"))
	require.Eventually(t, func() bool {
		burst()
		return len(h.logs.find(t, "webhook rejected")) > firsts
	}, 5*time.Second, 10*time.Millisecond, "a new interval logs its first line again")
}
