package wamm

import "encoding/json"

// Message is one message as msg_get_last or msg_get returns it, with the
// fields the relay reasons about normalised (msg_id and from_me arrive as
// strings there, as numbers in webhooks) and every field kept raw so that
// rebuilt webhook bodies carry values exactly as the API returned them.
//
// DecodeMessages only returns messages with a usable MsgID and a FromMe of 0
// or 1. Phone is the string (or a number's literal text); State, DateIns and
// DateUpd are empty unless the API sent a string.
type Message struct {
	MsgID   string // normalised decimal string, e.g. "1234567"
	FromMe  int    // 0 incoming, 1 outgoing
	Phone   string
	State   string
	DateIns string
	DateUpd string // empty when absent
	// Raw is every key of the API object as returned.
	Raw map[string]json.RawMessage
}
