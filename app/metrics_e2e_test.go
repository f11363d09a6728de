package app_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/internal/testutil"
)

// scrapeWith GETs url with an optional bearer token.
func scrapeWith(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestMetricsListenAndToken runs whole relays with server.metrics_listen
// and server.metrics_token set from the configuration.
func TestMetricsListenAndToken(t *testing.T) {
	const token = "scrape-token-0123456789"
	for _, tt := range []struct {
		name         string
		listen       string // server.metrics_listen
		token        string // server.metrics_token
		wantMainCode int    // GET /metrics on the public listener, with the token if any
	}{
		{"own listener", "127.0.0.1:0", "", http.StatusNotFound},
		{"token on the public listener", "", token, http.StatusOK},
		{"own listener with a token", "127.0.0.1:0", token, http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, target("crm", testutil.NewTarget(t).URL))
			cfg.Server.MetricsListen, cfg.Server.MetricsToken = tt.listen, tt.token
			require.NoError(t, cfg.Validate())
			r := startRelay(t, cfg)

			metricsBase := r.base
			if tt.listen != "" {
				addr := r.app.MetricsAddr()
				require.NotNil(t, addr, "MetricsAddr is bound by Listen")
				metricsBase = "http://" + addr.String()
				require.NotEqual(t, r.base, metricsBase)
			} else {
				require.Nil(t, r.app.MetricsAddr())
			}

			code, _ := r.post(t, "/webhook", msgBody(1, "received"))
			require.Equal(t, http.StatusOK, code)

			code, _ = scrapeWith(t, r.base+"/metrics", tt.token)
			require.Equal(t, tt.wantMainCode, code, "public listener")
			if tt.token != "" {
				code, body := scrapeWith(t, metricsBase+"/metrics", "")
				require.Equal(t, http.StatusUnauthorized, code, "no token")
				require.NotContains(t, body, "wamm_relay_")
				code, _ = scrapeWith(t, metricsBase+"/metrics", "wrong-token-0123456789")
				require.Equal(t, http.StatusUnauthorized, code, "wrong token")
			}
			code, body := scrapeWith(t, metricsBase+"/metrics", tt.token)
			require.Equal(t, http.StatusOK, code)
			require.Contains(t, body, `wamm_relay_webhooks_received_total{outcome="accepted",reason=""} 1`+"\n")
			require.Contains(t, body, "wamm_relay_deliveries_pending{", "the store's gauges are there too")
			if tt.token != "" {
				require.Contains(t, body, `wamm_relay_requests_rejected_total{endpoint="metrics",reason="unauthorized"} 2`+"\n")
			}

			for _, probe := range []string{"/healthz", "/readyz"} {
				code, _ = scrapeWith(t, r.base+probe, "")
				require.Equal(t, http.StatusOK, code, "%s needs no token", probe)
			}
			require.NoError(t, r.stop())
			require.NotContains(t, r.logs.String(), token)
		})
	}
}
