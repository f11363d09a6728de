package wamm

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

const channelBody = `{"err":0,"data":[{"api_id":12,"api_tip":"whatsapp","pay_state":"active","phone":79990000000,` +
	`"api_tag":"Sales","state":"authorized","hook":"https://relay.example.com/webhook/sales"}]}`

var salesChannel = Channel{
	APIID: "12", APITip: "whatsapp", PayState: "active", Phone: "79990000000",
	APITag: "Sales", State: "authorized", Hook: "https://relay.example.com/webhook/sales",
}

func TestClientChannelsRequest(t *testing.T) {
	srv, last := recorder(t, http.StatusOK, channelBody)
	c := newTestClient(t, srv.URL+"/api2", nil)
	tests := []struct {
		filter string
		path   string
	}{
		{ChannelsOne, "/api2/channel_list/" + escapedToken + "/one"},
		{ChannelsStatusOff, "/api2/channel_list/" + escapedToken + "/statusOff"},
		{ChannelsAll, "/api2/channel_list/" + escapedToken + "/"},
	}
	for _, tc := range tests {
		t.Run("filter "+tc.filter, func(t *testing.T) {
			chs, err := c.Channels(context.Background(), tc.filter)
			require.NoError(t, err)
			require.Equal(t, []Channel{salesChannel}, chs)
			require.Equal(t, tc.path, last.Load().path)
			require.Empty(t, last.Load().query)
		})
	}

	_, err := c.Channels(context.Background(), "one/../x")
	require.ErrorContains(t, err, "unknown filter")
}

func TestDecodeChannels(t *testing.T) {
	entry := `{"api_id":"12","api_tip":"whatsapp","pay_state":"active","phone":"79990000000","api_tag":"Sales",` +
		`"state":"authorized","hook":"https://relay.example.com/webhook/sales"}`
	tests := []struct {
		name string
		body string
		want []Channel
		is   error // errors.Is target when an error is expected
	}{
		{name: "data array, numbers where strings are expected", body: channelBody, want: []Channel{salesChannel}},
		{name: "msg_data array, api_id as a string", body: `{"err":0,"msg_data":[` + entry + `]}`, want: []Channel{salesChannel}},
		{name: "err as the string 0", body: `{"err":"0","channels":[` + entry + `]}`, want: []Channel{salesChannel}},
		{name: "PHP object of entries", body: `{"err":0,"data":{"3":` + entry + `,"7":` + entry + `}}`,
			want: []Channel{salesChannel, salesChannel}},
		{name: "one entry object under a key", body: `{"err":0,"data":` + entry + `}`, want: []Channel{salesChannel}},
		{name: "bare array", body: `[` + entry + `]`, want: []Channel{salesChannel}},
		{name: "entry at the top level", body: `{"err":0,` + entry[1:], want: []Channel{salesChannel}},
		{name: "no entries", body: `{"err":0}`, want: nil},
		{name: "empty list", body: `{"err":0,"data":[]}`, want: nil},
		{name: "null and missing fields, non-object entries skipped",
			body: `{"err":0,"data":[1,"x",null,{"api_id":5,"hook":null,"state":"notAuthorized"}]}`,
			want: []Channel{{APIID: "5", State: "notAuthorized"}}},
		{name: "token fail", body: `{"err":"token fail"}`, is: ErrTokenFail},
		{name: "fail get data", body: `{"err":"fail get data"}`, is: ErrFailGetData},
		{name: "non-zero numeric err", body: `{"err":3,"data":[]}`, is: &APIError{Code: "3"}},
		{name: "garbage", body: `<html>maintenance</html>`, is: ErrBadResponse},
		{name: "truncated JSON", body: `{"err":0,"data":[{"api_id":1`, is: ErrBadResponse},
		{name: "a string", body: `"ok"`, is: ErrBadResponse},
		{name: "err of a wrong type", body: `{"err":true,"data":[]}`, is: ErrBadResponse},
		{name: "no err and no list", body: `{"foo":1}`, is: ErrBadResponse},
		{name: "empty body", body: ``, is: ErrBadResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeChannels([]byte(tc.body))
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestClientChannelsErrors(t *testing.T) {
	cases := append(errorCases(),
		errorCase{name: "fail get data", reason: "fail_get_data", is: ErrFailGetData,
			setup: func(t *testing.T) (string, func(*ClientOptions), context.Context) {
				srv, _ := recorder(t, http.StatusOK, `{"err":"fail get data"}`)
				return srv.URL, nil, context.Background()
			}},
		errorCase{name: "HTTP 500 carrying fail get data", reason: "fail_get_data", is: ErrFailGetData,
			setup: func(t *testing.T) (string, func(*ClientOptions), context.Context) {
				srv, _ := recorder(t, http.StatusInternalServerError, `{"err":"fail get data"}`)
				return srv.URL, nil, context.Background()
			}},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base, mod, ctx := tc.setup(t)
			c := newTestClient(t, base, mod)
			chs, err := c.Channels(ctx, ChannelsOne)
			require.Error(t, err)
			require.Nil(t, chs)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			require.Equal(t, tc.reason, Reason(err), "error: %v", err)
			require.Contains(t, err.Error(), "list channels")
			requireNoToken(t, err)
		})
	}
}

func TestClientChannelsAgainstFake(t *testing.T) {
	acc, c := newFake(t)
	chs, err := c.Channels(context.Background(), ChannelsOne)
	require.NoError(t, err)
	require.Equal(t, []Channel{{APIID: "1", APITip: "whatsapp", PayState: "active", Phone: "79990000000",
		APITag: "wammfake", State: ChannelAuthorized, Hook: "http://127.0.0.1:1/not-used"}}, chs)

	acc.SetChannelState(ChannelBlocked)
	chs, err = c.Channels(context.Background(), ChannelsStatusOff)
	require.NoError(t, err)
	require.Len(t, chs, 1)
	require.Equal(t, ChannelBlocked, chs[0].State)

	acc.SetAPIFailure(wammfake.APIFailure{Err: "fail get data", Calls: 1})
	_, err = c.Channels(context.Background(), ChannelsOne)
	require.ErrorIs(t, err, ErrFailGetData)
	requireNoToken(t, err)
}
