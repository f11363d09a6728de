package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// setMaxPages caps the database at n pages on the writer's one connection
// (max_page_count is per connection): past it SQLite fails a write with
// SQLITE_FULL, as it does when the disk is full. n below the current size
// caps it at the current size.
func setMaxPages(t *testing.T, s *Store, n int) {
	t.Helper()
	_, err := s.w.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", n))
	require.NoError(t, err)
}

func bigEvent(i int) event.Event {
	// 64 KiB: overflow pages no free page of the file can hold.
	return event.Event{Key: event.Key(fmt.Sprintf("msg:big%d", i)), Kind: event.KindMsg, Source: event.SourceWebhook,
		Body: bytes.Repeat([]byte("x"), 64<<10)}
}

func logLines(hook *logtest.Hook, msg string) int {
	n := 0
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, msg) {
			n++
		}
	}
	return n
}

// TestDiskFullFailsTheBatchAndRecovers fills the database (max_page_count
// stands in for the disk): ingests fail with store.ErrDiskFull and write
// nothing, concurrent ones sharing a group commit included; the store
// logs it once; and once there is room the same store takes the same
// events, with no restart.
func TestDiskFullFailsTheBatchAndRecovers(t *testing.T) {
	ctx := context.Background()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	path := filepath.Join(t.TempDir(), "relay.db")
	s, err := Open(ctx, Options{Path: path, Logger: log})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	for i := range 5 {
		require.NoError(t, s.Ingest(ctx, msgEvent(i), []string{"crm"}))
	}

	setMaxPages(t, s, 1)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Ingest(ctx, bigEvent(i), []string{"crm", "erp"}) })
	}
	wg.Wait()
	for i, err := range errs {
		require.ErrorIs(t, err, store.ErrDiskFull, "ingest %d", i)
	}
	require.True(t, s.DiskFull())
	ds, err := s.List(ctx, store.ListFilter{})
	require.NoError(t, err)
	require.Len(t, ds, 5, "nothing of the failed batches written")
	require.Equal(t, 1, logLines(hook, "disk full"), "logged once, not once per failed write")

	setMaxPages(t, s, 1<<30)
	for i := range errs {
		require.NoError(t, s.Ingest(ctx, bigEvent(i), []string{"crm", "erp"}), "not a duplicate: nothing was left of it")
	}
	require.False(t, s.DiskFull())
	require.Equal(t, 1, logLines(hook, "writes succeed again"))
	ds, err = s.List(ctx, store.ListFilter{Limit: 100})
	require.NoError(t, err)
	require.Len(t, ds, 5+2*len(errs))

	var check string
	require.NoError(t, s.w.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check))
	require.Equal(t, "ok", check)
}

func msgEvent(i int) event.Event {
	return event.Event{Key: event.Key(fmt.Sprintf("msg:%d", i)), Kind: event.KindMsg, Source: event.SourceWebhook,
		Body: []byte(fmt.Sprintf(`{"tip":"msg","msg_data":{"msg_id":%d}}`, i))}
}
