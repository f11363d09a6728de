package sqlite

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

func backupEvent(i int) event.Event {
	return event.Event{Key: event.Key(fmt.Sprintf("raw:%d", i)), Kind: event.KindRaw, Source: event.SourceWebhook,
		Body: []byte(fmt.Sprintf(`{"n":%d}`, i)), ReceivedAt: time.Now()}
}

func TestBackupWhileTakingWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openAt(t, filepath.Join(dir, "relay.db"))
	defer s.Close()
	const before = 200
	for i := range before {
		require.NoError(t, s.Ingest(ctx, backupEvent(i), []string{"a"}))
	}

	// Ingests go on throughout the backup, as under a serving relay.
	var (
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		written atomic.Int64
		werr    error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := before; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Ingest(ctx, backupEvent(i), []string{"a"}); err != nil {
				werr = err
				return
			}
			written.Add(1)
		}
	}()
	require.Eventually(t, func() bool { return written.Load() > 10 }, 10*time.Second, time.Millisecond)
	dest := filepath.Join(dir, "backup.db")
	require.NoError(t, s.Backup(ctx, dest))
	close(stop)
	wg.Wait()
	require.NoError(t, werr)

	info, err := os.Stat(dest)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	// The copy is a store of its own with every event ingested before the
	// backup began, each with its delivery, and the writes kept going.
	c := openAt(t, dest)
	defer c.Close()
	stats, err := c.TargetStats(ctx)
	require.NoError(t, err)
	require.Len(t, stats, 1)
	require.GreaterOrEqual(t, stats[0].Pending, before)
	require.Less(t, stats[0].Pending, before+int(written.Load())+1)
	err = c.Ingest(ctx, backupEvent(0), []string{"a"})
	require.ErrorIs(t, err, store.ErrDuplicate, "dedup keys are in the copy")
	ds := claimIn(t, c, "a")
	require.NotEmpty(t, ds)
}

func claimIn(t *testing.T, s *Store, target string) []event.Delivery {
	t.Helper()
	ds, err := s.Claim(context.Background(), store.ClaimRequest{Target: target, Owner: "o", Limit: 5, Lease: time.Minute, Now: time.Now()})
	require.NoError(t, err)
	return ds
}

func TestBackupRefusesToOverwrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openAt(t, filepath.Join(dir, "relay.db"))
	defer s.Close()
	dest := filepath.Join(dir, "exists.db")
	require.NoError(t, os.WriteFile(dest, []byte("keep me"), 0o600))
	err := s.Backup(ctx, dest)
	require.ErrorIs(t, err, fs.ErrExist)
	got, err := os.ReadFile(dest)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(got))

	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Backup(ctx, filepath.Join(dir, "new.db")), store.ErrClosed)
}
