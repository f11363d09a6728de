package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTargetsPauseResumeAndList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	require.NoError(t, openTestStore(t, path).Close())
	cfg := writeFile(t, "relay.toml", `[store]
driver = "sqlite"
dsn = "`+path+`"

[[targets]]
name = "crm"
url = "https://crm.example/hook"
rate_limit = 50

[[targets]]
name = "bots"
url = "https://bots.example/hook"
breaker_failures = 0
`)
	row := func(out, name string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + name + `\s.*$`).FindString(out)
		require.NotEmpty(t, m, "no row for %s in:\n%s", name, out)
		return m
	}

	out := cli(t, "targets", "list", "-config", cfg)
	require.Regexp(t, `^crm\s+active\s+0\s+50/s\s+20 failures, 30s$`, row(out, "crm"))
	require.Regexp(t, `^bots\s+active\s+0\s+-\s+-$`, row(out, "bots"))

	require.Contains(t, cli(t, "targets", "pause", "crm", "-config", cfg), "target crm paused")
	require.Contains(t, row(cli(t, "targets", "list", "-config", cfg), "crm"), "paused")
	paused, err := openTestStore(t, path).PausedTargets(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"crm"}, paused, "the pause is in the store the relays read")

	require.Contains(t, cli(t, "targets", "resume", "-config", cfg, "crm"), "target crm resumed")
	require.Contains(t, row(cli(t, "targets", "list", "-config", cfg), "crm"), "active")

	for _, args := range [][]string{
		{"targets"}, {"targets", "nope"}, {"targets", "pause"}, {"targets", "pause", "a", "b"},
	} {
		var o, e bytes.Buffer
		require.Equal(t, 2, run(append(args, "-config", cfg), &o, &e), "%v", args)
	}
	var o, e bytes.Buffer
	require.Equal(t, 1, run([]string{"targets", "pause", "erp", "-config", cfg}, &o, &e), "an unknown target")
	require.Contains(t, e.String(), `no configured target named "erp"`)
}
