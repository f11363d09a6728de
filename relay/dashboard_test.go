package relay_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/relay/ui"
	"github.com/wamm-relay/wamm-relay/store"
)

// uiClient talks to the dashboard like a browser that does not follow
// redirects, so each answer is seen.
type uiClient struct {
	t      *testing.T
	base   string
	cookie *http.Cookie
}

func (c *uiClient) do(method, path string, header http.Header, body string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	require.NoError(c.t, err)
	for k, vs := range header {
		req.Header[k] = vs
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func (c *uiClient) login(token string, header http.Header) *http.Response {
	c.t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	for k, vs := range header {
		h[k] = vs
	}
	resp := c.do(http.MethodPost, "/ui/login", h, url.Values{"token": {token}}.Encode())
	for _, ck := range resp.Cookies() {
		if ck.Name == ui.CookieName {
			c.cookie = ck
		}
	}
	return resp
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

func (c *uiClient) csrf() string {
	c.t.Helper()
	resp := c.do(http.MethodGet, "/ui/", nil, "")
	require.Equal(c.t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	m := csrfMeta.FindStringSubmatch(string(b))
	require.Len(c.t, m, 2, "index page carries the CSRF token")
	return m[1]
}

func dashboardHarness(t *testing.T, now func() time.Time) (*harness, *uiClient, *atomic.Int32) {
	t.Helper()
	var replays atomic.Int32
	h := newHarness(t, func(o *relay.Options) {
		o.AdminToken = testToken
		o.Admin = &fakeAdmin{replay: func(context.Context, store.ReplayRequest) (int, error) {
			replays.Add(1)
			return 1, nil
		}}
		if now != nil {
			o.Now = now
		}
	})
	return h, &uiClient{t: t, base: h.http.URL}, &replays
}

func TestDashboardLogin(t *testing.T) {
	_, c, _ := dashboardHarness(t, nil)

	resp := c.do(http.MethodGet, "/ui/", nil, "")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "no session: to the login form")
	require.Equal(t, "/ui/login", resp.Header.Get("Location"))
	require.Equal(t, http.StatusUnauthorized, c.do(http.MethodGet, "/api/v1/targets", nil, "").StatusCode)

	resp = c.login("wrong", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Nil(t, c.cookie, "a wrong token gets no session")

	resp = c.login(testToken, http.Header{"Origin": {"https://evil.example"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "cross-origin login")
	require.Nil(t, c.cookie)

	resp = c.login(testToken, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.NotNil(t, c.cookie)
	require.True(t, c.cookie.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c.cookie.SameSite)
	require.Equal(t, "/", c.cookie.Path)
	require.False(t, c.cookie.Secure, "plain http")
	require.NotContains(t, c.cookie.Value, testToken)

	require.Equal(t, http.StatusOK, c.do(http.MethodGet, "/api/v1/targets", nil, "").StatusCode, "the cookie opens the API")
	require.Equal(t, http.StatusOK, c.do(http.MethodGet, "/ui/static/app.js", nil, "").StatusCode)

	t.Run("tampered cookie", func(t *testing.T) {
		bad := *c
		ck := *c.cookie
		ck.Value = ck.Value[:len(ck.Value)-2] + "xx"
		bad.cookie = &ck
		require.Equal(t, http.StatusUnauthorized, bad.do(http.MethodGet, "/api/v1/targets", nil, "").StatusCode)
	})
	t.Run("secure behind https", func(t *testing.T) {
		sc := &uiClient{t: t, base: c.base}
		sc.login(testToken, http.Header{"X-Forwarded-Proto": {"https"}})
		require.NotNil(t, sc.cookie)
		require.True(t, sc.cookie.Secure)
	})
	t.Run("logout ends the session", func(t *testing.T) {
		lc := &uiClient{t: t, base: c.base}
		lc.login(testToken, nil)
		tok := lc.csrf()
		resp := lc.do(http.MethodPost, "/ui/logout", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, url.Values{"csrf": {tok}}.Encode())
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, http.StatusUnauthorized, lc.do(http.MethodGet, "/api/v1/targets", nil, "").StatusCode)
	})
}

func TestDashboardSessionExpires(t *testing.T) {
	var now atomic.Int64
	now.Store(fixedNow.UnixNano())
	_, c, _ := dashboardHarness(t, func() time.Time { return time.Unix(0, now.Load()) })
	c.login(testToken, nil)
	require.Equal(t, http.StatusOK, c.do(http.MethodGet, "/api/v1/targets", nil, "").StatusCode)
	now.Add(int64(ui.DefaultSessionTTL - time.Second))
	require.Equal(t, http.StatusOK, c.do(http.MethodGet, "/api/v1/targets", nil, "").StatusCode, "just before expiry")
	now.Add(int64(time.Second))
	require.Equal(t, http.StatusUnauthorized, c.do(http.MethodGet, "/api/v1/targets", nil, "").StatusCode, "expired")
	require.Equal(t, http.StatusSeeOther, c.do(http.MethodGet, "/ui/", nil, "").StatusCode)
}

func TestDashboardCSRF(t *testing.T) {
	h, c, replays := dashboardHarness(t, nil)
	c.login(testToken, nil)
	tok := c.csrf()
	host := strings.TrimPrefix(h.http.URL, "http://")
	body := `{"ids":[1]}`
	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no token", http.Header{}, http.StatusForbidden},
		{"wrong token", http.Header{"X-Csrf-Token": {tok + "x"}}, http.StatusForbidden},
		{"token of another session", http.Header{"X-Csrf-Token": {otherCSRF(t, c.base)}}, http.StatusForbidden},
		{"cross-origin", http.Header{"X-Csrf-Token": {tok}, "Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"cross-site fetch", http.Header{"X-Csrf-Token": {tok}, "Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"same origin with token", http.Header{"X-Csrf-Token": {tok}, "Origin": {"http://" + host}, "Sec-Fetch-Site": {"same-origin"}}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := replays.Load()
			tc.header.Set("Content-Type", "application/json")
			resp := c.do(http.MethodPost, "/api/v1/deliveries/replay", tc.header, body)
			require.Equal(t, tc.want, resp.StatusCode)
			if tc.want != http.StatusOK {
				require.Equal(t, before, replays.Load(), "a refused request changes nothing")
			}
		})
	}
	t.Run("bearer needs no CSRF token", func(t *testing.T) {
		resp := h.do(t, http.MethodPost, "/api/v1/deliveries/replay", http.Header{"Authorization": {"Bearer " + testToken}, "Content-Type": {"application/json"}}, strings.NewReader(body))
		require.Equal(t, http.StatusOK, resp.status)
	})
}

func otherCSRF(t *testing.T, base string) string {
	o := &uiClient{t: t, base: base}
	o.login(testToken, nil)
	return o.csrf()
}

func TestAdminGetDelivery(t *testing.T) {
	var asked store.ListFilter
	h := adminHarness(t, &fakeAdmin{list: func(_ context.Context, f store.ListFilter) ([]event.Delivery, error) {
		asked = f
		if f.ID != 7 {
			return nil, nil
		}
		return []event.Delivery{{ID: 7, Target: "a", Status: event.StatusDead, Body: []byte(`{"tip":"msg"}`), Chat: "7900", MsgID: "42", Channel: "default"}}, nil
	}})
	resp := h.do(t, http.MethodGet, "/api/v1/deliveries/7", bearer(testToken), nil)
	require.Equal(t, http.StatusOK, resp.status, resp.body)
	require.Equal(t, int64(7), asked.ID)
	var d map[string]any
	require.NoError(t, json.Unmarshal([]byte(resp.body), &d))
	require.Equal(t, `{"tip":"msg"}`, d["body"])
	require.Equal(t, "7900", d["chat"])
	require.Equal(t, "42", d["msg_id"])
	require.Equal(t, http.StatusNotFound, h.do(t, http.MethodGet, "/api/v1/deliveries/8", bearer(testToken), nil).status)
	require.Equal(t, http.StatusBadRequest, h.do(t, http.MethodGet, "/api/v1/deliveries/x", bearer(testToken), nil).status)

	resp = h.do(t, http.MethodGet, "/api/v1/deliveries?msg_id=42&chat=7900&channel=sales", bearer(testToken), nil)
	require.Equal(t, http.StatusOK, resp.status)
	require.Equal(t, store.ListFilter{MsgID: "42", Chat: "7900", Channel: "sales", Limit: relay.DefaultListLimit}, asked)
}

func TestAdminOverview(t *testing.T) {
	var now atomic.Int64
	now.Store(fixedNow.UnixNano())
	h := newHarness(t, func(o *relay.Options) {
		o.AdminToken = testToken
		o.Targets = []string{"a", "b"}
		o.Admin = &fakeAdmin{stats: func(context.Context) ([]store.TargetStats, error) {
			return []store.TargetStats{{Target: "a", Pending: 2, Dead: 1, OldestPending: fixedNow.Add(-time.Minute)}}, nil
		}}
		o.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	get := func() map[string]any {
		resp := h.do(t, http.MethodGet, "/api/v1/overview", bearer(testToken), nil)
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(resp.body), &m))
		return m
	}
	first := get()
	require.InDelta(t, 2, first["pending"], 0)
	require.InDelta(t, 1, first["dead"], 0)
	require.Len(t, first["targets"], 2)
	for i := 0; i < 10; i++ {
		require.Equal(t, http.StatusOK, h.post(t, "/webhook/"+testSecret, `{"tip":"msg","msg_id":`+string(rune('0'+i))+`}`).status)
	}
	now.Add(int64(10 * time.Second))
	ing := get()["ingest"].(map[string]any)
	require.InDelta(t, 10, ing["accepted_total"], 0)
	require.InDelta(t, 1.0, ing["accepted_per_second"], 0.001, "10 accepted over 10 s")
	require.InDelta(t, 10, ing["window_seconds"], 0.001)
}

// attemptAdmin is a fakeAdmin that keeps an attempt log.
type attemptAdmin struct {
	*fakeAdmin
	attempts map[int64][]store.Attempt
}

func (a attemptAdmin) Attempts(_ context.Context, id int64) ([]store.Attempt, error) {
	return a.attempts[id], nil
}

func TestAdminGetDeliveryAttempts(t *testing.T) {
	fa := &fakeAdmin{list: func(_ context.Context, f store.ListFilter) ([]event.Delivery, error) {
		return []event.Delivery{{ID: f.ID, Target: "a", Status: event.StatusDead}}, nil
	}}
	withLog := adminHarnessFor(t, attemptAdmin{fakeAdmin: fa, attempts: map[int64][]store.Attempt{
		3: {{Attempt: 1, At: fixedNow, StatusCode: 503, Error: "http_503"}, {Attempt: 2, At: fixedNow, Error: "timeout"}},
	}})
	var d struct {
		AttemptsLog *[]map[string]any `json:"attempts_log"`
	}
	resp := withLog.do(t, http.MethodGet, "/api/v1/deliveries/3", bearer(testToken), nil)
	require.Equal(t, http.StatusOK, resp.status)
	require.NoError(t, json.Unmarshal([]byte(resp.body), &d))
	require.NotNil(t, d.AttemptsLog)
	require.Len(t, *d.AttemptsLog, 2)
	require.Equal(t, "http_503", (*d.AttemptsLog)[0]["error"])
	require.InDelta(t, 503, (*d.AttemptsLog)[0]["status_code"], 0)
	require.InDelta(t, 2, (*d.AttemptsLog)[1]["attempt"], 0)

	resp = withLog.do(t, http.MethodGet, "/api/v1/deliveries/4", bearer(testToken), nil)
	require.JSONEq(t, "[]", string(mustField(t, resp.body, "attempts_log")), "a log, empty")

	without := adminHarness(t, fa)
	resp = without.do(t, http.MethodGet, "/api/v1/deliveries/3", bearer(testToken), nil)
	require.NotContains(t, resp.body, "attempts_log", "no log: the field is absent")
}

func adminHarnessFor(t *testing.T, admin relay.Admin) *harness {
	t.Helper()
	return newHarness(t, func(o *relay.Options) {
		o.AdminToken = testToken
		o.Admin = admin
	})
}

func mustField(t *testing.T, body, field string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(body), &m))
	return m[field]
}
