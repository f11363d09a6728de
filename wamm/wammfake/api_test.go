package wammfake

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const token = "tok123"

var fixed = time.Date(2023, 5, 24, 19, 50, 15, 0, time.UTC)

func fixedNow() time.Time { return fixed }

type apiResponse struct {
	Err     any               `json:"err"`
	MsgData []json.RawMessage `json:"msg_data"`
}

func get(t *testing.T, srv *httptest.Server, path string) (int, apiResponse, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out apiResponse
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out, string(body)
}

func newAPI(t *testing.T) (*Account, *httptest.Server) {
	t.Helper()
	a := New(Options{Token: token, Now: fixedNow})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return a, srv
}

func ids(t *testing.T, r apiResponse) []string {
	t.Helper()
	var out []string
	for _, raw := range r.MsgData {
		var m struct {
			MsgID string `json:"msg_id"`
		}
		require.NoError(t, json.Unmarshal(raw, &m), "msg_id is a string")
		out = append(out, m.MsgID)
	}
	return out
}

func TestAPIValidation(t *testing.T) {
	a, srv := newAPI(t)
	a.Receive("79001234567", "in 1")  // 1000000
	a.SendOut("79001234567", "out 1") // 1000001
	a.Receive("79007654321", "in 2")  // 1000002
	a.SendOut("79007654321", "out 2") // 1000003
	a.Receive("79001234567", "in 3")  // 1000004

	tests := []struct {
		name string
		path string
		err  any      // expected err: float64(0) on success or the code
		ids  []string // on success, in order
	}{
		{"query form, newest first", "/api2/msg_get_last/" + token + "/?col=3", float64(0), []string{"1000004", "1000003", "1000002"}},
		{"path form", "/api2/msg_get_last/" + token + "/2", float64(0), []string{"1000004", "1000003"}},
		{"no trailing slash", "/api2/msg_get_last/" + token + "?col=1", float64(0), []string{"1000004"}},
		{"incoming only", "/api2/msg_get_last/" + token + "/?col=100&from_me=0", float64(0), []string{"1000004", "1000002", "1000000"}},
		{"outgoing only", "/api2/msg_get_last/" + token + "/?col=100&from_me=1", float64(0), []string{"1000003", "1000001"}},
		{"unknown from_me means both", "/api2/msg_get_last/" + token + "/?col=2&from_me=x", float64(0), []string{"1000004", "1000003"}},
		{"col is 100 at most", "/api2/msg_get_last/" + token + "/?col=101", "col fail or more 100", nil},
		{"col at least 1", "/api2/msg_get_last/" + token + "/?col=0", "col fail or more 100", nil},
		{"col missing", "/api2/msg_get_last/" + token + "/", "col fail or more 100", nil},
		{"col not a number", "/api2/msg_get_last/" + token + "/?col=ten", "col fail or more 100", nil},
		{"wrong token", "/api2/msg_get_last/nope/?col=5", "token fail", nil},
		{"no token", "/api2/msg_get_last/", "token fail", nil},
		{"token checked before col", "/api2/msg_get_last/nope/?col=500", "token fail", nil},
		{"chat, query form", "/api2/msg_get/" + token + "/?phone=79007654321&col=10", float64(0), []string{"1000003", "1000002"}},
		{"chat, path form", "/api2/msg_get/" + token + "/79001234567/2", float64(0), []string{"1000004", "1000001"}},
		{"chat without phone", "/api2/msg_get/" + token + "/?col=10", "phone fail", nil},
		{"chat with bad col", "/api2/msg_get/" + token + "/?phone=79001234567&col=101", "col fail or more 100", nil},
		{"chat with no messages", "/api2/msg_get/" + token + "/?phone=7000&col=10", "msgs not be", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, resp, body := get(t, srv, tc.path)
			require.Equal(t, http.StatusOK, status, "WAMM reports errors with HTTP 200")
			require.Equal(t, tc.err, resp.Err, body)
			if tc.ids != nil {
				require.Equal(t, tc.ids, ids(t, resp))
			}
		})
	}
}

func TestAPIEntryShape(t *testing.T) {
	a, srv := newAPI(t)
	a.SendOut("79001234567", "Good afternoon!")
	_, _, body := get(t, srv, "/api2/msg_get_last/"+token+"/?col=1")
	require.JSONEq(t, `{"err":0,"msg_data":[{"msg_id":"1000000","from_me":"1","phone":"79001234567",`+
		`"chat_name":"Contact 79001234567","tip_msg":"textMessage","msg_text":"Good afternoon!","msg_link":null,`+
		`"date_ins":"2023-05-24 19:50:15","date_upd":"2023-05-24 19:50:15","state":"sent"}]}`, body)
	require.True(t, strings.HasPrefix(body, `{"err":0,"msg_data":[{"msg_id":"1000000","from_me":"1","phone":`), "keys in the documented order: %s", body)
}

func TestAPIEmptyAccount(t *testing.T) {
	_, srv := newAPI(t)
	_, resp, _ := get(t, srv, "/api2/msg_get_last/"+token+"/?col=5")
	require.Equal(t, "msgs not be", resp.Err)
}

func TestAPIRoutes(t *testing.T) {
	a, srv := newAPI(t)
	a.Receive("7", "x")
	status, _, _ := get(t, srv, "/api2/msg_to/"+token+"/?phone=7&text=x")
	require.Equal(t, http.StatusNotFound, status)
	status, _, _ = get(t, srv, "/other/msg_get_last/"+token+"/?col=1")
	require.Equal(t, http.StatusNotFound, status)
	resp, err := srv.Client().Post(srv.URL+"/api2/msg_get_last/"+token+"/?col=1", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestAPIFailure(t *testing.T) {
	a, srv := newAPI(t)
	a.Receive("7", "x")
	path := "/api2/msg_get_last/" + token + "/?col=1"

	a.SetAPIFailure(APIFailure{Err: "acc not authorized", Calls: 2})
	for range 2 {
		status, resp, _ := get(t, srv, path)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "acc not authorized", resp.Err)
	}
	_, resp, _ := get(t, srv, path)
	require.Equal(t, float64(0), resp.Err, "recovers after Calls failures")

	a.SetAPIFailure(APIFailure{Status: http.StatusBadGateway})
	for range 3 {
		status, _, body := get(t, srv, path)
		require.Equal(t, http.StatusBadGateway, status)
		require.Contains(t, body, "Bad Gateway")
	}
	a.SetAPIFailure(APIFailure{Status: http.StatusForbidden, Err: "token fail"})
	status, resp, _ := get(t, srv, path)
	require.Equal(t, http.StatusForbidden, status)
	require.Equal(t, "token fail", resp.Err)

	a.ClearAPIFailure()
	_, resp, _ = get(t, srv, path)
	require.Equal(t, float64(0), resp.Err)

	st := a.Stats()
	require.Equal(t, 8, st.APICalls)
	require.Equal(t, 6, st.APIErrors)
}

func TestNewPanicsOnBadOptions(t *testing.T) {
	require.PanicsWithError(t, "wammfake options: Token is empty", func() { New(Options{}) })
	require.Panics(t, func() { New(Options{Token: "t", DropRate: 1.5}) })
}
