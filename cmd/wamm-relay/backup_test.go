package main

import (
	"bytes"
	"context"
	"fmt"
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

func TestBackupWhileAStoreTakesWrites(t *testing.T) {
	s := seedStore(t)
	ctx := context.Background()
	// A live store on the same file, as `serve` holds it, ingesting all along.
	live := openTestStore(t, s.path)
	defer live.Close()
	var (
		wg   sync.WaitGroup
		stop = make(chan struct{})
		n    atomic.Int64
		werr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ev := event.Event{Key: event.Key(fmt.Sprintf("raw:live-%d", i)), Kind: event.KindRaw, Source: event.SourceWebhook,
				Body: []byte(`{}`), ReceivedAt: time.Now()}
			if werr = live.Ingest(ctx, ev, []string{"crm"}); werr != nil {
				return
			}
			n.Add(1)
		}
	}()
	require.Eventually(t, func() bool { return n.Load() > 5 }, 10*time.Second, time.Millisecond)

	dest := filepath.Join(t.TempDir(), "copy.db")
	out := cli(t, "backup", "-config", s.config, dest)
	require.Contains(t, out, "backed up")
	close(stop)
	wg.Wait()
	require.NoError(t, werr)

	c := openTestStore(t, dest)
	defer c.Close()
	ds, err := c.List(ctx, store.ListFilter{Limit: 1000})
	require.NoError(t, err)
	found := map[int64]event.Status{}
	for _, d := range ds {
		found[d.ID] = d.Status
	}
	for key, id := range s.ids {
		require.Contains(t, found, id, "delivery %s is in the copy", key)
	}
	require.Equal(t, event.StatusDelivered, found[s.ids["crm msg:1"]])
	require.Equal(t, event.StatusDead, found[s.ids["crm msg:2"]])

	// Again to the same path: refused, the copy untouched.
	before, err := os.ReadFile(dest)
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	require.Equal(t, 1, run([]string{"backup", "-config", s.config, dest}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "file already exists")
	after, err := os.ReadFile(dest)
	require.NoError(t, err)
	require.Equal(t, before, after)
}

func TestBackupUsage(t *testing.T) {
	pg := writeFile(t, "pg.toml", `
[store]
driver = "postgres"
dsn = "postgres://relay@127.0.0.1:1/relay"
[[targets]]
name = "crm"
url = "http://127.0.0.1:9/crm"
`)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"postgres points to pg_dump", []string{"backup", "-config", pg, filepath.Join(t.TempDir(), "x")}, "pg_dump"},
		{"no path", []string{"backup", "-config", pg}, "want exactly one argument"},
		{"two paths", []string{"backup", "a", "b"}, "want exactly one argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			require.Equal(t, 2, run(tc.args, &stdout, &stderr))
			require.Contains(t, stderr.String(), tc.want)
		})
	}
}
