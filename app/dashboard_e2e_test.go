package app_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/store"
)

// chromiumPath is Debian's chromium package.
const chromiumPath = "/usr/bin/chromium"

// browser starts a fresh headless Chromium for the test, or skips it when
// none is installed (fails instead when WAMM_RELAY_REQUIRE_CHROMIUM is set,
// as in .ci/run).
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("WAMM_RELAY_REQUIRE_CHROMIUM") != "" {
			t.Fatalf("WAMM_RELAY_REQUIRE_CHROMIUM is set but %s is missing (apt-get install chromium)", chromiumPath)
		}
		t.Skipf("%s missing: apt-get install chromium to run the dashboard's browser test", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	// The first action starts the browser, bound to the context it gets:
	// start it here, not under a step's shorter one.
	require.NoError(t, chromedp.Do(ctx), "start %s", chromiumPath)
	return ctx
}

// step runs actions and, when they fail, reports where the page stands.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\npage %s:\n%s", what, err, loc, text)
	}
}

// poll waits until the expression is truthy in the page.
func poll(expr string, opts ...chromedp.PollOption) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, opts...)(ctx, t)
		return err
	})
}

// TestDashboardInBrowser drives the dashboard in a real Chromium: log in
// through the form, find a delivered message on the deliveries page,
// replay a dead one after its target recovers, and see it delivered.
// WAMM_RELAY_SCREENSHOT=path saves a screenshot (docs/dashboard.png).
func TestDashboardInBrowser(t *testing.T) {
	ctx := browser(t)

	crm := testutil.NewTarget(t)
	var erpUp atomic.Bool
	erp := testutil.NewTarget(t)
	erp.Respond(func(*http.Request, []byte) int {
		if erpUp.Load() {
			return http.StatusOK
		}
		return http.StatusUnprocessableEntity
	})
	erpCfg := target("erp", erp.URL)
	erpCfg.MaxAttempts = 2
	cfg := testConfig(t, target("crm", crm.URL), erpCfg)
	const token = "dashboard-admin-token-0123456789"
	cfg.Server.AdminToken = token
	r := startRelay(t, cfg)

	for i := 101; i <= 106; i++ {
		code, _ := r.post(t, "/webhook", msgBody(i, "received"))
		require.Equal(t, http.StatusOK, code)
	}
	crm.WaitDelivered(t, waitLong, "msg:101", "msg:106")
	require.Eventually(t, func() bool {
		ds, err := r.app.Store().List(context.Background(), store.ListFilter{Target: "erp", Status: event.StatusDead})
		return err == nil && len(ds) == 6
	}, waitLong, 10*time.Millisecond, "erp's deliveries die")

	countRows := func(status string) string {
		return fmt.Sprintf(`document.querySelectorAll('#deliveries tr[data-status=%q]').length`, status)
	}
	step(t, ctx, "open", chromedp.Navigate(r.base+"/ui/"))
	step(t, ctx, "log in",
		// No session: the form.
		chromedp.WaitVisible(chromedp.ID(`#token`)),
		chromedp.SendKeys(chromedp.ID(`#token`), "wrong-token"),
		chromedp.Click(chromedp.ID(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`.alert`)),
		chromedp.SendKeys(chromedp.ID(`#token`), token),
		chromedp.Click(chromedp.ID(`#login`)),
		chromedp.WaitVisible(chromedp.ID(`#nav`)),
		// The overview shows the dead letters.
		chromedp.WaitVisible(chromedp.CSS(`#page-overview .card.bad`)),
	)
	title, err := chromedp.Run(ctx, chromedp.Title())
	require.NoError(t, err)
	require.Equal(t, "wamm-relay", title)

	step(t, ctx, "search by message id shows crm's delivered and erp's dead delivery",
		chromedp.Click(chromedp.CSS(`a[data-page="deliveries"]`)),
		chromedp.SendKeys(chromedp.CSS(`#search input[name="msg_id"]`), "101"),
		chromedp.Click(chromedp.CSS(`#search button[type="submit"]`)),
		poll(countRows("delivered")+` === 1 && `+countRows("dead")+` === 1 && document.querySelectorAll('#deliveries tbody tr').length === 2`),
	)

	erpUp.Store(true)
	step(t, ctx, "replay the dead delivery",
		chromedp.Click(chromedp.CSS(`#deliveries tr[data-status="dead"]`)),
		chromedp.WaitVisible(chromedp.ID(`#replay-one`)),
		chromedp.WaitVisible(chromedp.CSS(`#detail pre.body`)),
		// Its two failed attempts, from the attempt log.
		poll(`document.querySelectorAll('#detail tbody tr').length === 2 && document.querySelector('#detail tbody').innerText.includes('http_422')`),
		chromedp.Click(chromedp.ID(`#replay-one`)),
		// The page polls: the replayed delivery turns delivered.
		poll(countRows("delivered")+` === 2 && `+countRows("dead")+` === 0`, chromedp.WithPollingTimeout(30*time.Second)),
	)
	erp.WaitDelivered(t, waitLong, "msg:101")

	ds, err := r.app.Store().List(context.Background(), store.ListFilter{Target: "erp", MsgID: "101"})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, event.StatusDelivered, ds[0].Status)

	// The targets page offers exactly the pause/resume and replay calls.
	step(t, ctx, "browse",
		chromedp.Click(chromedp.CSS(`a[data-page="targets"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#page-targets table`)),
	)
	pauseButtons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-pause]').length`))
	require.NoError(t, err)
	replayButtons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-replay-target="erp"]').length`))
	require.NoError(t, err)
	require.Equal(t, 2, pauseButtons)
	require.Equal(t, 1, replayButtons, "erp still has 5 dead deliveries")

	// Pause crm from the dashboard: the switch is in the store and held by
	// the dispatcher; a new message waits for the resume.
	step(t, ctx, "pause crm",
		chromedp.Click(chromedp.CSS(`[data-pause="crm"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-resume="crm"]`)),
	)
	paused, err := r.app.Store().PausedTargets(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"crm"}, paused)
	code, _ := r.post(t, "/webhook", msgBody(107, "received"))
	require.Equal(t, http.StatusOK, code)
	erp.WaitDelivered(t, waitLong, "msg:107")
	require.Zero(t, crm.Delivered()["msg:107"], "paused")
	step(t, ctx, "resume crm",
		chromedp.Click(chromedp.CSS(`[data-resume="crm"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-pause="crm"]`)),
	)
	crm.WaitDelivered(t, waitLong, "msg:107")

	if path := os.Getenv("WAMM_RELAY_SCREENSHOT"); path != "" {
		step(t, ctx, "browse",
			chromedp.Click(chromedp.CSS(`a[data-page="overview"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#page-overview .cards`)),
			chromedp.Click(chromedp.CSS(`a[data-page="deliveries"]`)),
			chromedp.Click(chromedp.ID(`#clear`)),
			poll(`document.querySelectorAll('#deliveries tbody tr').length === 12`),
			chromedp.Click(chromedp.CSS(`#deliveries tr[data-status="dead"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#detail pre.body`)),
			chromedp.WaitNotVisible(chromedp.ID(`toast`)),
		)
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		if !filepath.IsAbs(path) {
			path = filepath.Join("..", path) // tests run in app/
		}
		require.NoError(t, os.WriteFile(path, shot, 0o644))
	}
}
