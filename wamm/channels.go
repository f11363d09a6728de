package wamm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
)

// Filters of channel_list.
const (
	ChannelsAll       = ""          // every channel of the account
	ChannelsActive    = "active"    // pay_state active
	ChannelsArchive   = "archive"   // pay_state archive
	ChannelsStatusOff = "statusOff" // not connected
	ChannelsStatusOn  = "statusOn"  // connected
	ChannelsOne       = "one"       // only the channel the token belongs to
)

// Channel states WAMM documents for channel_list; others may exist.
const (
	ChannelAuthorized    = "authorized"
	ChannelNotAuthorized = "notAuthorized"
	ChannelStarting      = "starting"
	ChannelBlocked       = "blocked"
)

// Channel is one channel_list entry. Every field is read leniently: a number
// where a string is expected is kept as its literal text, a missing or null
// field is "".
type Channel struct {
	APIID    string `json:"api_id"`    // channel number
	APITip   string `json:"api_tip"`   // whatsapp, tg, tg_bot, ...
	PayState string `json:"pay_state"` // active, archive
	Phone    string `json:"phone"`
	APITag   string `json:"api_tag"` // the channel's name
	State    string `json:"state"`   // authorized, notAuthorized, starting, blocked
	Hook     string `json:"hook"`    // the webhook URL set for the channel
}

// Channels calls channel_list with filter (one of the Channels* constants):
// the channels of the account, in the order WAMM lists them. "token fail"
// comes back as ErrTokenFail, "fail get data" as ErrFailGetData.
func (c *Client) Channels(ctx context.Context, filter string) ([]Channel, error) {
	switch filter {
	case ChannelsAll, ChannelsActive, ChannelsArchive, ChannelsStatusOff, ChannelsStatusOn, ChannelsOne:
	default:
		return nil, fmt.Errorf("list channels: unknown filter %q", filter)
	}
	chs, err := c.channelList(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	return chs, nil
}

func (c *Client) channelList(ctx context.Context, filter string) ([]Channel, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := c.base + "/channel_list/" + url.PathEscape(c.token) + "/" + url.PathEscape(filter)
	resp, err := c.rc.R().SetContext(ctx).Get(u)
	if err != nil {
		return nil, c.redact(classifyTransport(err))
	}
	if status := resp.StatusCode(); status < 200 || status > 299 {
		he := &HTTPError{Status: status}
		if _, derr := DecodeChannels(resp.Body()); derr != nil {
			var ae *APIError
			if errors.As(derr, &ae) {
				he.API = ae
			}
		}
		return nil, c.redact(he)
	}
	chs, err := DecodeChannels(resp.Body())
	if err != nil {
		return nil, c.redact(err)
	}
	return chs, nil
}

// DecodeChannels decodes a channel_list response. WAMM documents the entries'
// fields but not the envelope's key, so it is read leniently:
//
//   - an object whose err is a string other than "0" (or a non-zero number) is
//     an API error;
//   - the entries are the first member other than err that is an array, or an
//     object of objects (PHP's json_encode of an array with gaps), or a single
//     entry object (one with api_id, state or hook);
//   - a top-level array is the list itself, and a top-level object that has
//     api_id is a single entry;
//   - {"err":0} with nothing else is an empty list.
//
// Entries that are not objects are skipped. Anything that is not JSON, or
// neither an object nor an array, is ErrBadResponse.
func DecodeChannels(body []byte) ([]Channel, error) {
	if !json.Valid(body) {
		return nil, fmt.Errorf("decode channels: %w: not JSON", ErrBadResponse)
	}
	top := body[skipSpace(body, 0):]
	if isArray(top) {
		return channelEntries(top), nil
	}
	if !isObject(top) {
		return nil, fmt.Errorf("decode channels: %w: neither an object nor an array", ErrBadResponse)
	}
	var errField, data []byte
	var hasErr bool
	eachMember(top, func(m member) bool {
		switch {
		case m.keyIs("err"):
			errField, hasErr = m.value, true
		case data == nil && (isArray(m.value) || isObject(m.value)):
			data = m.value
		}
		return true
	})
	if hasErr {
		if err := envelopeError(errField); err != nil {
			return nil, fmt.Errorf("decode channels: %w", err)
		}
	}
	switch {
	case isChannelEntry(top):
		return []Channel{decodeChannel(top)}, nil
	case data == nil && hasErr:
		return nil, nil
	case data == nil:
		return nil, fmt.Errorf("decode channels: %w: no err field and no channel list", ErrBadResponse)
	case isArray(data):
		return channelEntries(data), nil
	case isChannelEntry(data):
		return []Channel{decodeChannel(data)}, nil
	default:
		var out []Channel
		eachMember(data, func(m member) bool {
			if isObject(m.value) {
				out = append(out, decodeChannel(m.value))
			}
			return true
		})
		return out, nil
	}
}

func channelEntries(arr []byte) []Channel {
	var out []Channel
	eachElement(arr, func(v []byte) {
		if isObject(v) {
			out = append(out, decodeChannel(v))
		}
	})
	return out
}

// isChannelEntry reports whether obj looks like one channel_list entry rather
// than a container of them.
func isChannelEntry(obj []byte) bool {
	found := false
	eachMember(obj, func(m member) bool {
		if m.keyIs("api_id") || m.keyIs("state") || m.keyIs("hook") {
			found = true
			return false
		}
		return true
	})
	return found
}

func decodeChannel(obj []byte) Channel {
	var ch Channel
	eachMember(obj, func(m member) bool {
		switch {
		case m.keyIs("api_id"):
			ch.APIID = textField(m.value)
		case m.keyIs("api_tip"):
			ch.APITip = textField(m.value)
		case m.keyIs("pay_state"):
			ch.PayState = textField(m.value)
		case m.keyIs("phone"):
			ch.Phone = textField(m.value)
		case m.keyIs("api_tag"):
			ch.APITag = textField(m.value)
		case m.keyIs("state"):
			ch.State = textField(m.value)
		case m.keyIs("hook"):
			ch.Hook = textField(m.value)
		}
		return true
	})
	return ch
}
