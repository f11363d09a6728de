package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/store"
)

func TestGapsListAndResolve(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	st := openTestStore(t, path)
	g, _, err := st.RecordGap(context.Background(), store.Gap{
		Channel: "sales", Chat: "79001234567", Reason: store.GapChat,
		AfterMsgID: "100", BeforeMsgID: "250", BeforeTime: "2026-03-01 10:00:00", DetectedAt: time.Now(),
	})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	cfg := writeFile(t, "relay.toml", "[store]\ndriver = \"sqlite\"\ndsn = \""+path+"\"\n")

	out := cli(t, "gaps", "list", "-config", cfg)
	require.Contains(t, out, "chat_overflow")
	require.Contains(t, out, "79001234567")
	require.Contains(t, out, "250 (2026-03-01 10:00:00)")

	out = cli(t, "gaps", "resolve", strconv.FormatInt(g.ID, 10), "--note", "re-sent by the sales team", "-config", cfg)
	require.Contains(t, out, "resolved")
	require.Equal(t, "no open gaps\n", cli(t, "gaps", "list", "-config", cfg))

	var listed struct {
		Gaps []struct {
			ID         int64  `json:"id"`
			Note       string `json:"note"`
			ResolvedAt string `json:"resolved_at"`
		} `json:"gaps"`
	}
	require.NoError(t, json.Unmarshal([]byte(cli(t, "gaps", "list", "--status", "resolved", "--json", "-config", cfg)), &listed))
	require.Len(t, listed.Gaps, 1)
	require.Equal(t, "re-sent by the sales team", listed.Gaps[0].Note)
	require.NotEmpty(t, listed.Gaps[0].ResolvedAt)

	for _, args := range [][]string{
		{"gaps"}, {"gaps", "list", "--status", "nope"}, {"gaps", "resolve"}, {"gaps", "resolve", "x"},
	} {
		var o, e bytes.Buffer
		require.Equal(t, 2, run(append(args, "-config", cfg), &o, &e), "%v", args)
	}
	var o, e bytes.Buffer
	require.Equal(t, 1, run([]string{"gaps", "resolve", "-config", cfg, "9999"}, &o, &e), "an unknown gap is a runtime failure")
}
