package wamm

import (
	"encoding/json"
	"fmt"
)

// Batch is a decoded msg_get_last or msg_get response.
type Batch struct {
	// Messages in the order the API returned them.
	Messages []Message
	// Skipped counts entries left out because they were not objects or had
	// no usable msg_id or from_me (0 or 1, as a number or a numeric string).
	Skipped int
}

// DecodeMessages decodes a msg_get_last or msg_get response; see DecodeBatch.
// Skipped entries are dropped silently; use DecodeBatch to count them.
func DecodeMessages(body []byte) ([]Message, error) {
	b, err := DecodeBatch(body)
	return b.Messages, err
}

// DecodeBatch decodes a msg_get_last or msg_get response envelope.
//
// err must be present: the number 0 (or the string "0", which WAMM's own PHP
// sample would also accept) means success; any other string is an API error
// (a sentinel such as ErrNoMessages for documented codes, else *APIError),
// and so is a non-zero number. On success msg_data must be an array, or an
// object whose values are the messages (what PHP's json_encode makes of an
// array with gaps in its keys), or null (no messages). Anything else is
// ErrBadResponse.
//
// msg_id and from_me are accepted as numbers or numeric strings; entries
// without a usable one are skipped and counted, never fatal.
func DecodeBatch(body []byte) (Batch, error) {
	if !json.Valid(body) {
		return Batch{}, fmt.Errorf("decode messages: %w: not JSON", ErrBadResponse)
	}
	var errField, data []byte
	var hasErr, hasData bool
	top := body[skipSpace(body, 0):]
	if !isObject(top) {
		return Batch{}, fmt.Errorf("decode messages: %w: not a JSON object", ErrBadResponse)
	}
	eachMember(top, func(m member) bool {
		switch {
		case m.keyIs("err"):
			errField, hasErr = m.value, true
		case m.keyIs("msg_data"):
			data, hasData = m.value, true
		}
		return true
	})
	if !hasErr {
		return Batch{}, fmt.Errorf("decode messages: %w: no err field", ErrBadResponse)
	}
	if err := envelopeError(errField); err != nil {
		return Batch{}, fmt.Errorf("decode messages: %w", err)
	}
	if !hasData {
		return Batch{}, fmt.Errorf("decode messages: %w: no msg_data", ErrBadResponse)
	}

	var b Batch
	add := func(raw []byte) {
		if m, ok := decodeMessage(raw); ok {
			b.Messages = append(b.Messages, m)
		} else {
			b.Skipped++
		}
	}
	switch {
	case isArray(data):
		eachElement(data, add)
	case isObject(data):
		eachMember(data, func(m member) bool { add(m.value); return true })
	case string(data) == "null":
	default:
		return Batch{}, fmt.Errorf("decode messages: %w: msg_data is not a list", ErrBadResponse)
	}
	return b, nil
}

// envelopeError maps the envelope's err to nil (success), an API error, or
// ErrBadResponse.
func envelopeError(raw []byte) error {
	switch {
	case len(raw) > 0 && raw[0] == '"':
		code, _ := jsonString(raw)
		if code == "0" {
			return nil
		}
		return apiError(code)
	case len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return ErrBadResponse
		}
		if f, err := n.Float64(); err == nil && f == 0 {
			return nil
		}
		return &APIError{Code: string(raw)}
	default:
		return fmt.Errorf("%w: err is neither a number nor a string", ErrBadResponse)
	}
}

// decodeMessage decodes one msg_data entry; false when it has to be skipped.
func decodeMessage(raw []byte) (Message, bool) {
	if !isObject(raw) {
		return Message{}, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return Message{}, false
	}
	id, ok := msgIDFromJSON(fields["msg_id"])
	if !ok {
		return Message{}, false
	}
	fromMe, ok := fromMeFromJSON(fields["from_me"])
	if !ok {
		return Message{}, false
	}
	m := Message{MsgID: id, FromMe: fromMe, Raw: fields}
	m.Phone = textField(fields["phone"])
	m.State, _ = jsonString(fields["state"])
	m.DateIns, _ = jsonString(fields["date_ins"])
	m.DateUpd, _ = jsonString(fields["date_upd"])
	return m, true
}

// textField reads a value that should be a string but that a PHP backend may
// well send as a number (phones): the string, or the number's literal text.
func textField(raw []byte) string {
	if s, ok := jsonString(raw); ok {
		return s
	}
	if len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return string(raw)
	}
	return ""
}
