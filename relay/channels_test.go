package relay_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
)

const salesSecret = "sales-Secret-Value-99"

// TestWebhookChannels routes each channel's webhooks by path and checks its
// own secret; the default channel keeps the contract's paths and keys.
func TestWebhookChannels(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		want    int
		wantKey event.Key // "" when nothing may be ingested
		channel string
	}{
		{"default, secret in path", "/webhook/" + testSecret, 200, "msg:1234567", "default"},
		{"default, secret in query", "/webhook?secret=" + testSecret, 200, "msg:1234567", "default"},
		{"default by name, secret in path", "/webhook/default/" + testSecret, 200, "msg:1234567", "default"},
		{"default by name, secret in query", "/webhook/default?secret=" + testSecret, 200, "msg:1234567", "default"},
		{"named, secret in path", "/webhook/sales/" + salesSecret, 200, "sales:msg:1234567", "sales"},
		{"named, secret in query", "/webhook/sales?secret=" + salesSecret, 200, "sales:msg:1234567", "sales"},
		{"named, without a secret of its own", "/webhook/tg", 200, "tg:msg:1234567", "tg"},
		{"named, no secret", "/webhook/sales", 401, "", ""},
		{"named, the default channel's secret", "/webhook/sales/" + testSecret, 401, "", ""},
		{"default, a named channel's secret", "/webhook/" + salesSecret, 401, "", ""},
		{"named without a secret, a secret in the path", "/webhook/tg/whatever", 401, "", ""},
		{"unknown channel with a secret", "/webhook/nope/" + testSecret, 404, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(o *relay.Options) {
				o.Channels = []relay.WebhookChannel{{Name: "sales", Secret: salesSecret}, {Name: "tg"}}
			})
			resp := h.post(t, tc.path, msgBody)
			require.Equal(t, tc.want, resp.status, resp.body)
			got := h.ing.received()
			if tc.wantKey == "" {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			require.Equal(t, tc.wantKey, got[0].Key)
			require.Equal(t, tc.channel, event.ChannelOf(got[0].Key))
			require.Equal(t, "79001234567", got[0].Chat)
			require.Equal(t, msgBody, string(got[0].Body), "the body is relayed as sent")
		})
	}
}

func TestChannelSecretsNeverLogged(t *testing.T) {
	h := newHarness(t, func(o *relay.Options) {
		o.Channels = []relay.WebhookChannel{{Name: "sales", Secret: salesSecret}}
	})
	require.Equal(t, 401, h.post(t, "/webhook/sales?secret=wrong"+salesSecret, msgBody).status)
	require.Equal(t, 400, h.post(t, "/webhook/sales/"+salesSecret, `{"tip":`).status)
	require.NotContains(t, h.logs.String(), salesSecret)
}

func TestChannelOptionsRejected(t *testing.T) {
	for _, chans := range [][]relay.WebhookChannel{
		{{Name: "default"}},
		{{Name: "msg"}},
		{{Name: "a/b"}},
		{{Name: "x"}, {Name: "x"}},
		{{Name: testSecret}},
	} {
		_, err := relay.New(relay.Options{
			Listen: "127.0.0.1:0", WebhookSecret: testSecret, Channels: chans,
			Ingester: &fakeIngester{}, Logger: newDiscardLogger(),
		})
		require.Error(t, err, "%v", chans)
	}
}
