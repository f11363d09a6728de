package event

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Kind is the WAMM event kind (the webhook's "tip"), or KindRaw for anything
// the relay does not recognise and therefore relays verbatim.
type Kind string

const (
	KindMsg      Kind = "msg"
	KindMsgState Kind = "msg_state"
	KindRaw      Kind = "raw"
)

// Source says how an event reached the relay.
type Source string

const (
	SourceWebhook   Source = "webhook"
	SourceReconcile Source = "reconcile"
)

// Key is an event's identity: the dedup key and the webhook-id header value.
// It is always a safe header value.
type Key string

// MsgKey is the key of a message event: "msg:<msg_id>".
func MsgKey(msgID string) Key { return Key("msg:" + msgID) }

// StateKey is the key of a status event: "state:<msg_id>:<state>", with every
// byte of state outside A-Za-z0-9._~- percent-encoded so the key stays a safe
// header value ("not sent" gives "not%20sent").
func StateKey(msgID, state string) Key {
	return Key("state:" + msgID + ":" + escapeState(state))
}

// DefaultChannel names the channel of the single [wamm] table. Its keys carry
// no channel prefix, so stores and targets of earlier versions see the same
// keys as before.
const DefaultChannel = "default"

// ChannelKey scopes k to a channel: "<channel>:<k>" for a named channel, k
// itself for the default one (or an empty name). msg_id uniqueness across
// channels is not documented, so keys of different channels must not meet.
func ChannelKey(channel string, k Key) Key {
	if channel == "" || channel == DefaultChannel {
		return k
	}
	return Key(channel + ":" + string(k))
}

// ChannelOf returns the channel a key was scoped to by ChannelKey. A key of
// the default channel starts with one of the kind prefixes, which channel
// names may not take.
func ChannelOf(k Key) string {
	s := string(k)
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return DefaultChannel
	}
	switch s[:i] {
	case "msg", "state", "raw":
		return DefaultChannel
	}
	return s[:i]
}

// ReservedChannelName reports whether name cannot be a named channel's: it
// would read as a key's kind prefix.
func ReservedChannelName(name string) bool {
	return name == "msg" || name == "state" || name == "raw"
}

// RawKey is the key of an unrecognised event: "raw:<sha256 of body, hex>".
func RawKey(body []byte) Key {
	sum := sha256.Sum256(body)
	return Key("raw:" + hex.EncodeToString(sum[:]))
}

func escapeState(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0f])
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '~' || c == '-'
}

// Event is one WAMM event on its way into the outbox.
type Event struct {
	Key    Key
	Kind   Kind
	Source Source
	// Channel is the WAMM channel the event belongs to; empty means
	// DefaultChannel. Key is already scoped to it (ChannelKey).
	Channel string
	// Chat is the chat the event belongs to (msg_data.phone: the contact's
	// phone, or the chat id on Telegram and MAX); empty when unknown.
	Chat string
	// MsgID is the normalised message id (decimal string) of msg and msg_state
	// events; empty for raw events.
	MsgID string
	// State is the message status the event carries (the msg webhook's state,
	// or the new state of a msg_state event); may be empty.
	State string
	// Body is exactly what every target receives: the webhook body byte for
	// byte, or the webhook-shaped body the reconciler built.
	Body       []byte
	ReceivedAt time.Time
}

// ScopeTo puts e in channel: it sets Channel and scopes Key to it. Call it
// once, on an event keyed for the default channel.
func (e *Event) ScopeTo(channel string) {
	if channel == "" {
		channel = DefaultChannel
	}
	e.Channel = channel
	e.Key = ChannelKey(channel, e.Key)
}

// Status is where a delivery stands.
type Status string

const (
	StatusPending   Status = "pending"
	StatusDelivered Status = "delivered"
	StatusDead      Status = "dead"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	return s == StatusPending || s == StatusDelivered || s == StatusDead
}

// Delivery is one event bound for one target.
type Delivery struct {
	ID       int64
	Target   string
	EventKey Key
	Kind     Kind
	Source   Source
	Body     []byte
	Status   Status
	// Attempts is how many attempts have been made so far; the next attempt
	// is number Attempts+1.
	Attempts      int
	NextAttemptAt time.Time
	// CreatedAt is when the delivery was enqueued (the event's commit).
	CreatedAt   time.Time
	UpdatedAt   time.Time
	DeliveredAt time.Time
	LastError   string
	// LastStatusCode is the HTTP status of the last attempt; 0 when the
	// attempt got no response.
	LastStatusCode int
	// Channel, Chat and MsgID describe the delivery's event for operators;
	// only List fills them (claims never read them).
	Channel string
	Chat    string
	MsgID   string
}

// Result is what an attempt decided.
type Result string

const (
	// ResultDelivered: the target answered 2xx.
	ResultDelivered Result = "delivered"
	// ResultRetry: the attempt failed and will be retried at NextAttemptAt.
	ResultRetry Result = "retry"
	// ResultDead: the attempt failed permanently or was the last one allowed.
	ResultDead Result = "dead"
)

// Outcome is recorded for a claimed delivery after an attempt. Every outcome
// counts one attempt; a delivery the relay could not attempt (shutdown, store
// trouble) is released instead, which charges nothing.
type Outcome struct {
	Result        Result
	NextAttemptAt time.Time // for ResultRetry
	StatusCode    int       // HTTP status, 0 if none
	Error         string    // short reason, e.g. "http_503", "timeout"; empty when delivered
	At            time.Time // when the attempt finished
}
