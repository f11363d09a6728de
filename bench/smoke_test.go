package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary stand in for the bench program when the
// smoke test starts the baseline forwarder or the stack as a subprocess of
// itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		if sub, ok := servers[os.Args[1]]; ok {
			if err := sub(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// TestSmoke runs the smoke scenario end to end: the relay binary (built
// here), the baseline and the stack (with its journal) each get 1,000
// webhooks with the sinks up and 500 with them answering 503, then the sinks
// come back; every accepted message must reach every sink. It proves the bench works, not how fast anything is.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	dir := t.TempDir()
	code, err := run(ctx, []string{"--scenario", "smoke", "--systems", "baseline,stack-journal,relay",
		"--dir", dir, "--drain-timeout", "60s"}, &out)
	t.Log(out.String())
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Contains(t, out.String(), "| figure | baseline | stack-journal | relay (sqlite) | stack-journal / baseline | relay / baseline |")
	require.Contains(t, out.String(), "| completeness |"+strings.Repeat(" every sink got every accepted message |", 3))
	journals, err := filepath.Glob(filepath.Join(dir, "stack-*.journal"))
	require.NoError(t, err)
	require.Len(t, journals, 1, "the stack wrote its journal")
	info, err := os.Stat(journals[0])
	require.NoError(t, err)
	require.Greater(t, info.Size(), int64(1500*100), "1,500 webhooks of over 100 bytes each")
}

func TestParseBenchBody(t *testing.T) {
	sent := time.Unix(1_700_000_000, 123)
	for _, tc := range []struct {
		name    string
		body    []byte
		seq     int64
		wantErr bool
	}{
		{"generated", appendBody(nil, 42, sent), 42, false},
		{"no msg_id", []byte(`{"tip":"msg","msg_data":{"bench_sent_ns":1}}`), 0, true},
		{"no sent time", []byte(`{"tip":"msg","msg_data":{"msg_id":1000000042}}`), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq, ns, err := parseBenchBody(tc.body)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.True(t, json.Valid(tc.body), "the generated webhook must be JSON")
			require.Equal(t, tc.seq, seq)
			require.Equal(t, sent.UnixNano(), ns)
		})
	}
}

func TestSummaryPercentiles(t *testing.T) {
	var s samples
	for i := 1; i <= 1000; i++ {
		s.Add(time.Duration(i) * time.Millisecond)
	}
	sum := s.Summary()
	require.Equal(t, 500*time.Millisecond, sum.P(0.50))
	require.Equal(t, 990*time.Millisecond, sum.P(0.99))
	require.Equal(t, 999*time.Millisecond, sum.P(0.999))
	require.Equal(t, time.Second, sum.Max())
	require.Zero(t, (&samples{}).Summary().P(0.5))
}

func TestSystemList(t *testing.T) {
	for _, tc := range []struct {
		systems string
		want    []string
		err     string
	}{
		{"both", []string{"baseline", "relay"}, ""},
		{"baseline, stack-nethttp-journal ,relay", []string{"baseline", "stack-nethttp-journal", "relay"}, ""},
		{"baseline,stack-journal-nethttp", nil, `unknown system "stack-journal-nethttp"`},
		{"baseline,both", nil, `system "baseline" appears twice`},
	} {
		t.Run(tc.systems, func(t *testing.T) {
			got, err := (&options{systems: tc.systems}).systemList()
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestReadStat(t *testing.T) {
	st, err := readStat(os.Getpid())
	require.NoError(t, err)
	require.Equal(t, os.Getppid(), st.ppid, "the parent pid is field 4")
	_, err = readStat(-1)
	require.Error(t, err)
}
