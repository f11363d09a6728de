package sqlite

import (
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countInMainFile copies the database file alone, without its WAL, and
// counts the events in the copy: what a checkpoint has moved there.
func countInMainFile(t *testing.T, path string) int {
	t.Helper()
	copyPath := filepath.Join(t.TempDir(), "main-only.db")
	src, err := os.Open(path)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.Create(copyPath)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
	db, err := sql.Open("sqlite", copyPath)
	require.NoError(t, err)
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM events").Scan(&n); err != nil {
		return -1 // the schema itself may still be in the WAL
	}
	return n
}

// Commits reach the database file while the store is open, although the
// writer never checkpoints on its own: the checkpointer does it beside it.
func TestCheckpointerCopiesCommitsIntoTheDatabaseFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openAt(t, path)
	t.Cleanup(func() { _ = s.Close() })

	const n = 200
	for i := range n {
		require.NoError(t, s.Ingest(ctx, msgEvent(i), []string{"a"}))
	}
	require.Eventually(t, func() bool { return countInMainFile(t, path) == n }, 10*time.Second, 20*time.Millisecond,
		"every committed event reaches the database file")
	require.Positive(t, s.ckpt.runs.Load())
}

// A WAL past the limit makes the writer checkpoint between batches, after
// which the next commit starts the WAL over.
func TestWriterCheckpointsAWALPastTheLimit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openAt(t, path)
	t.Cleanup(func() { _ = s.Close() })
	// Stop the store's own checkpointer and drive one with a limit of 0.
	s.ckpt.close()
	c := newCheckpointer(s.ckptDB, quietLogger(), s.disk, time.Millisecond, 0)
	t.Cleanup(c.close)

	for i := range 50 {
		require.NoError(t, s.Ingest(ctx, msgEvent(i), []string{"a"}))
	}
	c.committed()
	require.Eventually(t, c.inline.Load, 10*time.Second, time.Millisecond, "the checkpointer asks the writer")
	c.betweenBatches(s.w)
	require.EqualValues(t, 1, c.inlineRuns.Load())
	require.False(t, c.inline.Load())

	require.NoError(t, s.Ingest(ctx, msgEvent(50), []string{"a"}))
	frames, err := checkpoint(ctx, s.ckptDB)
	require.NoError(t, err)
	require.Less(t, frames, 50, "the WAL started over after the writer's checkpoint")
}
