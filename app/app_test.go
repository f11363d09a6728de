package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/app"
	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/postgres"
)

const waitLong = 10 * time.Second

// relayUnderTest is a whole relay running in-process on a real SQLite file.
type relayUnderTest struct {
	app  *app.App
	base string
	logs *lockedWriter
	stop func() error
	// closeTimesOut is set by a test that left the database unanswering:
	// closing the store then times out.
	closeTimesOut atomic.Bool
}

func testConfig(t *testing.T, targets ...config.Target) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = config.D(5 * time.Second)
	cfg.Store.DSN = filepath.Join(t.TempDir(), "relay.db")
	cfg.Reconcile.Enabled = false
	cfg.Delivery.BackoffInitial = config.D(5 * time.Millisecond)
	cfg.Delivery.BackoffMax = config.D(20 * time.Millisecond)
	cfg.Delivery.Timeout = config.D(2 * time.Second)
	cfg.Log.Level = "debug"
	cfg.Targets = targets
	return cfg
}

func target(name, url string, events ...string) config.Target {
	return config.Target{Name: name, URL: url, Events: events}
}

// startRelay runs a relay for cfg until the test ends; tweaks adjust its
// app.Options.
func startRelay(t *testing.T, cfg config.Config, tweaks ...func(*app.Options)) *relayUnderTest {
	t.Helper()
	logs := &lockedWriter{w: &bytes.Buffer{}}
	log := logrus.New()
	log.SetOutput(logs)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.JSONFormatter{})

	ctx, cancel := context.WithCancel(context.Background())
	opts := app.Options{Config: cfg, Logger: log, Version: "test"}
	for _, tweak := range tweaks {
		tweak(&opts)
	}
	a, err := app.New(ctx, opts)
	require.NoError(t, err)
	addr, err := a.Listen()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var stopped atomic.Bool
	stop := func() error {
		if stopped.Swap(true) {
			return nil
		}
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(waitLong):
			return fmt.Errorf("relay did not stop within %s", waitLong)
		}
	}
	r := &relayUnderTest{app: a, base: "http://" + addr.String(), logs: logs, stop: stop}
	t.Cleanup(func() {
		require.NoError(t, stop())
		if err := a.Close(); !r.closeTimesOut.Load() || !errors.Is(err, postgres.ErrCloseTimeout) {
			require.NoError(t, err)
		}
	})
	return r
}

func (r *relayUnderTest) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(r.base+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func msgBody(id any, state string) string {
	idJSON := fmt.Sprint(id)
	if s, ok := id.(string); ok {
		idJSON = fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf(`{"tip":"msg","msg_data":{"msg_id":%s,"qoute_msg_id":null,"from_api":0,"from_me":0,`+
		`"phone_acc":"79000000000","phone":"79001234567","chat_name":"Ivan","tip_msg":"textMessage",`+
		`"msg_text":"hello","msg_link":null,"date_ins":"2023-05-24 12:35:29","state":%q,"senderId":null,"senderName":null}}`, idJSON, state)
}

func stateBody(id int, state string) string {
	return fmt.Sprintf(`{"tip":"msg_state","msg_data":{"msg_id":%d,"from_me":1,"phone":"79001234567","state":%q}}`, id, state)
}

func TestWebhookFansOutToMatchingTargetsOnce(t *testing.T) {
	crm := testutil.NewTarget(t)
	analytics := testutil.NewTarget(t)
	everything := testutil.NewTarget(t)
	r := startRelay(t, testConfig(t,
		target("crm", crm.URL, "msg", "msg_state"),
		target("analytics", analytics.URL, "msg"),
		target("everything", everything.URL),
	))

	// Odd whitespace on purpose: targets must get the body byte for byte.
	msg := "{ \"tip\" : \"msg\", \"msg_data\": {\"msg_id\": 1001, \"state\": \"received\"} }\n"
	state := stateBody(1001, "not sent")
	raw := `{"tip":"channel_state","data":{"x":1}}`
	for _, body := range []string{msg, state, raw} {
		code, resp := r.post(t, "/webhook", body)
		require.Equal(t, http.StatusOK, code, resp)
		require.JSONEq(t, `{"ok":true,"duplicate":false}`, resp)
	}

	rawKey := string(event.RawKey([]byte(raw)))
	crm.WaitDelivered(t, waitLong, "msg:1001", "state:1001:not%20sent")
	analytics.WaitDelivered(t, waitLong, "msg:1001")
	everything.WaitDelivered(t, waitLong, "msg:1001", "state:1001:not%20sent", rawKey)

	// Every delivery is recorded delivered on the first attempt, so nothing
	// is left that could be sent twice.
	ds := waitAllDelivered(t, r, 6) // 2 for crm, 1 for analytics, 3 for everything
	for _, d := range ds {
		require.Equal(t, event.StatusDelivered, d.Status, "delivery %d to %s", d.ID, d.Target)
		require.Equal(t, 1, d.Attempts)
	}
	require.Equal(t, map[string]int{"msg:1001": 1, "state:1001:not%20sent": 1}, crm.Delivered())
	require.Equal(t, map[string]int{"msg:1001": 1}, analytics.Delivered())
	require.Equal(t, map[string]int{"msg:1001": 1, "state:1001:not%20sent": 1, rawKey: 1}, everything.Delivered())

	for _, req := range everything.Requests() {
		switch req.Key() {
		case "msg:1001":
			require.Equal(t, msg, string(req.Body), "body must be relayed byte for byte")
		case rawKey:
			require.Equal(t, raw, string(req.Body))
		}
		require.Equal(t, "application/json", req.Header.Get("Content-Type"))
		require.Equal(t, "webhook", req.Header.Get("X-Wamm-Relay-Source"))
		require.Equal(t, "default", req.Header.Get("X-Wamm-Channel"))
		require.Equal(t, "1", req.Header.Get("X-Wamm-Relay-Attempt"))
		require.NotEmpty(t, req.Header.Get("webhook-timestamp"))
	}
}

// waitAllDelivered waits until the store holds want deliveries, all recorded
// delivered (a target sees the request just before the outcome is recorded).
func waitAllDelivered(t *testing.T, r *relayUnderTest, want int) []event.Delivery {
	t.Helper()
	var ds []event.Delivery
	require.Eventually(t, func() bool {
		var err error
		ds, err = r.app.Store().List(context.Background(), store.ListFilter{Limit: 1000})
		if err != nil || len(ds) != want {
			return false
		}
		for _, d := range ds {
			if d.Status != event.StatusDelivered {
				return false
			}
		}
		return true
	}, waitLong, 5*time.Millisecond, "want %d delivered deliveries", want)
	return ds
}

func TestDuplicatesAreDeliveredOnce(t *testing.T) {
	tgt := testutil.NewTarget(t)
	cfg := testConfig(t, target("crm", tgt.URL))
	r := startRelay(t, cfg)

	tests := []struct {
		name    string
		body    string
		wantDup bool
	}{
		{"first copy", msgBody(77, "received"), false},
		{"identical retry from WAMM", msgBody(77, "received"), true},
		{"same id sent as a string", msgBody("77", "received"), true},
		{"a status of that message is a new event", stateBody(77, "viewed"), false},
		{"the same status again", stateBody(77, "viewed"), true},
	}
	for _, tt := range tests {
		code, resp := r.post(t, "/webhook", tt.body)
		require.Equal(t, http.StatusOK, code, tt.name)
		require.JSONEq(t, fmt.Sprintf(`{"ok":true,"duplicate":%v}`, tt.wantDup), resp, tt.name)
	}
	tgt.WaitDelivered(t, waitLong, "msg:77", "state:77:viewed")
	waitAllDelivered(t, r, 2)

	// A restart empties the LRU: the store's unique key still catches the repeat.
	require.NoError(t, r.stop())
	require.NoError(t, r.app.Close())
	r2 := startRelay(t, cfg)
	code, resp := r2.post(t, "/webhook", msgBody(77, "received"))
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"ok":true,"duplicate":true}`, resp)

	ds, err := r2.app.Store().List(context.Background(), store.ListFilter{Limit: 10})
	require.NoError(t, err)
	require.Len(t, ds, 2)
	require.Equal(t, map[string]int{"msg:77": 1, "state:77:viewed": 1}, tgt.Delivered())
}

func TestFailingTargetDoesNotDelayOthersAndRecovers(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	flaky := testutil.NewTarget(t)
	flaky.Respond(func(*http.Request, []byte) int {
		if failing.Load() {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	healthy := testutil.NewTarget(t)
	r := startRelay(t, testConfig(t, target("flaky", flaky.URL), target("healthy", healthy.URL)))

	var keys []string
	for i := 1; i <= 5; i++ {
		code, _ := r.post(t, "/webhook", msgBody(i, "received"))
		require.Equal(t, http.StatusOK, code)
		keys = append(keys, fmt.Sprintf("msg:%d", i))
	}
	// The healthy target gets everything while the flaky one is still failing.
	healthy.WaitDelivered(t, waitLong, keys...)
	flaky.WaitFor(t, waitLong, "retries", func(reqs []testutil.Request) bool { return len(reqs) >= 10 })
	require.Empty(t, flaky.Delivered())

	failing.Store(false)
	flaky.WaitDelivered(t, waitLong, keys...)
	for _, k := range keys {
		require.Equal(t, 1, flaky.Delivered()[k], k)
		require.Equal(t, 1, healthy.Delivered()[k], k)
	}
	// Retries carry growing attempt numbers.
	var maxAttempt string
	for _, req := range flaky.Requests() {
		if req.Key() == "msg:1" {
			maxAttempt = req.Header.Get("X-Wamm-Relay-Attempt")
		}
	}
	require.NotEqual(t, "1", maxAttempt)
}

func TestDeliveryDiesAfterMaxAttempts(t *testing.T) {
	down := testutil.NewTarget(t)
	down.Respond(func(*http.Request, []byte) int { return http.StatusBadGateway })
	tc := target("down", down.URL)
	tc.MaxAttempts = 3
	r := startRelay(t, testConfig(t, tc))

	code, _ := r.post(t, "/webhook", msgBody(5, "received"))
	require.Equal(t, http.StatusOK, code)
	require.Eventually(t, func() bool {
		ds, err := r.app.Store().List(context.Background(), store.ListFilter{Status: event.StatusDead})
		return err == nil && len(ds) == 1
	}, waitLong, 10*time.Millisecond)

	ds, err := r.app.Store().List(context.Background(), store.ListFilter{})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, 3, ds[0].Attempts)
	require.Equal(t, "http_502", ds[0].LastError)
	require.Len(t, down.Requests(), 3, "no attempt after the last one")
}

func TestBadInputIsRejectedAndNothingStored(t *testing.T) {
	tgt := testutil.NewTarget(t)
	cfg := testConfig(t, target("crm", tgt.URL))
	cfg.Server.WebhookSecret = "s3cret-value-123"
	cfg.Server.MaxBodyBytes = 1024
	r := startRelay(t, cfg)

	good := msgBody(9, "received")
	tests := []struct {
		name string
		path string
		body string
		want int
	}{
		{"malformed JSON", "/webhook/s3cret-value-123", `{"tip":"msg",`, http.StatusBadRequest},
		{"JSON array", "/webhook/s3cret-value-123", `[{"tip":"msg"}]`, http.StatusBadRequest},
		{"JSON string", "/webhook/s3cret-value-123", `"msg"`, http.StatusBadRequest},
		{"oversize body", "/webhook/s3cret-value-123", `{"tip":"raw","pad":"` + strings.Repeat("x", 2048) + `"}`, http.StatusRequestEntityTooLarge},
		{"missing secret", "/webhook", good, http.StatusUnauthorized},
		{"wrong secret in path", "/webhook/guess", good, http.StatusUnauthorized},
		{"wrong secret in query", "/webhook?secret=guess", good, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, resp := r.post(t, tt.path, tt.body)
			require.Equal(t, tt.want, code, resp)
		})
	}
	ds, err := r.app.Store().List(context.Background(), store.ListFilter{})
	require.NoError(t, err)
	require.Empty(t, ds, "rejected requests store nothing")
	has, err := r.app.Store().HasEvents(context.Background())
	require.NoError(t, err)
	require.False(t, has)

	// The relay keeps serving, with the secret in either place.
	code, _ := r.post(t, "/webhook?secret=s3cret-value-123", good)
	require.Equal(t, http.StatusOK, code)
	code, resp := r.post(t, "/webhook/s3cret-value-123", good)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"ok":true,"duplicate":true}`, resp)
	tgt.WaitDelivered(t, waitLong, "msg:9")
	require.Len(t, tgt.Requests(), 1)
	require.NotContains(t, r.logs.String(), "s3cret-value-123", "the webhook secret must never be logged")
}

func TestShutdownDrainsAndReadinessGoesDown(t *testing.T) {
	tgt := testutil.NewTarget(t)
	r := startRelay(t, testConfig(t, target("crm", tgt.URL)))
	resp, err := http.Get(r.base + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	code, _ := r.post(t, "/webhook", msgBody(1, "received"))
	require.Equal(t, http.StatusOK, code)
	tgt.WaitDelivered(t, waitLong, "msg:1")
	require.NoError(t, r.stop(), "a clean drain returns nil")
	_, err = http.Get(r.base + "/healthz")
	require.Error(t, err, "the listener is closed after the drain")
}

func TestRelayWithoutTargetsStoresAndStaysUp(t *testing.T) {
	r := startRelay(t, testConfig(t))
	code, resp := r.post(t, "/webhook", msgBody(3, "received"))
	require.Equal(t, http.StatusOK, code, resp)
	code, resp = r.post(t, "/webhook", msgBody(3, "received"))
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"ok":true,"duplicate":true}`, resp, "the event is stored for dedup even with nowhere to deliver it")
	resp2, err := http.Get(r.base + "/readyz")
	require.NoError(t, err)
	resp2.Body.Close()
	require.Equal(t, http.StatusOK, resp2.StatusCode, "an idle dispatcher must not stop the run group")
}
