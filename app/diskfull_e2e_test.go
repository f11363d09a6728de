//go:build linux

package app_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/internal/testutil"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory until the
// test ends: a real filesystem that fills up.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size))
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("cannot mount a tmpfs (run as root, as CI does): %v", err)
	}
	require.NoError(t, err, "mount tmpfs on %s", dir)
	// Registered after t.TempDir, so it runs before the directory's removal
	// and after the relay (started later) has closed its files.
	t.Cleanup(func() { require.NoError(t, syscall.Unmount(dir, 0), "unmount %s", dir) })
	return dir
}

// fill writes path until the filesystem has no byte left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xff}, 64<<10)
	for {
		n, err := f.Write(chunk)
		if err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			if n == 0 {
				return
			}
		}
	}
}

func logCount(logs *lockedWriter, msg string) int {
	n := 0
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var e struct{ Msg string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == msg {
			n++
		}
	}
	return n
}

// TestDiskFull runs the relay on SQLite on a 3 MiB tmpfs and fills it.
// While it is full, webhooks answer 503 (never 200 for what is not
// committed), /readyz fails, wamm_relay_store_disk_full is 1, the relay
// says so in one log line, and the
// outcomes of attempts that were in flight when it filled are kept until
// they can be written. Once the filler goes, the same relay, never
// restarted, takes the refused webhooks as new (nothing of them was
// written) and says it recovered; every acknowledged webhook reaches the
// target exactly once, no outcome is left unrecorded and the database
// passes integrity_check.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 3<<20)
	crm := testutil.NewTarget(t)
	// The first attempts at msg:11..15 are held until the disk is full, so
	// their outcomes must be recorded on a full disk.
	held := map[string]bool{}
	for id := 11; id <= 15; id++ {
		held[fmt.Sprintf("msg:%d", id)] = true
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	var holding atomic.Int32
	crm.Respond(func(r *http.Request, _ []byte) int {
		if held[r.Header.Get("webhook-id")] {
			holding.Add(1)
			<-release
		}
		return http.StatusOK
	})
	cfg := testConfig(t, target("crm", crm.URL))
	cfg.Store.DSN = filepath.Join(dir, "relay.db")
	r := startRelay(t, cfg)

	var a acks
	post := func(id int) int {
		code, _ := r.post(t, "/webhook", msgBody(id, "received"))
		a.add(fmt.Sprintf("msg:%d", id), code)
		return code
	}
	for id := 1; id <= 15; id++ {
		require.Equal(t, http.StatusOK, post(id))
	}
	crm.WaitDelivered(t, waitLong, a.ok[:10]...)
	require.Eventually(t, func() bool { return holding.Load() == 5 }, waitLong, 5*time.Millisecond)

	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	releaseOnce.Do(func() { close(release) }) // their outcomes now meet a full disk
	for id := 100; id < 130; id++ {
		require.Equal(t, http.StatusServiceUnavailable, post(id), "webhook %d on a full disk", id)
	}
	require.Equal(t, http.StatusServiceUnavailable, readyz(r.base))
	require.Equal(t, 1.0, pgMetric(r.base, "wamm_relay_store_disk_full"))
	crm.WaitDelivered(t, waitLong, a.ok...)
	full := logCount(r.logs, "store: disk full; webhooks answered 503 until space returns")
	require.True(t, full >= 1 && full <= 2, "the full disk is logged once (a reminder a minute), not per request: %d lines", full)
	require.Zero(t, logCount(r.logs, "store: writes succeed again; disk space returned"))
	// The held five at least (the target has answered them; their records
	// follow); an earlier outcome still lingering in the group commit may
	// meet the full disk too. One line per outcome, not per try.
	const waitingLine = "outcome not recorded: the store's disk is full; retrying until space returns or the lease ends"
	require.Eventually(t, func() bool { return logCount(r.logs, waitingLine) >= 5 }, waitLong, 5*time.Millisecond)
	waiting := logCount(r.logs, waitingLine)
	require.LessOrEqual(t, waiting, 15, "one line per outcome")

	require.NoError(t, os.Remove(filler))
	// WAMM retries what was refused: each is new, nothing of it was written.
	for id := 100; id < 130; id++ {
		code, body := r.post(t, "/webhook", msgBody(id, "received"))
		require.Equal(t, http.StatusOK, code, "webhook %d once space returned", id)
		require.Contains(t, body, `"duplicate":false`)
		a.add(fmt.Sprintf("msg:%d", id), code)
	}
	require.Equal(t, http.StatusOK, readyz(r.base))
	require.Equal(t, 0.0, pgMetric(r.base, "wamm_relay_store_disk_full"))
	require.Equal(t, 1, logCount(r.logs, "store: writes succeed again; disk space returned"))

	crm.WaitDelivered(t, waitLong, a.ok...)
	want := map[string]int{}
	for _, k := range a.ok {
		want[k] = 1
	}
	// Every outcome is on record before the relay closes, or the relay
	// would send again after a restart what the target already has.
	db, err := sql.Open("sqlite", cfg.Store.DSN+"?_pragma=query_only(1)")
	require.NoError(t, err)
	defer db.Close()
	require.Eventually(t, func() bool {
		var pending int
		return db.QueryRow("SELECT count(*) FROM deliveries WHERE status <> 'delivered'").Scan(&pending) == nil && pending == 0
	}, waitLong, 10*time.Millisecond, "every delivery recorded delivered")
	require.NoError(t, r.stop())
	require.NoError(t, r.app.Close())
	require.Equal(t, want, crm.Delivered(), "every acknowledged webhook delivered once, nothing else")
	require.Empty(t, a.other, "only 200 or 503")

	var check string
	require.NoError(t, db.QueryRow("PRAGMA integrity_check").Scan(&check))
	require.Equal(t, "ok", check)
	t.Logf("disk full: %d webhooks refused (503), %d acknowledged and delivered once, %d disk-full log lines",
		a.refused, len(a.ok), full)
}
