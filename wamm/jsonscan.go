package wamm

import (
	"encoding/json"
	"unicode/utf8"
)

// The webhook hot path reads only a handful of members out of a body that
// json.Valid has already accepted, so instead of decoding into structs (which
// allocates, and which matches keys case-insensitively: "MSG_ID" would count
// as msg_id) it walks the members of an object directly. Every function here
// assumes valid JSON and never indexes past the value it was given.

// member is one "key": value pair of a JSON object, both as raw bytes.
type member struct {
	key   []byte // the key's JSON string literal, quotes included
	value []byte // the raw value
}

// keyIs reports whether the member's key, unescaped, is exactly name.
func (m member) keyIs(name string) bool {
	inner := m.key[1 : len(m.key)-1]
	if !hasBackslash(inner) {
		return string(inner) == name
	}
	var s string
	if err := json.Unmarshal(m.key, &s); err != nil {
		return false
	}
	return s == name
}

// eachMember calls fn for every member of the JSON object obj, in document
// order, until fn returns false. obj must be a valid JSON object (leading and
// trailing whitespace allowed).
func eachMember(obj []byte, fn func(member) bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return
	}
	for i < len(obj) && obj[i] == '"' {
		keyEnd := skipString(obj, i)
		key := obj[i:keyEnd]
		i = skipSpace(obj, keyEnd)
		i = skipSpace(obj, i+1) // ':'
		valEnd := skipValue(obj, i)
		if !fn(member{key: key, value: obj[i:valEnd]}) {
			return
		}
		i = skipSpace(obj, valEnd)
		if i >= len(obj) || obj[i] != ',' {
			return
		}
		i = skipSpace(obj, i+1)
	}
}

// eachElement calls fn for every element of the JSON array arr, in order.
// arr must be a valid JSON array.
func eachElement(arr []byte, fn func(value []byte)) {
	i := skipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return
	}
	i = skipSpace(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return
	}
	for i < len(arr) {
		end := skipValue(arr, i)
		fn(arr[i:end])
		i = skipSpace(arr, end)
		if i >= len(arr) || arr[i] != ',' {
			return
		}
		i = skipSpace(arr, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string literal starting at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return j
			}
			j++
		}
		return j
	}
}

func hasBackslash(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// jsonString returns the value of the JSON string literal raw, and false if
// raw is not a string.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if !hasBackslash(inner) && utf8.Valid(inner) {
		return string(inner), true
	}
	// Escapes, or invalid UTF-8 that encoding/json replaces with U+FFFD:
	// defer to encoding/json so the result matches what any Go consumer sees.
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func isObject(raw []byte) bool { return len(raw) > 0 && raw[0] == '{' }
func isArray(raw []byte) bool  { return len(raw) > 0 && raw[0] == '[' }
