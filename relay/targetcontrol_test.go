package relay_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/store"
)

// fakeControl is a relay.TargetControl over a map.
type fakeControl struct {
	mu     sync.Mutex
	states map[string]relay.TargetState
	err    error
	calls  []string
}

func (f *fakeControl) TargetState(name string) (relay.TargetState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.states[name]
	return s, ok
}

func (f *fakeControl) SetPaused(_ context.Context, name string, paused bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	s := f.states[name]
	s.Paused = paused
	f.states[name] = s
	verb := "resume"
	if paused {
		verb = "pause"
	}
	f.calls = append(f.calls, verb+" "+name)
	return nil
}

func controlHarness(t *testing.T, ctl relay.TargetControl) *harness {
	t.Helper()
	return newHarness(t, func(o *relay.Options) {
		o.AdminToken = testToken
		o.Admin = &fakeAdmin{stats: func(context.Context) ([]store.TargetStats, error) {
			return []store.TargetStats{{Target: "crm", Pending: 4}, {Target: "removed", Pending: 2}}, nil
		}}
		o.Targets = []string{"crm", "bots"}
		o.TargetControl = ctl
	})
}

func TestPauseAndResumeATarget(t *testing.T) {
	ctl := &fakeControl{states: map[string]relay.TargetState{
		"crm":  {Breaker: "closed", RateLimit: 50},
		"bots": {Breaker: "open", BreakerOpenUntil: fixedNow.Add(30 * time.Second)},
	}}
	h := controlHarness(t, ctl)

	resp := h.do(t, http.MethodPost, "/api/v1/targets/crm/pause", bearer(testToken), nil)
	require.Equal(t, 200, resp.status, resp.body)
	require.JSONEq(t, `{"target":"crm","paused":true}`, resp.body)
	require.Len(t, h.logs.find(t, "targets.paused"), 1, "an audit line")

	resp = h.do(t, http.MethodGet, "/api/v1/targets", bearer(testToken), nil)
	require.Equal(t, 200, resp.status)
	require.JSONEq(t, `{"targets":[
		{"name":"crm","configured":true,"pending":4,"delivered":0,"dead":0,"oldest_pending_age_seconds":0,"last_error":"","last_error_at":null,
		 "paused":true,"breaker":"closed","rate_limit":50},
		{"name":"bots","configured":true,"pending":0,"delivered":0,"dead":0,"oldest_pending_age_seconds":0,"last_error":"","last_error_at":null,
		 "paused":false,"breaker":"open","breaker_open_until":"2026-03-01T12:00:30Z","rate_limit":0},
		{"name":"removed","configured":false,"pending":2,"delivered":0,"dead":0,"oldest_pending_age_seconds":0,"last_error":"","last_error_at":null,
		 "paused":false,"rate_limit":0}
	]}`, resp.body)

	resp = h.do(t, http.MethodPost, "/api/v1/targets/crm/resume", bearer(testToken), nil)
	require.Equal(t, 200, resp.status, resp.body)
	require.JSONEq(t, `{"target":"crm","paused":false}`, resp.body)
	require.Len(t, h.logs.find(t, "targets.resumed"), 1)
	require.Equal(t, []string{"pause crm", "resume crm"}, ctl.calls)
}

func TestPauseRefusals(t *testing.T) {
	tests := []struct {
		name   string
		ctl    relay.TargetControl
		path   string
		header http.Header
		want   int
	}{
		{"no token", &fakeControl{states: map[string]relay.TargetState{}}, "/api/v1/targets/crm/pause", nil, 401},
		{"unknown target", &fakeControl{states: map[string]relay.TargetState{}}, "/api/v1/targets/nope/pause", bearer(testToken), 404},
		{"a target no longer configured", &fakeControl{states: map[string]relay.TargetState{}}, "/api/v1/targets/removed/resume", bearer(testToken), 404},
		{"no control wired", nil, "/api/v1/targets/crm/pause", bearer(testToken), 501},
		{"store fails", &fakeControl{states: map[string]relay.TargetState{}, err: errors.New("database is locked")}, "/api/v1/targets/crm/pause", bearer(testToken), 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := controlHarness(t, tc.ctl)
			resp := h.do(t, http.MethodPost, tc.path, tc.header, nil)
			require.Equal(t, tc.want, resp.status, resp.body)
			if f, ok := tc.ctl.(*fakeControl); ok {
				require.Empty(t, f.calls)
			}
		})
	}
}
