package wammfake

import "net/http"

// Defaults of what channel_list reports for the account's channel.
const (
	DefaultAPIID    = "1"
	DefaultAPITip   = "whatsapp"
	DefaultPayState = "active"
	DefaultAPITag   = "wammfake"
	DefaultState    = "authorized"
)

// Channel is what channel_list reports for the account's channel. Zero fields
// take the defaults above (Phone: Options.PhoneAcc), and an empty Hook is the
// webhook URL in effect (SetWebhookURL), so by default WAMM's hook is where
// the fake really posts. Set Hook to report another URL while webhooks still
// go to the webhook URL.
//
// The handler answers {"err":0,"data":[entry]} with api_id as a number (the
// envelope key is not documented; the client reads it leniently). The filter
// "one" and no filter list the channel; active/archive match pay_state,
// statusOn matches state "authorized" and statusOff any other state (a match
// list may be empty); any other filter answers "fail get data".
type Channel struct {
	APIID    string
	APITip   string
	PayState string
	Phone    string
	APITag   string
	State    string
	Hook     string
}

// SetChannel replaces what channel_list reports (see Channel for defaults).
func (a *Account) SetChannel(c Channel) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.channel = c
}

// SetChannelState changes only the reported state (authorized,
// notAuthorized, starting, blocked).
func (a *Account) SetChannelState(state string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.channel.State = state
}

// Channel returns what channel_list reports now, defaults filled in.
func (a *Account) Channel() Channel {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.channelLocked()
}

func (a *Account) channelLocked() Channel {
	c := a.channel
	for _, f := range []struct {
		v   *string
		def string
	}{
		{&c.APIID, DefaultAPIID}, {&c.APITip, DefaultAPITip}, {&c.PayState, DefaultPayState},
		{&c.Phone, a.opts.PhoneAcc}, {&c.APITag, DefaultAPITag}, {&c.State, DefaultState},
		{&c.Hook, a.webhookURL},
	} {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	return c
}

type apiChannel struct {
	APIID    jsonNumber `json:"api_id"`
	APITip   string     `json:"api_tip"`
	PayState string     `json:"pay_state"`
	Phone    string     `json:"phone"`
	APITag   string     `json:"api_tag"`
	State    string     `json:"state"`
	Hook     string     `json:"hook"`
}

// jsonNumber writes a numeric api_id as a JSON number, anything else as a
// string.
type jsonNumber string

func (n jsonNumber) MarshalJSON() ([]byte, error) {
	s := string(n)
	if s == "" {
		return []byte(`""`), nil
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return marshal(s), nil
		}
	}
	return []byte(s), nil
}

// serveChannelsLocked answers channel_list; rest is the path after the token.
func (a *Account) serveChannelsLocked(w http.ResponseWriter, rest []string) {
	filter := ""
	if len(rest) > 0 {
		filter = rest[0]
	}
	c := a.channelLocked()
	var match bool
	switch filter {
	case "", "one":
		match = true
	case "active", "archive":
		match = c.PayState == filter
	case "statusOn":
		match = c.State == "authorized"
	case "statusOff":
		match = c.State != "authorized"
	default:
		a.errLocked(w, "fail get data")
		return
	}
	out := []apiChannel{}
	if match {
		out = append(out, apiChannel{
			APIID: jsonNumber(c.APIID), APITip: c.APITip, PayState: c.PayState, Phone: c.Phone,
			APITag: c.APITag, State: c.State, Hook: c.Hook,
		})
	}
	writeJSON(w, http.StatusOK, struct {
		Err  int          `json:"err"`
		Data []apiChannel `json:"data"`
	}{0, out})
}
