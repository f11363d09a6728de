package wamm

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
)

var (
	// ErrMalformed: the webhook body is not JSON.
	ErrMalformed = errors.New("wamm webhook: body is not JSON")
	// ErrNotObject: the webhook body is JSON but not an object.
	ErrNotObject = errors.New("wamm webhook: body is not a JSON object")
)

// ParseWebhook turns a webhook body into an event keyed per the interface:
//
//   - tip "msg" with a usable msg_id: msg:<id>, Kind msg, State = msg_data.state
//     when it is a string;
//   - tip "msg_state" with a usable msg_id and a non-empty string state of at
//     most MaxStateLen bytes: state:<id>:<state>, Kind msg_state;
//   - anything else (another tip, msg_data not an object, msg_id or state
//     missing or unusable): raw:<sha256 of body>, Kind raw.
//
// A usable msg_id is a JSON integer or a string of digits (see
// NormalizeMsgID), so 1234567 and "1234567" give the same key. Keys match
// exactly (case-sensitive, escapes resolved); a member that appears twice
// among tip, msg_data, msg_id or state makes the identity ambiguous (JSON
// parsers disagree on which copy wins), so such a body is keyed raw.
//
// Body is body itself, not a copy: the caller must not modify it afterwards.
// It returns ErrMalformed or ErrNotObject, and no event, for bodies that are
// not JSON objects.
func ParseWebhook(body []byte, receivedAt time.Time) (event.Event, error) {
	if !json.Valid(body) {
		return event.Event{}, ErrMalformed
	}
	if start := skipSpace(body, 0); body[start] != '{' {
		return event.Event{}, ErrNotObject
	}
	ev := event.Event{
		Kind:       event.KindRaw,
		Source:     event.SourceWebhook,
		Body:       body,
		ReceivedAt: receivedAt,
	}
	if !classify(body, &ev) {
		ev.Kind, ev.MsgID, ev.State, ev.Chat = event.KindRaw, "", "", ""
		ev.Key = event.RawKey(body)
	}
	return ev, nil
}

// classify fills Kind, MsgID, State and Key of a msg or msg_state body and
// reports whether it was one.
func classify(body []byte, ev *event.Event) bool {
	var tip, data []byte
	var tips, datas int
	eachMember(body, func(m member) bool {
		switch {
		case m.keyIs("tip"):
			tip, tips = m.value, tips+1
		case m.keyIs("msg_data"):
			data, datas = m.value, datas+1
		}
		return true
	})
	if tips != 1 || datas != 1 || !isObject(data) {
		return false
	}
	kind, ok := jsonString(tip)
	if !ok || (kind != string(event.KindMsg) && kind != string(event.KindMsgState)) {
		return false
	}

	var rawID, rawState, rawPhone []byte
	var ids, states int
	eachMember(data, func(m member) bool {
		switch {
		case m.keyIs("msg_id"):
			rawID, ids = m.value, ids+1
		case m.keyIs("state"):
			rawState, states = m.value, states+1
		case m.keyIs("phone"):
			rawPhone = m.value
		}
		return true
	})
	if ids != 1 {
		return false
	}
	id, ok := msgIDFromJSON(rawID)
	if !ok {
		return false
	}
	state, stateOK := "", false
	if states == 1 {
		state, stateOK = jsonString(rawState)
	}

	ev.MsgID = id
	// The chat is informational (search, gap records), never identity, so a
	// phone that is not a string is simply left out.
	if phone, ok := jsonString(rawPhone); ok && len(phone) <= MaxChatLen {
		ev.Chat = phone
	}
	if kind == string(event.KindMsg) {
		ev.Kind, ev.Key = event.KindMsg, event.MsgKey(id)
		if stateOK {
			ev.State = state
		}
		return true
	}
	if !stateOK || state == "" || len(state) > MaxStateLen {
		return false
	}
	ev.Kind, ev.State, ev.Key = event.KindMsgState, state, event.StateKey(id, state)
	return true
}

// MessageEvent rebuilds the msg webhook WAMM would have sent for a message
// found by polling: {"tip":"msg","msg_data":{...}} with every key of the
// vendor's msg webhook in its order, msg_id and from_me as JSON numbers, the
// other values as the API returned them (from m.Raw, compacted), keys polling
// does not return as null, then date_upd and phone_real when present.
// phone, date_ins, state and date_upd fall back to the typed fields when
// m.Raw lacks them.
//
// m.MsgID must be usable (DecodeMessages only returns such messages). If it is
// not, the body carries "msg_id":null and, exactly as ParseWebhook would key
// that body, the event is keyed raw; so ParseWebhook(ev.Body) always gives
// ev.Key.
func MessageEvent(m Message, receivedAt time.Time) event.Event {
	id, idOK := NormalizeMsgID(m.MsgID)
	var b bytes.Buffer
	b.Grow(512)
	b.WriteString(`{"tip":"msg","msg_data":{"msg_id":`)
	writeID(&b, id, idOK)
	b.WriteString(`,"qoute_msg_id":`)
	writeRaw(&b, m.Raw["qoute_msg_id"], "", false)
	b.WriteString(`,"from_api":`)
	writeRaw(&b, m.Raw["from_api"], "", false)
	b.WriteString(`,"from_me":`)
	b.WriteString(strconv.Itoa(m.FromMe))
	b.WriteString(`,"phone_acc":`)
	writeRaw(&b, m.Raw["phone_acc"], "", false)
	b.WriteString(`,"phone":`)
	writeRaw(&b, m.Raw["phone"], m.Phone, m.Phone != "")
	for _, k := range [...]string{"chat_name", "tip_msg", "msg_text", "msg_link"} {
		b.WriteString(`,"` + k + `":`)
		writeRaw(&b, m.Raw[k], "", false)
	}
	b.WriteString(`,"date_ins":`)
	writeRaw(&b, m.Raw["date_ins"], m.DateIns, m.DateIns != "")
	b.WriteString(`,"state":`)
	writeRaw(&b, m.Raw["state"], m.State, m.State != "")
	b.WriteString(`,"senderId":`)
	writeRaw(&b, m.Raw["senderId"], "", false)
	b.WriteString(`,"senderName":`)
	writeRaw(&b, m.Raw["senderName"], "", false)
	if raw, ok := m.Raw["date_upd"]; ok || m.DateUpd != "" {
		b.WriteString(`,"date_upd":`)
		writeRaw(&b, raw, m.DateUpd, m.DateUpd != "")
	}
	if raw, ok := m.Raw["phone_real"]; ok {
		b.WriteString(`,"phone_real":`)
		writeRaw(&b, raw, "", false)
	}
	b.WriteString("}}")

	ev := event.Event{
		Kind:       event.KindMsg,
		Source:     event.SourceReconcile,
		MsgID:      id,
		State:      m.State,
		Chat:       chatOf(m),
		Body:       b.Bytes(),
		ReceivedAt: receivedAt,
	}
	if !idOK {
		ev.Kind, ev.MsgID, ev.State, ev.Chat = event.KindRaw, "", "", ""
		ev.Key = event.RawKey(ev.Body)
		return ev
	}
	ev.Key = event.MsgKey(id)
	return ev
}

// StateEvent builds the msg_state webhook for a status the webhooks missed:
// {"tip":"msg_state","msg_data":{"msg_id":N,"from_me":N,"phone":"...",
// "state":"...","date_upd":"..."}}, keyed state:<id>:<state>. The state is
// m.State; phone and date_upd come from m.Raw, else the typed fields, else
// null.
//
// As with MessageEvent, a body ParseWebhook would key raw (unusable msg_id,
// empty or over-long state) gives a raw event, so ParseWebhook(ev.Body)
// always gives ev.Key.
func StateEvent(m Message, receivedAt time.Time) event.Event {
	id, idOK := NormalizeMsgID(m.MsgID)
	var b bytes.Buffer
	b.Grow(160)
	b.WriteString(`{"tip":"msg_state","msg_data":{"msg_id":`)
	writeID(&b, id, idOK)
	b.WriteString(`,"from_me":`)
	b.WriteString(strconv.Itoa(m.FromMe))
	b.WriteString(`,"phone":`)
	writeRaw(&b, m.Raw["phone"], m.Phone, m.Phone != "")
	b.WriteString(`,"state":`)
	writeString(&b, m.State)
	b.WriteString(`,"date_upd":`)
	writeRaw(&b, m.Raw["date_upd"], m.DateUpd, m.DateUpd != "")
	b.WriteString("}}")

	ev := event.Event{
		Kind:       event.KindMsgState,
		Source:     event.SourceReconcile,
		MsgID:      id,
		State:      m.State,
		Chat:       chatOf(m),
		Body:       b.Bytes(),
		ReceivedAt: receivedAt,
	}
	if !idOK || m.State == "" || len(m.State) > MaxStateLen {
		ev.Kind, ev.MsgID, ev.State, ev.Chat = event.KindRaw, "", "", ""
		ev.Key = event.RawKey(ev.Body)
		return ev
	}
	ev.Key = event.StateKey(id, m.State)
	return ev
}

// chatOf is m's chat as ParseWebhook would read it from the rebuilt body.
func chatOf(m Message) string {
	if len(m.Phone) > MaxChatLen {
		return ""
	}
	return m.Phone
}

func writeID(b *bytes.Buffer, id string, ok bool) {
	if ok {
		b.WriteString(id)
		return
	}
	b.WriteString("null")
}

// writeRaw writes raw compacted; when raw is absent or not valid JSON it
// writes fallback as a JSON string if hasFallback, else null.
func writeRaw(b *bytes.Buffer, raw json.RawMessage, fallback string, hasFallback bool) {
	if len(raw) > 0 && json.Compact(b, raw) == nil {
		return
	}
	if hasFallback {
		writeString(b, fallback)
		return
	}
	b.WriteString("null")
}

// writeString writes s as a JSON string without HTML escaping, so text reads
// the way WAMM's own webhooks carry it.
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	b.Truncate(b.Len() - 1)
}
