package targets

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
)

func TestIsPrivateAddr(t *testing.T) {
	tests := []struct {
		addr    string
		private bool
	}{
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"::1", true},
		{"10.0.0.1", true},
		{"10.255.255.255", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"172.32.0.1", false},
		{"172.15.255.255", false},
		{"192.168.1.1", true},
		{"192.169.0.1", false},
		{"169.254.169.254", true}, // cloud metadata
		{"169.254.0.1", true},
		{"fe80::1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"::", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"100.128.0.1", false},
		{"100.63.255.255", false},
		{"::ffff:127.0.0.1", true}, // IPv4-mapped loopback
		{"::ffff:10.1.2.3", true},
		{"::ffff:8.8.8.8", false},
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.216.34", false},
		{"2606:4700::1111", false},
		{"fec0::1", false}, // deprecated site-local, outside fc00::/7
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			require.Equal(t, tt.private, isPrivateAddr(netip.MustParseAddr(tt.addr)))
		})
	}
	require.True(t, isPrivateAddr(netip.Addr{}), "an invalid address is refused")
}

func TestDenyPrivateControl(t *testing.T) {
	err := denyPrivateControl("tcp4", "127.0.0.1:8080", nil)
	var denied *PrivateAddressError
	require.ErrorAs(t, err, &denied)
	require.EqualError(t, err, "destination 127.0.0.1 is a private address (deny_private_networks)")

	err = denyPrivateControl("tcp6", "[::ffff:169.254.169.254]:80", nil)
	require.EqualError(t, err, "destination 169.254.169.254 is a private address (deny_private_networks)")

	require.NoError(t, denyPrivateControl("tcp4", "8.8.8.8:443", nil))
	require.ErrorContains(t, denyPrivateControl("tcp", "not-an-address", nil), "cannot check dialed address")
}

func TestClassifyPrivateAddressIsDead(t *testing.T) {
	// As the transport returns it: url.Error around the dialer's OpError.
	err := &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{
		Op: "dial", Net: "tcp", Err: &PrivateAddressError{Addr: netip.MustParseAddr("10.0.0.1")},
	}}
	result, code := Classify(0, err)
	require.Equal(t, event.ResultDead, result)
	require.Equal(t, CodePrivateAddress, code)
}

func TestDenyPrivateNetworks(t *testing.T) {
	tests := []struct {
		name string
		deny bool
		host string // replaces 127.0.0.1 in the recorder's URL; "" keeps it
	}{
		{"off delivers to loopback", false, ""},
		{"on refuses loopback", true, ""},
		// A name is checked once resolved: localhost is 127.0.0.1 or ::1.
		{"on refuses a name resolving to loopback", true, "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, nil)
			u, err := url.Parse(rec.URL + "/hook?token=url-secret")
			require.NoError(t, err)
			if tt.host != "" {
				u.Host = net.JoinHostPort(tt.host, u.Port())
			}
			tg := testTarget("t", u.String())
			tg.DenyPrivateNetworks = tt.deny
			st := newFakeStore(time.Now)
			h := newHarness(t, st, Options{Targets: []Target{tg}})
			id := st.add("t", event.MsgKey("1"), []byte(`{}`), event.SourceWebhook)

			_, err = h.d.DeliverDue(context.Background(), "t")
			require.NoError(t, err)
			recs := st.recorded()
			require.Len(t, recs, 1)
			if !tt.deny {
				require.Equal(t, event.ResultDelivered, recs[0].Out.Result)
				require.EqualValues(t, 1, rec.calls.Load())
				return
			}
			out := recs[0].Out
			require.Equal(t, event.ResultDead, out.Result, "a policy refusal is dead at once, with attempts to spare")
			require.Zero(t, out.StatusCode)
			require.Contains(t, out.Error, "private_address: destination ")
			require.Contains(t, out.Error, " is a private address (deny_private_networks)")
			if tt.host == "" {
				require.Equal(t, "private_address: destination 127.0.0.1 is a private address (deny_private_networks)", out.Error)
			}
			require.Equal(t, event.StatusDead, st.row(id).d.Status)
			require.Zero(t, rec.calls.Load(), "the refused target must never see the request")
			require.Equal(t, 1.0, metric(t, h.reg, "wamm_relay_delivery_attempts_total", map[string]string{"target": "t", "code": CodePrivateAddress}))
			require.Contains(t, h.logs.String(), "is a private address (deny_private_networks)")
			require.NotContains(t, h.logs.String(), "url-secret")
		})
	}
}

func TestDenyPrivateNetworksThroughProxy(t *testing.T) {
	// The proxy is the operator's (from the environment) and may well be
	// on a private address: dialing it is allowed. Behind it, only an
	// IP-literal destination can be checked.
	proxied := make(chan string, 4)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied <- r.URL.String()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(proxy.Close)
	proxyURL, err := url.Parse(proxy.URL)
	require.NoError(t, err)

	g := newGuardedDialer(net.Dialer{Timeout: 5 * time.Second})
	tr := &http.Transport{
		DialContext: g.DialContext,
		Proxy:       g.guardProxy(func(*http.Request) (*url.URL, error) { return proxyURL, nil }),
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	resp, err := client.Get("http://hooks.example.com/in")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, "http://hooks.example.com/in", <-proxied)

	_, err = client.Get("http://169.254.169.254/latest/meta-data/")
	var denied *PrivateAddressError
	require.ErrorAs(t, err, &denied)
	require.Equal(t, "169.254.169.254", denied.Addr.String())
	result, code := Classify(0, err)
	require.Equal(t, event.ResultDead, result)
	require.Equal(t, CodePrivateAddress, code)

	// Without a proxy the same dialer checks every address it dials.
	other := newRecorder(t, nil)
	direct := &http.Client{Transport: &http.Transport{DialContext: g.DialContext}}
	_, err = direct.Get(other.URL)
	require.True(t, errors.As(err, &denied), "a direct dial of loopback is refused: %v", err)
	require.Zero(t, other.calls.Load())
}
