package wammfake

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Handler serves the account's API under /api2/, as the vendor documents it:
//
//	GET /api2/msg_get_last/{token}/?col=N[&from_me=0|1]   and   /api2/msg_get_last/{token}/{N}
//	GET /api2/msg_get/{token}/?phone=P&col=N              and   /api2/msg_get/{token}/{P}/{N}
//
// Errors come back as HTTP 200 with {"err":"<code>"}: "token fail" for a
// wrong token, "col fail or more 100" unless 1 <= col <= 100, "phone fail"
// for msg_get without a phone, "msgs not be" when nothing matches. On
// success msg_data lists the newest messages first, msg_id and from_me as
// strings. from_me is also honoured in the path form, and any value other
// than 0 or 1 means both directions (WAMM documents neither).
//
// GET /api2/channel_list/{token}/[{filter}] is described at Channel.
func (a *Account) Handler() http.Handler {
	return http.HandlerFunc(a.serveAPI)
}

type apiMessage struct {
	MsgID    string  `json:"msg_id"`
	FromMe   string  `json:"from_me"`
	Phone    string  `json:"phone"`
	ChatName string  `json:"chat_name"`
	TipMsg   string  `json:"tip_msg"`
	MsgText  string  `json:"msg_text"`
	MsgLink  *string `json:"msg_link"`
	DateIns  string  `json:"date_ins"`
	DateUpd  string  `json:"date_upd"`
	State    string  `json:"state"`
}

func (a *Account) serveAPI(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api2/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	var seg []string
	for _, s := range strings.Split(rest, "/") {
		if s == "" {
			continue
		}
		u, err := url.PathUnescape(s)
		if err != nil {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		seg = append(seg, u)
	}
	if len(seg) == 0 || (seg[0] != "msg_get_last" && seg[0] != "msg_get" && seg[0] != "channel_list") {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats.APICalls++
	if f := a.failure; f != nil {
		a.stats.APIErrors++
		if f.Calls > 0 {
			if f.Calls--; f.Calls == 0 {
				a.failure = nil
			}
		}
		a.failLocked(w, *f)
		return
	}

	q := r.URL.Query()
	if len(seg) < 2 || seg[1] != a.opts.Token {
		a.errLocked(w, "token fail")
		return
	}
	if seg[0] == "channel_list" {
		a.serveChannelsLocked(w, seg[2:])
		return
	}
	var colText, phone string
	fromMe := -1
	switch seg[0] {
	case "msg_get_last":
		colText = q.Get("col")
		if len(seg) > 2 {
			colText = seg[2]
		}
		switch q.Get("from_me") {
		case "0":
			fromMe = 0
		case "1":
			fromMe = 1
		}
	case "msg_get":
		phone, colText = q.Get("phone"), q.Get("col")
		if len(seg) > 2 {
			phone = seg[2]
		}
		if len(seg) > 3 {
			colText = seg[3]
		}
	}
	col, err := strconv.Atoi(colText)
	if err != nil || col < 1 || col > 100 {
		a.errLocked(w, "col fail or more 100")
		return
	}
	if seg[0] == "msg_get" && phone == "" {
		a.errLocked(w, "phone fail")
		return
	}

	var out []apiMessage
	for i := len(a.messages) - 1; i >= 0 && len(out) < col; i-- {
		m := a.messages[i]
		if fromMe >= 0 && m.FromMe != fromMe || phone != "" && m.Phone != phone {
			continue
		}
		out = append(out, apiMessage{
			MsgID: m.ID, FromMe: strconv.Itoa(m.FromMe), Phone: m.Phone, ChatName: m.ChatName,
			TipMsg: m.TipMsg, MsgText: m.Text, DateIns: m.DateIns, DateUpd: m.DateUpd, State: m.State,
		})
	}
	if len(out) == 0 {
		a.errLocked(w, "msgs not be")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Err     int          `json:"err"`
		MsgData []apiMessage `json:"msg_data"`
	}{0, out})
}

func (a *Account) errLocked(w http.ResponseWriter, code string) {
	a.stats.APIErrors++
	writeJSON(w, http.StatusOK, map[string]string{"err": code})
}

func (a *Account) failLocked(w http.ResponseWriter, f APIFailure) {
	status := f.Status
	if status == 0 {
		status = http.StatusOK
	}
	if f.Err == "" {
		http.Error(w, http.StatusText(status), status)
		return
	}
	writeJSON(w, status, map[string]string{"err": f.Err})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body := marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
