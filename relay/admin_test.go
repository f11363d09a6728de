package relay_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/store"
)

func adminHarness(t *testing.T, admin *fakeAdmin, targets ...string) *harness {
	t.Helper()
	return newHarness(t, func(o *relay.Options) {
		o.AdminToken = testToken
		o.Admin = admin
		o.Targets = targets
	})
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	h := newHarness(t, func(o *relay.Options) { o.Admin = &fakeAdmin{} })
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/deliveries"},
		{http.MethodPost, "/api/v1/deliveries/replay"},
		{http.MethodGet, "/api/v1/targets"},
	} {
		resp := h.do(t, tc.method, tc.path, bearer(""), strings.NewReader(`{"ids":[1]}`))
		require.Equal(t, 404, resp.status, tc.path)
	}
}

func TestAdminAuth(t *testing.T) {
	h := adminHarness(t, &fakeAdmin{})
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{name: "no header", header: nil, want: 401},
		{name: "wrong token", header: bearer("nope"), want: 401},
		{name: "token prefix", header: bearer(testToken[:5]), want: 401},
		{name: "empty bearer", header: bearer(""), want: 401},
		{name: "basic scheme", header: http.Header{"Authorization": {"Basic " + testToken}}, want: 401},
		{name: "bare token", header: http.Header{"Authorization": {testToken}}, want: 401},
		{name: "right token", header: bearer(testToken), want: 200},
		{name: "scheme is case-insensitive", header: http.Header{"Authorization": {"bearer " + testToken}}, want: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.do(t, http.MethodGet, "/api/v1/targets", tc.header, nil)
			require.Equal(t, tc.want, resp.status, resp.body)
			if tc.want == 401 {
				require.Contains(t, resp.header.Get("WWW-Authenticate"), "Bearer")
			}
		})
	}
}

func TestAdminListDeliveries(t *testing.T) {
	var mu sync.Mutex
	var got []store.ListFilter
	created := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	admin := &fakeAdmin{list: func(_ context.Context, f store.ListFilter) ([]event.Delivery, error) {
		mu.Lock()
		got = append(got, f)
		mu.Unlock()
		return []event.Delivery{
			{ID: 9, Target: "crm", EventKey: "msg:1", Kind: event.KindMsg, Source: event.SourceWebhook,
				Body: []byte(`{"secret-body":1}`), Status: event.StatusDead, Attempts: 25,
				NextAttemptAt: created.Add(time.Hour), CreatedAt: created, UpdatedAt: created.Add(2 * time.Hour),
				LastError: "http_503", LastStatusCode: 503},
			{ID: 7, Target: "crm", EventKey: "state:1:read", Kind: event.KindMsgState, Source: event.SourceReconcile,
				Status: event.StatusDelivered, Attempts: 1, CreatedAt: created, UpdatedAt: created,
				DeliveredAt: created.Add(time.Second)},
		}, nil
	}}
	h := adminHarness(t, admin, "crm")

	tests := []struct {
		name    string
		query   string
		want    int
		filter  store.ListFilter // when 200
		errPart string           // when 400: the parameter named
	}{
		{name: "defaults", query: "", want: 200, filter: store.ListFilter{Limit: 100}},
		{name: "all filters", query: "?status=dead&target=crm&limit=2&before_id=50", want: 200,
			filter: store.ListFilter{Status: event.StatusDead, Target: "crm", Limit: 2, BeforeID: 50}},
		{name: "limit capped", query: "?limit=5000", want: 200, filter: store.ListFilter{Limit: 1000}},
		{name: "unknown status", query: "?status=failed", want: 400, errPart: "status"},
		{name: "limit not a number", query: "?limit=ten", want: 400, errPart: "limit"},
		{name: "zero limit", query: "?limit=0", want: 400, errPart: "limit"},
		{name: "negative before_id", query: "?before_id=-3", want: 400, errPart: "before_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			resp := h.do(t, http.MethodGet, "/api/v1/deliveries"+tc.query, bearer(testToken), nil)
			require.Equal(t, tc.want, resp.status, resp.body)
			mu.Lock()
			defer mu.Unlock()
			if tc.want != 200 {
				require.Contains(t, resp.body, tc.errPart)
				require.Empty(t, got, "an invalid request must not reach the store")
				return
			}
			require.Equal(t, []store.ListFilter{tc.filter}, got)
		})
	}

	t.Run("shape and paging", func(t *testing.T) {
		resp := h.do(t, http.MethodGet, "/api/v1/deliveries?limit=2", bearer(testToken), nil)
		require.Equal(t, 200, resp.status)
		require.JSONEq(t, `{
			"deliveries": [
				{"id":9,"target":"crm","event_key":"msg:1","kind":"msg","source":"webhook","status":"dead","attempts":25,
				 "next_attempt_at":"2026-03-01T11:00:00Z","created_at":"2026-03-01T10:00:00Z","updated_at":"2026-03-01T12:00:00Z",
				 "delivered_at":null,"last_error":"http_503","last_status_code":503},
				{"id":7,"target":"crm","event_key":"state:1:read","kind":"msg_state","source":"reconcile","status":"delivered","attempts":1,
				 "next_attempt_at":null,"created_at":"2026-03-01T10:00:00Z","updated_at":"2026-03-01T10:00:00Z",
				 "delivered_at":"2026-03-01T10:00:01Z","last_error":"","last_status_code":0}
			],
			"next_before_id": 7}`, resp.body)

		resp = h.do(t, http.MethodGet, "/api/v1/deliveries?limit=3", bearer(testToken), nil)
		require.Contains(t, resp.body, `"next_before_id":0`, "a short page is the last one")
	})

	t.Run("store error", func(t *testing.T) {
		h := adminHarness(t, &fakeAdmin{list: func(context.Context, store.ListFilter) ([]event.Delivery, error) {
			return nil, errors.New("db gone")
		}})
		resp := h.do(t, http.MethodGet, "/api/v1/deliveries", bearer(testToken), nil)
		require.Equal(t, 503, resp.status)
		require.NotContains(t, resp.body, "db gone")
	})
}

func TestAdminReplay(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    int
		req     store.ReplayRequest // when 200 (Now is checked apart)
		errPart string
	}{
		{name: "by ids", body: `{"ids":[3,1,2]}`, want: 200, req: store.ReplayRequest{IDs: []int64{3, 1, 2}}},
		{name: "dead of one target", body: `{"target":"crm","status":"dead"}`, want: 200,
			req: store.ReplayRequest{Target: "crm", Status: event.StatusDead}},
		{name: "delivered of one target", body: `{"target":"crm","status":"delivered"}`, want: 200,
			req: store.ReplayRequest{Target: "crm", Status: event.StatusDelivered}},
		{name: "dead of every target", body: `{"status":"dead"}`, want: 200,
			req: store.ReplayRequest{Status: event.StatusDead}},
		{name: "ids with target", body: `{"ids":[1],"target":"crm"}`, want: 400, errPart: "exclusive"},
		{name: "ids with status", body: `{"ids":[1],"status":"dead"}`, want: 400, errPart: "exclusive"},
		{name: "empty ids", body: `{"ids":[]}`, want: 400, errPart: "ids"},
		{name: "zero id", body: `{"ids":[0]}`, want: 400, errPart: "ids"},
		{name: "pending status", body: `{"target":"crm","status":"pending"}`, want: 400, errPart: "status"},
		{name: "target without status", body: `{"target":"crm"}`, want: 400, errPart: "status"},
		{name: "unknown target", body: `{"target":"nope","status":"dead"}`, want: 400, errPart: "target"},
		{name: "empty object", body: `{}`, want: 400, errPart: "status"},
		{name: "not JSON", body: `ids=1`, want: 400},
		{name: "unknown field", body: `{"id":[1]}`, want: 400},
		{name: "ids not numbers", body: `{"ids":["1"]}`, want: 400},
		{name: "trailing data", body: `{"ids":[1]}{"ids":[2]}`, want: 400},
		{name: "empty body", body: ``, want: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []store.ReplayRequest
			h := adminHarness(t, &fakeAdmin{replay: func(_ context.Context, r store.ReplayRequest) (int, error) {
				got = append(got, r)
				return 4, nil
			}}, "crm", "erp")
			resp := h.do(t, http.MethodPost, "/api/v1/deliveries/replay", bearer(testToken), strings.NewReader(tc.body))
			require.Equal(t, tc.want, resp.status, resp.body)
			if tc.want != 200 {
				require.Contains(t, resp.body, `"ok":false`)
				require.Contains(t, resp.body, tc.errPart)
				require.Empty(t, got)
				return
			}
			require.JSONEq(t, `{"replayed":4}`, resp.body)
			require.Len(t, got, 1)
			require.True(t, fixedNow.Equal(got[0].Now))
			got[0].Now = time.Time{}
			require.Equal(t, tc.req, got[0])
			require.Len(t, h.logs.find(t, "deliveries.replayed"), 1)
		})
	}
}

func TestAdminTargetsIncludesConfiguredWithoutDeliveries(t *testing.T) {
	admin := &fakeAdmin{stats: func(context.Context) ([]store.TargetStats, error) {
		return []store.TargetStats{
			{Target: "zombie", Dead: 2},
			{Target: "crm", Pending: 3, Delivered: 10, Dead: 1, OldestPending: fixedNow.Add(-90 * time.Second),
				LastError: "timeout", LastErrorAt: fixedNow.Add(-time.Minute)},
			{Target: "archived", Delivered: 5},
		}, nil
	}}
	h := adminHarness(t, admin, "erp", "crm", "new")
	resp := h.do(t, http.MethodGet, "/api/v1/targets", bearer(testToken), nil)
	require.Equal(t, 200, resp.status)
	require.JSONEq(t, `{"targets":[
		{"name":"erp","configured":true,"pending":0,"delivered":0,"dead":0,"oldest_pending_age_seconds":0,"last_error":"","last_error_at":null,"paused":false,"rate_limit":0},
		{"name":"crm","configured":true,"pending":3,"delivered":10,"dead":1,"oldest_pending_age_seconds":90,"last_error":"timeout","last_error_at":"2026-03-01T11:59:00Z","paused":false,"rate_limit":0},
		{"name":"new","configured":true,"pending":0,"delivered":0,"dead":0,"oldest_pending_age_seconds":0,"last_error":"","last_error_at":null,"paused":false,"rate_limit":0},
		{"name":"archived","configured":false,"pending":0,"delivered":5,"dead":0,"oldest_pending_age_seconds":0,"last_error":"","last_error_at":null,"paused":false,"rate_limit":0},
		{"name":"zombie","configured":false,"pending":0,"delivered":0,"dead":2,"oldest_pending_age_seconds":0,"last_error":"","last_error_at":null,"paused":false,"rate_limit":0}
	]}`, resp.body)
}
