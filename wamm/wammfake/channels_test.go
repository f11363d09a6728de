package wammfake

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChannelList(t *testing.T) {
	a := New(Options{Token: token, Now: fixedNow, WebhookURL: "https://relay.example.com/webhook/s1"})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	path := "/api2/channel_list/" + token + "/"
	defaultEntry := `{"api_id":1,"api_tip":"whatsapp","pay_state":"active","phone":"79990000000",` +
		`"api_tag":"wammfake","state":"authorized","hook":"https://relay.example.com/webhook/s1"}`

	tests := []struct {
		name  string
		setup func()
		path  string
		body  string
	}{
		{"defaults; the hook is the webhook URL", nil, path + "one", `{"err":0,"data":[` + defaultEntry + `]}`},
		{"no filter lists the channel", nil, path, `{"err":0,"data":[` + defaultEntry + `]}`},
		{"statusOn matches an authorized channel", nil, path + "statusOn", `{"err":0,"data":[` + defaultEntry + `]}`},
		{"statusOff does not", nil, path + "statusOff", `{"err":0,"data":[]}`},
		{"archive does not match an active channel", nil, path + "archive", `{"err":0,"data":[]}`},
		{"an unknown filter", nil, path + "bogus", `{"err":"fail get data"}`},
		{"wrong token", nil, "/api2/channel_list/nope/one", `{"err":"token fail"}`},
		{"hook follows SetWebhookURL", func() { a.SetWebhookURL("https://other.example.com/hook") }, path + "one",
			`{"err":0,"data":[{"api_id":1,"api_tip":"whatsapp","pay_state":"active","phone":"79990000000",` +
				`"api_tag":"wammfake","state":"authorized","hook":"https://other.example.com/hook"}]}`},
		{"SetChannel overrides everything, hook included", func() {
			a.SetChannel(Channel{APIID: "77", APITip: "tg", PayState: "archive", Phone: "7000", APITag: "Sales",
				State: "blocked", Hook: "https://x.example/h"})
		}, path + "one",
			`{"err":0,"data":[{"api_id":77,"api_tip":"tg","pay_state":"archive","phone":"7000",` +
				`"api_tag":"Sales","state":"blocked","hook":"https://x.example/h"}]}`},
		{"SetChannelState changes the state only", func() { a.SetChannelState("notAuthorized") }, path + "statusOff",
			`{"err":0,"data":[{"api_id":77,"api_tip":"tg","pay_state":"archive","phone":"7000",` +
				`"api_tag":"Sales","state":"notAuthorized","hook":"https://x.example/h"}]}`},
		{"a non-numeric api_id stays a string", func() { a.SetChannel(Channel{APIID: "a-1"}) }, path + "one",
			`{"err":0,"data":[{"api_id":"a-1","api_tip":"whatsapp","pay_state":"active","phone":"79990000000",` +
				`"api_tag":"wammfake","state":"authorized","hook":"https://other.example.com/hook"}]}`},
		{"an injected API failure", func() { a.SetAPIFailure(APIFailure{Err: "fail get data", Calls: 1}) }, path + "one",
			`{"err":"fail get data"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			status, _, body := get(t, srv, tc.path)
			require.Equal(t, http.StatusOK, status)
			require.JSONEq(t, tc.body, body)
		})
	}
	require.Equal(t, "a-1", a.Channel().APIID)
	require.Equal(t, "https://other.example.com/hook", a.Channel().Hook)
}
