package app_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/app"
)

// TestDemoShowsEveryPath runs the demo briefly and checks it shows what it
// promises: traffic reaching both sample targets, webhooks lost on purpose
// and found again by the reconciler, retries against the flaky target, and
// a readable live summary that ends with every message at crm.
func TestDemoShowsEveryPath(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for six seconds")
	}
	var out bytes.Buffer
	start := time.Now()
	s, err := app.RunDemo(context.Background(), app.DemoOptions{
		Duration:     6 * time.Second,
		Out:          &out,
		DropRate:     0.3,
		TrafficEvery: 40 * time.Millisecond,
		ReportEvery:  500 * time.Millisecond,
	})
	require.NoError(t, err, out.String())
	require.Less(t, time.Since(start), 6*time.Second+waitLong, "the demo stops by itself")

	require.Positive(t, s.Messages, out.String())
	require.Positive(t, s.WebhooksDropped, "some webhooks are lost on purpose")
	require.Positive(t, s.Received, "events arrive by webhook")
	require.Positive(t, s.Reconciled, "the reconciler finds the lost ones\n%s", out.String())
	require.Len(t, s.Targets, 2)
	for i, name := range []string{"crm", "analytics"} {
		tg := s.Targets[i]
		require.Equal(t, name, tg.Name)
		require.Positive(t, tg.Delivered, name)
		require.Positive(t, tg.FromWebhook, name)
		require.Positive(t, tg.FromReconcile, "%s gets reconciled events too\n%s", name, out.String())
		require.Equal(t, tg.Delivered, tg.FromWebhook+tg.FromReconcile, name)
	}
	require.Positive(t, s.Targets[1].FailedOnPurpose, "analytics fails every 7th request and is retried")
	require.Empty(t, s.MissingAtCRM, "traffic stops early enough for the last gaps to be filled\n%s", out.String())

	require.Equal(t, []string{"default", "sales"}, s.Channels)
	require.Positive(t, s.BlackoutLost)
	require.Equal(t, s.BlackoutLost, s.BlackoutRecovered, "the sales blackout is recovered in full\n%s", out.String())
	require.GreaterOrEqual(t, s.GapMessages, 30, "the flood's oldest messages are beyond the API")
	require.NotEmpty(t, s.Gaps, "and named in a gap record")
	require.Contains(t, strings.Join(s.Gaps, "\n"), "sales chat_overflow")

	text := out.String()
	for _, want := range []string{
		"wamm-relay demo: relay on http://127.0.0.1:",
		"loses 30% of its webhooks",
		"traffic stopped",
		"sales: webhook blackout begins",
		"named in a gap record",
		"summary after",
		"every one of the",
	} {
		require.Contains(t, text, want)
	}
	live := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "WAMM ") && strings.Contains(line, "| crm ") && strings.Contains(line, "| analytics ") {
			live++
		}
	}
	require.GreaterOrEqual(t, live, 5, "a live line every 500ms\n%s", text)
}
