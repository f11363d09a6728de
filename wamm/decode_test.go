package wamm

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecodeMessagesSeed(t *testing.T) {
	msgs := seedMessages(t)
	require.Equal(t, Message{
		MsgID: "1234567", FromMe: 1, Phone: "79001234567", State: "delivered",
		DateIns: "2023-05-24 19:52:00", DateUpd: "2023-05-24 19:52:22", Raw: msgs[0].Raw,
	}, msgs[0])
	require.Equal(t, "1234566", msgs[1].MsgID, "API order kept")
	require.Equal(t, 0, msgs[1].FromMe)
	require.Equal(t, "received", msgs[1].State)
	require.Equal(t, json.RawMessage(`"1234567"`), msgs[0].Raw["msg_id"])
	require.Equal(t, json.RawMessage(`null`), msgs[0].Raw["msg_link"])
	require.Len(t, msgs[0].Raw, 10, "every key of the entry kept")
}

func TestDecodeBatch(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		ids     []string
		fromMe  []int
		skipped int
	}{
		{name: "numbers instead of strings",
			body: `{"err":0,"msg_data":[{"msg_id":5,"from_me":1},{"msg_id":4,"from_me":0}]}`,
			ids:  []string{"5", "4"}, fromMe: []int{1, 0}},
		{name: "err as string zero, like PHP's err == 0",
			body: `{"err":"0","msg_data":[{"msg_id":"5","from_me":"1"}]}`, ids: []string{"5"}, fromMe: []int{1}},
		{name: "err as 0.0", body: `{"err":0.0,"msg_data":[]}`},
		{name: "empty list", body: `{"err":0,"msg_data":[]}`},
		{name: "null list", body: `{"err":0,"msg_data":null}`},
		{name: "object list (PHP array with gaps) keeps document order",
			body: `{"err":0,"msg_data":{"3":{"msg_id":"9","from_me":"0"},"1":{"msg_id":"8","from_me":"0"}}}`,
			ids:  []string{"9", "8"}, fromMe: []int{0, 0}},
		{name: "unusable entries are skipped and counted",
			body: `{"err":0,"msg_data":[{"msg_id":"1","from_me":"0"},"junk",null,{"from_me":"0"},{"msg_id":"1.5","from_me":"0"},` +
				`{"msg_id":"2","from_me":"2"},{"msg_id":"3"},{"msg_id":"0","from_me":"1"},{"msg_id":"4","from_me":"1"},[1]]}`,
			ids: []string{"1", "4"}, fromMe: []int{0, 1}, skipped: 8},
		{name: "case-variant keys are not the fields",
			body: `{"err":0,"msg_data":[{"MSG_ID":"1","from_me":"0"}]}`, skipped: 1},
		{name: "extra envelope keys ignored",
			body: `{"ok":true,"err":0,"count":1,"msg_data":[{"msg_id":"1","from_me":"0"}]}`, ids: []string{"1"}, fromMe: []int{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := DecodeBatch([]byte(tc.body))
			require.NoError(t, err)
			require.Equal(t, tc.skipped, b.Skipped)
			require.Len(t, b.Messages, len(tc.ids))
			for i, m := range b.Messages {
				require.Equal(t, tc.ids[i], m.MsgID)
				require.Equal(t, tc.fromMe[i], m.FromMe)
			}
			msgs, err := DecodeMessages([]byte(tc.body))
			require.NoError(t, err)
			require.Equal(t, b.Messages, msgs)
		})
	}
}

func TestDecodeMessagesErrors(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		is     error  // errors.Is target, or nil
		code   string // *APIError code when is == nil
		reason string
	}{
		{"token fail", `{"err":"token fail"}`, ErrTokenFail, "", "token_fail"},
		{"not authorized", `{"err":"acc not authorized"}`, ErrNotAuthorized, "", "not_authorized"},
		{"bad count", `{"err":"col fail or more 100"}`, ErrBadCount, "", "bad_count"},
		{"no messages", `{"err":"msgs not be"}`, ErrNoMessages, "", "no_messages"},
		{"no message, msg_state's spelling", `{"err":"msg not be"}`, ErrNoMessages, "", "no_messages"},
		{"unknown code", `{"err":"fail execution"}`, nil, "fail execution", "api_error"},
		{"non-zero number", `{"err":1,"msg_data":[]}`, nil, "1", "api_error"},
		{"not JSON", `<html>502 Bad Gateway</html>`, ErrBadResponse, "", "bad_response"},
		{"empty body", ``, ErrBadResponse, "", "bad_response"},
		{"array", `[{"msg_id":"1"}]`, ErrBadResponse, "", "bad_response"},
		{"no err", `{"msg_data":[]}`, ErrBadResponse, "", "bad_response"},
		{"err bool", `{"err":false,"msg_data":[]}`, ErrBadResponse, "", "bad_response"},
		{"err null", `{"err":null,"msg_data":[]}`, ErrBadResponse, "", "bad_response"},
		{"no msg_data", `{"err":0}`, ErrBadResponse, "", "bad_response"},
		{"msg_data string", `{"err":0,"msg_data":"none"}`, ErrBadResponse, "", "bad_response"},
		{"msg_data number", `{"err":0,"msg_data":0}`, ErrBadResponse, "", "bad_response"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := DecodeMessages([]byte(tc.body))
			require.Error(t, err)
			require.Nil(t, msgs)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			} else {
				var ae *APIError
				require.ErrorAs(t, err, &ae)
				require.Equal(t, tc.code, ae.Code)
				require.NotErrorIs(t, err, ErrBadResponse)
			}
			require.Equal(t, tc.reason, Reason(err))
			require.True(t, strings.HasPrefix(err.Error(), "decode messages: "), err.Error())
		})
	}
}
