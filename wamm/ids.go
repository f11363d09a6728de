package wamm

// MaxMsgIDDigits bounds a usable msg_id (after leading zeros are dropped), so
// that a key built from it stays a short header value. WAMM's ids are far
// shorter; anything longer is treated as unusable.
const MaxMsgIDDigits = 40

// MaxStateLen bounds a usable msg_state state in bytes, for the same reason.
const MaxStateLen = 128

// MaxChatLen bounds the chat (msg_data.phone) kept on an event; a longer one
// is not a phone or a chat id and is left out.
const MaxChatLen = 256

// NormalizeMsgID returns the canonical form of a message id given as text:
// ASCII digits only, leading zeros dropped. It reports false for anything
// that is not a positive integer of at most MaxMsgIDDigits digits: an empty
// string, a sign, spaces, a fraction or exponent, zero.
//
// Spaces are deliberately not trimmed: no WAMM method spells an id that way,
// and accepting them would make " 42" and "42" two spellings of one key.
func NormalizeMsgID(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", false
		}
	}
	i := 0
	for i < len(s) && s[i] == '0' {
		i++
	}
	s = s[i:]
	if s == "" || len(s) > MaxMsgIDDigits {
		return "", false
	}
	return s, true
}

// msgIDFromJSON normalises a raw JSON msg_id: a JSON integer (digits only,
// no fraction or exponent) or a string holding one.
func msgIDFromJSON(raw []byte) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c >= '0' && c <= '9':
		// Valid JSON has no leading zeros on numbers, so digits-only text is
		// already canonical unless it is "0"; NormalizeMsgID checks both.
		return NormalizeMsgID(string(raw))
	case c == '"':
		s, ok := jsonString(raw)
		if !ok {
			return "", false
		}
		return NormalizeMsgID(s)
	default:
		return "", false
	}
}

// fromMeFromJSON reads from_me: 0 or 1, as a JSON number or a numeric string.
func fromMeFromJSON(raw []byte) (int, bool) {
	var s string
	switch {
	case len(raw) == 0:
		return 0, false
	case raw[0] == '"':
		var ok bool
		if s, ok = jsonString(raw); !ok {
			return 0, false
		}
	default:
		s = string(raw)
	}
	switch s {
	case "0":
		return 0, true
	case "1":
		return 1, true
	}
	return 0, false
}
