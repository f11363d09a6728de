package wamm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/wamm-relay/wamm-relay/event"
)

// Seeds beyond testdata/fuzz: the shapes the parser branches on.
var webhookSeeds = []string{
	`{"tip":"msg","msg_data":{"msg_id":1234567,"state":"received"}}`,
	`{"tip":"msg","msg_data":{"msg_id":"0042"}}`,
	`{"tip":"msg_state","msg_data":{"msg_id":42,"state":"not sent"}}`,
	`{"tip":"msg_state","msg_data":{"msg_id":"42","state":"n\u00f6t \"sent\""}}`,
	`{"tip":"msg","tip":"msg","msg_data":{"msg_id":1}}`,
	`{"\u0074ip":"msg","msg_data":{"msg_id":1e3}}`,
	`{"tip":"msg","msg_data":[]}`,
	`[1,2]`, `"x"`, `{`, ``, `{"a":{"b":[{"c":"]}"}]}}`,
}

func FuzzParseWebhook(f *testing.F) {
	for _, s := range webhookSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		ev, err := ParseWebhook(body, t0)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotObject) {
				t.Fatalf("unexpected error %v", err)
			}
			if ev.Key != "" {
				t.Fatalf("key %q with error", ev.Key)
			}
			return
		}
		if !bytes.Equal(ev.Body, orig) || !bytes.Equal(body, orig) {
			t.Fatal("body changed")
		}
		requireHeaderSafe(t, ev.Key)
		switch ev.Kind {
		case event.KindMsg:
			if id, ok := NormalizeMsgID(ev.MsgID); !ok || id != ev.MsgID || ev.Key != event.MsgKey(ev.MsgID) {
				t.Fatalf("msg event %+v", ev)
			}
		case event.KindMsgState:
			if id, ok := NormalizeMsgID(ev.MsgID); !ok || id != ev.MsgID || ev.State == "" ||
				ev.Key != event.StateKey(ev.MsgID, ev.State) {
				t.Fatalf("msg_state event %+v", ev)
			}
		case event.KindRaw:
			if ev.Key != event.RawKey(body) || ev.MsgID != "" || ev.State != "" {
				t.Fatalf("raw event %+v", ev)
			}
		default:
			t.Fatalf("kind %q", ev.Kind)
		}
		if !strings.HasPrefix(string(ev.Key), string(ev.Kind)+":") &&
			!(ev.Kind == event.KindMsgState && strings.HasPrefix(string(ev.Key), "state:")) {
			t.Fatalf("key %q does not match kind %q", ev.Key, ev.Kind)
		}
	})
}

var responseSeeds = []string{
	`{"err":0,"msg_data":[{"msg_id":"1234567","from_me":"1","phone":"79001234567","state":"delivered","date_upd":"x"}]}`,
	`{"err":0,"msg_data":{"0":{"msg_id":5,"from_me":0,"phone_real":"@a"}}}`,
	`{"err":0,"msg_data":[1,"a",null,{"msg_id":"0"},{"msg_id":"7","from_me":"1","state":"not sent"}]}`,
	`{"err":"msgs not be"}`, `{"err":1}`, `{"err":0,"msg_data":null}`, `[]`, `<html>`,
}

func FuzzDecodeMessages(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := DecodeBatch(body)
		if err != nil {
			var ae *APIError
			if !errors.Is(err, ErrBadResponse) && !errors.As(err, &ae) {
				t.Fatalf("unexpected error %v", err)
			}
			if len(b.Messages) != 0 || b.Skipped != 0 {
				t.Fatal("messages with an error")
			}
			return
		}
		for _, m := range b.Messages {
			if id, ok := NormalizeMsgID(m.MsgID); !ok || id != m.MsgID {
				t.Fatalf("unusable id %q returned", m.MsgID)
			}
			if m.FromMe != 0 && m.FromMe != 1 {
				t.Fatalf("from_me %d", m.FromMe)
			}
			// Whatever the API returned, the rebuilt webhooks parse back to
			// the keys they were given.
			for _, ev := range []event.Event{MessageEvent(m, t0), StateEvent(m, t0)} {
				requireHeaderSafe(t, ev.Key)
				back, err := ParseWebhook(ev.Body, t0)
				if err != nil {
					t.Fatalf("rebuilt body %s: %v", ev.Body, err)
				}
				if back.Key != ev.Key || back.Kind != ev.Kind || back.MsgID != ev.MsgID || back.State != ev.State {
					t.Fatalf("rebuilt %s keyed %q, parsed back as %q", ev.Body, ev.Key, back.Key)
				}
			}
			if MessageEvent(m, t0).Key != event.MsgKey(m.MsgID) {
				t.Fatalf("message %q not keyed by its id", m.MsgID)
			}
		}
	})
}
