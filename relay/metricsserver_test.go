package relay_test

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/relay"
)

const metricsToken = "metrics-Token-Value-99"

// TestMetricsOnItsOwnListener: with MetricsListen, /metrics moves off the
// public listener (404 there) to its own, which serves nothing else, and
// both close on shutdown.
func TestMetricsOnItsOwnListener(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(o *relay.Options) {
		o.Registerer, o.Gatherer = reg, reg
		o.MetricsListen = "127.0.0.1:0"
	})
	require.Nil(t, h.srv.MetricsAddr(), "nothing bound before Listen")
	base, cancel, runDone := startRun(t, h.srv)
	maddr := h.srv.MetricsAddr()
	require.NotNil(t, maddr)
	metricsBase := "http://" + maddr.String()
	require.NotEqual(t, strings.TrimPrefix(base, "http://"), maddr.String())

	require.Equal(t, 401, doRequest(t, base, http.MethodPost, "/webhook/wrong", nil, strings.NewReader(msgBody)).status)
	require.Equal(t, 404, doRequest(t, base, http.MethodGet, "/metrics", nil, nil).status, "not on the public listener")
	require.Equal(t, 200, doRequest(t, base, http.MethodGet, "/healthz", nil, nil).status)
	resp := doRequest(t, metricsBase, http.MethodGet, "/metrics", nil, nil)
	require.Equal(t, 200, resp.status)
	require.Contains(t, resp.body, `wamm_relay_webhooks_received_total{outcome="rejected",reason="unauthorized"} 1`+"\n")
	require.Equal(t, 404, doRequest(t, metricsBase, http.MethodPost, "/webhook/"+testSecret, nil, strings.NewReader(msgBody)).status,
		"the metrics listener serves nothing else")
	require.Equal(t, 404, doRequest(t, metricsBase, http.MethodGet, "/api/v1/targets", nil, nil).status)

	cancel()
	require.NoError(t, <-runDone)
	for _, addr := range []string{strings.TrimPrefix(base, "http://"), maddr.String()} {
		_, err := net.Dial("tcp", addr)
		require.Error(t, err, "%s is closed after the drain", addr)
	}
}

// TestMetricsToken: with MetricsToken, /metrics needs the bearer token on
// whichever listener serves it; every refusal is counted; health probes
// stay open.
func TestMetricsToken(t *testing.T) {
	for _, own := range []bool{false, true} {
		name := "public listener"
		if own {
			name = "own listener"
		}
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h := newHarness(t, func(o *relay.Options) {
				o.Registerer, o.Gatherer = reg, reg
				o.MetricsToken = metricsToken
				if own {
					o.MetricsListen = "127.0.0.1:0"
				}
			})
			base, cancel, runDone := startRun(t, h.srv)
			metricsBase := base
			if own {
				metricsBase = "http://" + h.srv.MetricsAddr().String()
			}
			for _, tc := range []struct {
				name   string
				header http.Header
				want   int
			}{
				{"no header", nil, 401},
				{"wrong token", bearer("guess-guess-guess-guess"), 401},
				{"token prefix", bearer(metricsToken[:6]), 401},
				{"basic scheme", http.Header{"Authorization": {"Basic " + metricsToken}}, 401},
				{"the admin token is not the metrics token", bearer(testToken), 401},
				{"right token", bearer(metricsToken), 200},
				{"scheme is case-insensitive", http.Header{"Authorization": {"bearer " + metricsToken}}, 200},
			} {
				resp := doRequest(t, metricsBase, http.MethodGet, "/metrics", tc.header, nil)
				require.Equal(t, tc.want, resp.status, tc.name)
				if tc.want == 401 {
					require.Contains(t, resp.header.Get("WWW-Authenticate"), "Bearer", tc.name)
					require.NotContains(t, resp.body, "wamm_relay_", tc.name)
				}
			}
			require.Equal(t, 200, doRequest(t, base, http.MethodGet, "/healthz", nil, nil).status, "probes need no token")
			require.Equal(t, 200, doRequest(t, base, http.MethodGet, "/readyz", nil, nil).status)

			resp := doRequest(t, metricsBase, http.MethodGet, "/metrics", bearer(metricsToken), nil)
			require.Contains(t, resp.body, `wamm_relay_requests_rejected_total{endpoint="metrics",reason="unauthorized"} 5`+"\n")
			cancel()
			require.NoError(t, <-runDone)
			require.Len(t, h.logs.find(t, "metrics request rejected"), 1, "sampled: the first refusal only")
			require.NotContains(t, h.logs.String(), metricsToken)
		})
	}
}

func TestMetricsListenNeedsGatherer(t *testing.T) {
	_, err := relay.New(relay.Options{Listen: ":0", MetricsListen: ":0", Ingester: &fakeIngester{}, Logger: newDiscardLogger()})
	require.ErrorContains(t, err, "Gatherer is required when MetricsListen is set")
}

// A metrics address already taken fails Listen, naming that address.
func TestMetricsListenFailureReleasesThePublicListener(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { taken.Close() })
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(o *relay.Options) {
		o.Listen = "127.0.0.1:0"
		o.Registerer, o.Gatherer = reg, reg
		o.MetricsListen = taken.Addr().String()
	})
	_, err = h.srv.Listen()
	require.ErrorContains(t, err, "listen for metrics on "+taken.Addr().String())
	require.Nil(t, h.srv.MetricsAddr())
}
