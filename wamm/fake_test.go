package wamm

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

func newFake(t *testing.T) (*wammfake.Account, *Client) {
	t.Helper()
	acc := wammfake.New(wammfake.Options{
		Token:      testToken,
		WebhookURL: "http://127.0.0.1:1/not-used", // webhooks are only recorded here
		Now:        func() time.Time { return t0 },
	})
	srv := httptest.NewServer(acc.Handler())
	t.Cleanup(srv.Close)
	return acc, newTestClient(t, srv.URL+"/api2", nil)
}

// A message recovered by polling gets the key its webhook would have had,
// and its rebuilt body agrees with the webhook on every field polling
// returns.
func TestPolledMessagesMatchWebhooks(t *testing.T) {
	acc, c := newFake(t)
	in := acc.Receive("79001234567", `Hi "there" <&>`)
	out := acc.SendOut("79007654321", "Hello")
	require.NoError(t, acc.SetState(out.ID, "not sent"))

	msgs, err := c.LastMessages(context.Background(), -1, 100)
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	require.Equal(t, []string{out.ID, in.ID}, []string{msgs[0].MsgID, msgs[1].MsgID}, "newest first")

	hooks := acc.Webhooks()
	require.Len(t, hooks, 3)
	byKey := map[event.Key]wammfake.Webhook{}
	for _, w := range hooks {
		ev, err := ParseWebhook(w.Body, t0)
		require.NoError(t, err)
		require.NotEqual(t, event.KindRaw, ev.Kind)
		byKey[ev.Key] = w
	}

	// The incoming message: unchanged since its webhook.
	rebuilt := MessageEvent(msgs[1], t0)
	w, ok := byKey[rebuilt.Key]
	require.True(t, ok, "key %s", rebuilt.Key)
	var got, want struct {
		MsgData map[string]any `json:"msg_data"`
	}
	require.NoError(t, json.Unmarshal(rebuilt.Body, &got))
	require.NoError(t, json.Unmarshal(w.Body, &want))
	for k, v := range want.MsgData {
		switch k {
		case "from_api", "phone_acc": // not returned by polling: null
			require.Nil(t, got.MsgData[k], k)
		default:
			require.Equal(t, v, got.MsgData[k], k)
		}
	}
	require.Equal(t, "2024-05-01 12:00:00", got.MsgData["date_upd"])

	// The outgoing message's current state was announced by a msg_state
	// webhook; the rebuilt one is the same, byte for byte.
	st := StateEvent(msgs[0], t0)
	w, ok = byKey[st.Key]
	require.True(t, ok, "key %s", st.Key)
	require.Equal(t, "state:"+out.ID+":not%20sent", string(st.Key))
	require.Equal(t, string(w.Body), string(st.Body))
	require.Contains(t, byKey, MessageEvent(msgs[0], t0).Key)
}

func TestClientAgainstFake(t *testing.T) {
	acc, c := newFake(t)
	ctx := context.Background()

	_, err := c.LastMessages(ctx, -1, 10)
	require.ErrorIs(t, err, ErrNoMessages, "an empty account")

	a := acc.Receive("79001234567", "a")
	b := acc.SendOut("79001234567", "b")
	x := acc.Receive("79005550101", "c")

	tests := []struct {
		name string
		call func() ([]Message, error)
		ids  []string
	}{
		{"both", func() ([]Message, error) { return c.LastMessages(ctx, -1, 100) }, []string{x.ID, b.ID, a.ID}},
		{"incoming", func() ([]Message, error) { return c.LastMessages(ctx, 0, 100) }, []string{x.ID, a.ID}},
		{"outgoing", func() ([]Message, error) { return c.LastMessages(ctx, 1, 100) }, []string{b.ID}},
		{"col limits", func() ([]Message, error) { return c.LastMessages(ctx, -1, 1) }, []string{x.ID}},
		{"one chat", func() ([]Message, error) { return c.ChatMessages(ctx, "79001234567", 100) }, []string{b.ID, a.ID}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := tc.call()
			require.NoError(t, err)
			var ids []string
			for _, m := range msgs {
				ids = append(ids, m.MsgID)
			}
			require.Equal(t, tc.ids, ids)
		})
	}

	_, err = c.ChatMessages(ctx, "70000000000", 10)
	require.ErrorIs(t, err, ErrNoMessages)

	acc.SetAPIFailure(wammfake.APIFailure{Err: "acc not authorized", Calls: 1})
	_, err = c.LastMessages(ctx, -1, 10)
	require.ErrorIs(t, err, ErrNotAuthorized)
	require.Equal(t, "not_authorized", Reason(err))

	acc.SetAPIFailure(wammfake.APIFailure{Status: http.StatusBadGateway, Calls: 1})
	_, err = c.LastMessages(ctx, -1, 10)
	require.Equal(t, "http_502", Reason(err))
	requireNoToken(t, err)

	_, err = c.LastMessages(ctx, -1, 10)
	require.NoError(t, err, "recovered")

	bad := newTestClient(t, c.base, func(o *ClientOptions) { o.Token = "wrong" })
	_, err = bad.LastMessages(ctx, -1, 10)
	require.ErrorIs(t, err, ErrTokenFail)
}
