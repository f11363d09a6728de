package wamm

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b
}

func TestParseWebhook(t *testing.T) {
	vendor := string(readFile(t, "testdata/webhook_msg.json"))
	const raw = "raw" // marker: expect event.RawKey(body)
	tests := []struct {
		name  string
		body  string
		key   event.Key // raw => RawKey(body)
		kind  event.Kind
		msgID string
		state string
	}{
		{name: "vendor example from wamm-api.md 2.3", body: vendor,
			key: "msg:1234567", kind: event.KindMsg, msgID: "1234567", state: "received"},
		{name: "msg_id as string gives the same key", body: `{"tip":"msg","msg_data":{"msg_id":"1234567","state":"received"}}`,
			key: "msg:1234567", kind: event.KindMsg, msgID: "1234567", state: "received"},
		{name: "string id with leading zeros is canonicalised", body: `{"tip":"msg","msg_data":{"msg_id":"0001234567"}}`,
			key: "msg:1234567", kind: event.KindMsg, msgID: "1234567"},
		{name: "id beyond int64 kept as decimal", body: `{"tip":"msg","msg_data":{"msg_id":99999999999999999999}}`,
			key: "msg:99999999999999999999", kind: event.KindMsg, msgID: "99999999999999999999"},
		{name: "big id as string, same key", body: `{"tip":"msg","msg_data":{"msg_id":"99999999999999999999"}}`,
			key: "msg:99999999999999999999", kind: event.KindMsg, msgID: "99999999999999999999"},
		{name: "msg with non-string state keeps key, no state", body: `{"tip":"msg","msg_data":{"msg_id":5,"state":3}}`,
			key: "msg:5", kind: event.KindMsg, msgID: "5"},
		{name: "msg without state", body: `{"tip":"msg","msg_data":{"msg_id":5}}`,
			key: "msg:5", kind: event.KindMsg, msgID: "5"},
		{name: "whitespace and extra keys are fine", body: " \n{\"x\":[1,{\"tip\":\"no\"}], \"tip\" : \"msg\" , \"msg_data\" : { \"msg_id\" : 7 } }\n",
			key: "msg:7", kind: event.KindMsg, msgID: "7"},
		{name: "escaped keys and values are resolved", body: `{"\u0074ip":"m\u0073g","msg_data":{"msg_\u0069d":"\u0037"}}`,
			key: "msg:7", kind: event.KindMsg, msgID: "7"},

		{name: "msg_state with space in state", body: `{"tip":"msg_state","msg_data":{"msg_id":42,"state":"not sent"}}`,
			key: "state:42:not%20sent", kind: event.KindMsgState, msgID: "42", state: "not sent"},
		{name: "msg_state string id and escaped state", body: `{"tip":"msg_state","msg_data":{"msg_id":"42","state":"not\u0020sent"}}`,
			key: "state:42:not%20sent", kind: event.KindMsgState, msgID: "42", state: "not sent"},
		{name: "msg_state camelCase state kept as spelled", body: `{"tip":"msg_state","msg_data":{"msg_id":9,"state":"noAccount","phone":"7"}}`,
			key: "state:9:noAccount", kind: event.KindMsgState, msgID: "9", state: "noAccount"},
		{name: "msg_state non-ASCII state percent-encoded", body: `{"tip":"msg_state","msg_data":{"msg_id":9,"state":"прочитано"}}`,
			key: event.StateKey("9", "прочитано"), kind: event.KindMsgState, msgID: "9", state: "прочитано"},

		{name: "msg without msg_id", body: `{"tip":"msg","msg_data":{"state":"received"}}`, key: raw},
		{name: "msg_state without state", body: `{"tip":"msg_state","msg_data":{"msg_id":42}}`, key: raw},
		{name: "msg_state with empty state", body: `{"tip":"msg_state","msg_data":{"msg_id":42,"state":""}}`, key: raw},
		{name: "msg_state with null state", body: `{"tip":"msg_state","msg_data":{"msg_id":42,"state":null}}`, key: raw},
		{name: "msg_state with numeric state", body: `{"tip":"msg_state","msg_data":{"msg_id":42,"state":3}}`, key: raw},
		{name: "msg_state with over-long state", body: `{"tip":"msg_state","msg_data":{"msg_id":42,"state":"` + strings.Repeat("x", MaxStateLen+1) + `"}}`, key: raw},
		{name: "unknown tip", body: `{"tip":"reaction","msg_data":{"msg_id":42}}`, key: raw},
		{name: "tip differs in case", body: `{"tip":"MSG","msg_data":{"msg_id":42}}`, key: raw},
		{name: "no tip", body: `{"msg_data":{"msg_id":42}}`, key: raw},
		{name: "tip not a string", body: `{"tip":1,"msg_data":{"msg_id":42}}`, key: raw},
		{name: "empty object", body: `{}`, key: raw},
		{name: "msg_data is an array", body: `{"tip":"msg","msg_data":[{"msg_id":42}]}`, key: raw},
		{name: "msg_data is null", body: `{"tip":"msg","msg_data":null}`, key: raw},
		{name: "msg_data is a string", body: `{"tip":"msg","msg_data":"{\"msg_id\":42}"}`, key: raw},
		{name: "msg_id with fraction", body: `{"tip":"msg","msg_data":{"msg_id":1234567.5}}`, key: raw},
		{name: "msg_id with zero fraction", body: `{"tip":"msg","msg_data":{"msg_id":1234567.0}}`, key: raw},
		{name: "msg_id with exponent", body: `{"tip":"msg","msg_data":{"msg_id":1e6}}`, key: raw},
		{name: "negative msg_id", body: `{"tip":"msg","msg_data":{"msg_id":-5}}`, key: raw},
		{name: "zero msg_id", body: `{"tip":"msg","msg_data":{"msg_id":0}}`, key: raw},
		{name: "all-zero string msg_id", body: `{"tip":"msg","msg_data":{"msg_id":"000"}}`, key: raw},
		{name: "empty string msg_id", body: `{"tip":"msg","msg_data":{"msg_id":""}}`, key: raw},
		{name: "msg_id with spaces", body: `{"tip":"msg","msg_data":{"msg_id":" 42 "}}`, key: raw},
		{name: "msg_id with sign in string", body: `{"tip":"msg","msg_data":{"msg_id":"+42"}}`, key: raw},
		{name: "msg_id not numeric", body: `{"tip":"msg","msg_data":{"msg_id":"12a"}}`, key: raw},
		{name: "msg_id bool", body: `{"tip":"msg","msg_data":{"msg_id":true}}`, key: raw},
		{name: "msg_id null", body: `{"tip":"msg","msg_data":{"msg_id":null}}`, key: raw},
		{name: "msg_id object", body: `{"tip":"msg","msg_data":{"msg_id":{"v":42}}}`, key: raw},
		{name: "msg_id too long", body: `{"tip":"msg","msg_data":{"msg_id":` + strings.Repeat("9", MaxMsgIDDigits+1) + `}}`, key: raw},
		{name: "key in other case is not msg_id", body: `{"tip":"msg","msg_data":{"MSG_ID":42}}`, key: raw},
		{name: "duplicate tip is ambiguous", body: `{"tip":"msg","tip":"msg_state","msg_data":{"msg_id":42,"state":"sent"}}`, key: raw},
		{name: "duplicate msg_data is ambiguous", body: `{"tip":"msg","msg_data":{"msg_id":1},"msg_data":{"msg_id":2}}`, key: raw},
		{name: "duplicate msg_id is ambiguous", body: `{"tip":"msg","msg_data":{"msg_id":1,"msg_id":2}}`, key: raw},
		{name: "duplicate state in msg_state is ambiguous", body: `{"tip":"msg_state","msg_data":{"msg_id":1,"state":"a","state":"b"}}`, key: raw},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			ev, err := ParseWebhook(body, t0)
			require.NoError(t, err)
			require.Equal(t, event.SourceWebhook, ev.Source)
			require.Equal(t, t0, ev.ReceivedAt)
			require.Equal(t, tc.body, string(ev.Body), "body preserved byte for byte")
			require.Same(t, &body[0], &ev.Body[0], "body is not copied or re-encoded")
			requireHeaderSafe(t, ev.Key)
			if tc.key == raw {
				require.Equal(t, event.RawKey(body), ev.Key)
				require.Equal(t, event.KindRaw, ev.Kind)
				require.Empty(t, ev.MsgID)
				require.Empty(t, ev.State)
				return
			}
			require.Equal(t, tc.key, ev.Key)
			require.Equal(t, tc.kind, ev.Kind)
			require.Equal(t, tc.msgID, ev.MsgID)
			require.Equal(t, tc.state, ev.State)
		})
	}
}

func TestParseWebhookRejects(t *testing.T) {
	tests := []struct {
		name string
		body string
		want error
	}{
		{"array", `[{"tip":"msg","msg_data":{"msg_id":1}}]`, ErrNotObject},
		{"null", `null`, ErrNotObject},
		{"string", `"msg"`, ErrNotObject},
		{"number", ` 42 `, ErrNotObject},
		{"garbage", `tip=msg&msg_id=1`, ErrMalformed},
		{"empty", ``, ErrMalformed},
		{"only spaces", "  \n", ErrMalformed},
		{"truncated", `{"tip":"msg","msg_data":{"msg_id":1}`, ErrMalformed},
		{"trailing garbage", `{"tip":"msg"} x`, ErrMalformed},
		{"two objects", `{}{}`, ErrMalformed},
		{"invalid UTF-8 outside strings", "{\"tip\":\"msg\"}\xff", ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseWebhook([]byte(tc.body), t0)
			require.ErrorIs(t, err, tc.want)
			require.Empty(t, ev.Key)
		})
	}
}

func TestParseWebhookNumberAndStringIDsShareKey(t *testing.T) {
	for _, pair := range [][2]string{
		{`{"tip":"msg","msg_data":{"msg_id":1234567}}`, `{"tip":"msg","msg_data":{"msg_id":"1234567"}}`},
		{`{"tip":"msg_state","msg_data":{"msg_id":42,"state":"viewed"}}`, `{"tip":"msg_state","msg_data":{"msg_id":"42","state":"viewed"}}`},
	} {
		a, err := ParseWebhook([]byte(pair[0]), t0)
		require.NoError(t, err)
		b, err := ParseWebhook([]byte(pair[1]), t0)
		require.NoError(t, err)
		require.Equal(t, a.Key, b.Key)
		require.NotEqual(t, event.KindRaw, a.Kind)
	}
}

func seedMessages(t testing.TB) []Message {
	t.Helper()
	msgs, err := DecodeMessages(readFile(t, "testdata/msg_get_last.json"))
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	return msgs
}

func TestMessageEventGolden(t *testing.T) {
	msgs := seedMessages(t)
	tests := []struct {
		name string
		m    Message
		key  event.Key
		body string
	}{
		{
			name: "outgoing message from the seed",
			m:    msgs[0],
			key:  "msg:1234567",
			body: `{"tip":"msg","msg_data":{"msg_id":1234567,"qoute_msg_id":null,"from_api":null,"from_me":1,"phone_acc":null,` +
				`"phone":"79001234567","chat_name":"Ivan Petrov","tip_msg":"textMessage","msg_text":"Good afternoon!","msg_link":null,` +
				`"date_ins":"2023-05-24 19:52:00","state":"delivered","senderId":null,"senderName":null,"date_upd":"2023-05-24 19:52:22"}}`,
		},
		{
			name: "incoming message from the seed",
			m:    msgs[1],
			key:  "msg:1234566",
			body: `{"tip":"msg","msg_data":{"msg_id":1234566,"qoute_msg_id":null,"from_api":null,"from_me":0,"phone_acc":null,` +
				`"phone":"79001234567","chat_name":"Ivan Petrov","tip_msg":"textMessage","msg_text":"Hello!","msg_link":null,` +
				`"date_ins":"2023-05-24 19:50:15","state":"received","senderId":null,"senderName":null,"date_upd":"2023-05-24 19:50:15"}}`,
		},
		{
			name: "phone_real kept, pretty raw values compacted, HTML not escaped",
			m: mustDecodeOne(t, `{"err":0,"msg_data":[{"msg_id":"77","from_me":"0","phone":"-100123","phone_real":"@ivan",`+
				`"msg_text":"a < b & c","msg_link":{ "u" : [1, 2] },"state":"received"}]}`),
			key: "msg:77",
			body: `{"tip":"msg","msg_data":{"msg_id":77,"qoute_msg_id":null,"from_api":null,"from_me":0,"phone_acc":null,` +
				`"phone":"-100123","chat_name":null,"tip_msg":null,"msg_text":"a < b & c","msg_link":{"u":[1,2]},` +
				`"date_ins":null,"state":"received","senderId":null,"senderName":null,"phone_real":"@ivan"}}`,
		},
		{
			name: "typed fields stand in when Raw is empty",
			m:    Message{MsgID: "5", FromMe: 1, Phone: "79001234567", State: "sent", DateIns: "2024-01-01 00:00:00", DateUpd: "2024-01-01 00:00:05"},
			key:  "msg:5",
			body: `{"tip":"msg","msg_data":{"msg_id":5,"qoute_msg_id":null,"from_api":null,"from_me":1,"phone_acc":null,` +
				`"phone":"79001234567","chat_name":null,"tip_msg":null,"msg_text":null,"msg_link":null,` +
				`"date_ins":"2024-01-01 00:00:00","state":"sent","senderId":null,"senderName":null,"date_upd":"2024-01-01 00:00:05"}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := MessageEvent(tc.m, t0)
			require.Equal(t, tc.body, string(ev.Body))
			require.Equal(t, tc.key, ev.Key)
			require.Equal(t, event.KindMsg, ev.Kind)
			require.Equal(t, event.SourceReconcile, ev.Source)
			require.Equal(t, tc.m.State, ev.State)
			require.Equal(t, t0, ev.ReceivedAt)

			back, err := ParseWebhook(ev.Body, t0)
			require.NoError(t, err)
			require.Equal(t, ev.Key, back.Key)
			require.Equal(t, ev.Kind, back.Kind)
			require.Equal(t, ev.MsgID, back.MsgID)
			require.Equal(t, ev.State, back.State)
		})
	}
}

func mustDecodeOne(t *testing.T, body string) Message {
	t.Helper()
	msgs, err := DecodeMessages([]byte(body))
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	return msgs[0]
}

func TestStateEventGolden(t *testing.T) {
	msgs := seedMessages(t)
	notSent := msgs[0]
	notSent.State = "not sent"
	tests := []struct {
		name string
		m    Message
		key  event.Key
		body string
	}{
		{"seed message", msgs[0], "state:1234567:delivered",
			`{"tip":"msg_state","msg_data":{"msg_id":1234567,"from_me":1,"phone":"79001234567","state":"delivered","date_upd":"2023-05-24 19:52:22"}}`},
		{"state with a space", notSent, "state:1234567:not%20sent",
			`{"tip":"msg_state","msg_data":{"msg_id":1234567,"from_me":1,"phone":"79001234567","state":"not sent","date_upd":"2023-05-24 19:52:22"}}`},
		{"typed fields only, no date_upd", Message{MsgID: "42", FromMe: 1, Phone: "7", State: "viewed"}, "state:42:viewed",
			`{"tip":"msg_state","msg_data":{"msg_id":42,"from_me":1,"phone":"7","state":"viewed","date_upd":null}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := StateEvent(tc.m, t0)
			require.Equal(t, tc.body, string(ev.Body))
			require.Equal(t, tc.key, ev.Key)
			require.Equal(t, event.KindMsgState, ev.Kind)
			require.Equal(t, event.SourceReconcile, ev.Source)
			require.Equal(t, tc.m.State, ev.State)

			back, err := ParseWebhook(ev.Body, t0)
			require.NoError(t, err)
			require.Equal(t, ev.Key, back.Key)
			require.Equal(t, ev.Kind, back.Kind)
			require.Equal(t, ev.MsgID, back.MsgID)
			require.Equal(t, ev.State, back.State)
		})
	}
}

// A message that could not be keyed by id falls back to raw exactly as the
// webhook path would key the same body.
func TestRebuiltEventsWithoutUsableIdentityAreRaw(t *testing.T) {
	tests := []struct {
		name string
		ev   event.Event
	}{
		{"message without id", MessageEvent(Message{State: "received"}, t0)},
		{"message with bad id", MessageEvent(Message{MsgID: "12a"}, t0)},
		{"state without state", StateEvent(Message{MsgID: "42"}, t0)},
		{"state with bad id", StateEvent(Message{MsgID: "-1", State: "sent"}, t0)},
		{"state too long", StateEvent(Message{MsgID: "42", State: strings.Repeat("s", MaxStateLen+1)}, t0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, event.KindRaw, tc.ev.Kind)
			require.Equal(t, event.RawKey(tc.ev.Body), tc.ev.Key)
			back, err := ParseWebhook(tc.ev.Body, t0)
			require.NoError(t, err)
			require.Equal(t, tc.ev.Key, back.Key)
		})
	}
}

func TestNormalizeMsgID(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"1234567", "1234567", true},
		{"007", "7", true},
		{"99999999999999999999", "99999999999999999999", true},
		{strings.Repeat("9", MaxMsgIDDigits), strings.Repeat("9", MaxMsgIDDigits), true},
		{"0" + strings.Repeat("9", MaxMsgIDDigits), strings.Repeat("9", MaxMsgIDDigits), true},
		{strings.Repeat("9", MaxMsgIDDigits+1), "", false},
		{"", "", false},
		{"0", "", false},
		{"-1", "", false},
		{"+1", "", false},
		{" 1", "", false},
		{"1.0", "", false},
		{"1e3", "", false},
		{"１２", "", false}, // full-width digits
	}
	for _, tc := range tests {
		got, ok := NormalizeMsgID(tc.in)
		require.Equal(t, tc.ok, ok, "NormalizeMsgID(%q)", tc.in)
		require.Equal(t, tc.want, got, "NormalizeMsgID(%q)", tc.in)
	}
}

// requireHeaderSafe: a key must be usable as the webhook-id header value.
func requireHeaderSafe(t testing.TB, k event.Key) {
	t.Helper()
	require.NotEmpty(t, k)
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			t.Fatalf("key %q has byte %#x at %d, not a safe header value", k, k[i], i)
		}
	}
}

func BenchmarkParseWebhook(b *testing.B) {
	body := readFile(b, "testdata/webhook_msg.json")
	state := []byte(`{"tip":"msg_state","msg_data":{"msg_id":1234567,"from_me":1,"phone":"79001234567","state":"not sent","date_upd":"2023-05-24 19:52:22"}}`)
	unknown := []byte(`{"tip":"reaction","msg_data":{"msg_id":1234567,"emoji":"+1"}}`)
	for _, bc := range []struct {
		name string
		body []byte
	}{{"msg", body}, {"msg_state", state}, {"raw", unknown}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				if _, err := ParseWebhook(bc.body, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
