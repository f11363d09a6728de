package sqlite

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// The fixtures under testdata are stores as each earlier schema version
// left them, with data. Remake them (only ever needed when adding a version
// that should get a fixture of its own, never for later migrations) with
//
//	go test ./store/sqlite -run TestGenerateFixtures -update-fixtures
//
// which applies the migrations up to each version to a new file, writes
// fixtureRows and sets user_version. Keep the old files: they stand for
// stores in the field, made by the released migrations.
var updateFixtures = flag.Bool("update-fixtures", false, "rewrite the schema fixtures in testdata")

// fixtureVersions are the earlier schema versions with a fixture.
var fixtureVersions = []int{1, 2, 5}

// baselineVersion is the first schema version with reconcile baselines.
const baselineVersion = 3

func fixturePath(v int) string { return filepath.Join("testdata", fmt.Sprintf("schema-v%d.db", v)) }

// fixtureBase is the fixtures' clock; fixtureMs(d) is base+d in unix ms.
var fixtureBase = time.Date(2025, time.January, 2, 3, 4, 5, 0, time.UTC)

func fixtureMs(d time.Duration) int64 { return fixtureBase.Add(d).UnixMilli() }

// fixtureRows: msg:100 (state sent) and its state delivered, a raw event;
// crm delivered, erp dead, crm pending after a failed attempt (leased, as a
// version 1 relay left its leases in the table), crm pending untried.
func fixtureRows() string {
	return fmt.Sprintf(`
INSERT INTO events (id, key, kind, source, msg_id, state, body, received_at) VALUES
  (1, 'msg:100', 'msg', 'webhook', '100', 'sent', X'7b22746970223a226d7367227d', %[1]d),
  (2, 'state:100:delivered', 'msg_state', 'reconcile', '100', 'delivered', X'7b7d', %[1]d),
  (3, 'raw:abc', 'raw', 'webhook', '', '', X'00ff', %[1]d);
INSERT INTO deliveries (id, event_id, target, status, attempts, next_attempt_at, lease_owner, lease_until,
    created_at, updated_at, delivered_at, last_error, last_error_at, last_status_code) VALUES
  (1, 1, 'crm', 'delivered', 1, %[1]d, NULL, NULL, %[1]d, %[2]d, %[2]d, '', NULL, 200),
  (2, 1, 'erp', 'dead', 3, %[1]d, NULL, NULL, %[1]d, %[2]d, NULL, 'http_410', %[2]d, 410),
  (3, 2, 'crm', 'pending', 1, %[2]d, 'old-relay', %[3]d, %[1]d, %[2]d, NULL, 'timeout', %[2]d, 0),
  (4, 3, 'crm', 'pending', 0, %[1]d, NULL, NULL, %[1]d, %[1]d, NULL, '', NULL, 0);
`, fixtureMs(0), fixtureMs(time.Minute), fixtureMs(100*365*24*time.Hour))
}

func TestGenerateFixtures(t *testing.T) {
	if !*updateFixtures {
		t.Skip("run with -update-fixtures to rewrite testdata/schema-v*.db")
	}
	ms, err := migrations()
	require.NoError(t, err)
	for _, v := range fixtureVersions {
		path := fixturePath(v)
		if _, err := os.Stat(path); err == nil {
			continue // a released store stays as it was; delete the file to remake it
		}
		db, err := sql.Open("sqlite", path)
		require.NoError(t, err)
		for _, m := range ms[:v] {
			_, err := db.Exec(m.sql)
			require.NoError(t, err, m.name)
		}
		_, err = db.Exec(fixtureRows())
		require.NoError(t, err)
		if v >= baselineVersion {
			_, err = db.Exec(fmt.Sprintf(`INSERT INTO reconcile_baselines (channel, recorded_at, high_in, high_out)
				VALUES ('default', %d, '90', '95')`, fixtureMs(0)))
			require.NoError(t, err)
		}
		_, err = db.Exec("PRAGMA user_version = " + strconv.Itoa(v))
		require.NoError(t, err)
		require.NoError(t, db.Close())
	}
}

func TestOldSchemasMigrateToLatest(t *testing.T) {
	ms, err := migrations()
	require.NoError(t, err)
	for _, v := range fixtureVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			ctx := context.Background()
			src, err := os.ReadFile(fixturePath(v))
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), "relay.db")
			require.NoError(t, os.WriteFile(path, src, 0o600))

			s := openAt(t, path)
			defer s.Close()
			var got int
			require.NoError(t, s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&got))
			require.Equal(t, len(ms), got, "migrated to the latest version")

			checkFixtureData(t, s, v)
		})
	}
}

func checkFixtureData(t *testing.T, s store.Store, v int) {
	t.Helper()
	ctx := context.Background()
	ds, err := s.List(ctx, store.ListFilter{})
	require.NoError(t, err)
	type row struct {
		target   string
		key      event.Key
		status   event.Status
		attempts int
		lastErr  string
	}
	var rows []row
	for _, d := range ds {
		rows = append(rows, row{d.Target, d.EventKey, d.Status, d.Attempts, d.LastError})
	}
	require.Equal(t, []row{
		{"crm", "raw:abc", event.StatusPending, 0, ""},
		{"crm", "state:100:delivered", event.StatusPending, 1, "timeout"},
		{"erp", "msg:100", event.StatusDead, 3, "http_410"},
		{"crm", "msg:100", event.StatusDelivered, 1, ""},
	}, rows, "every delivery of the version %d store", v)
	require.True(t, ds[3].DeliveredAt.Equal(fixtureBase.Add(time.Minute)), "delivered_at %s", ds[3].DeliveredAt)

	km, err := s.KnownMessages(ctx, "", []string{"100"})
	require.NoError(t, err)
	require.True(t, km["100"].MsgStored)
	require.ElementsMatch(t, []string{"sent", "delivered"}, km["100"].States)
	has, err := s.HasEvents(ctx)
	require.NoError(t, err)
	require.True(t, has)
	if v >= baselineVersion {
		b, ok, err := s.Baseline(ctx, "")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, [4]string{"90", "95", "", ""}, [4]string{b.HighIn, b.HighOut, b.PolledIn, b.PolledOut},
			"the baseline survives; no poll was taken in yet")
	}

	// Dedup keys survive; the old lease does not hold the delivery back.
	dup := event.Event{Key: "raw:abc", Kind: event.KindRaw, Source: event.SourceWebhook, Body: []byte("x"), ReceivedAt: time.Now()}
	require.ErrorIs(t, s.Ingest(ctx, dup, []string{"crm"}), store.ErrDuplicate)
	claimed, err := s.Claim(ctx, store.ClaimRequest{Target: "crm", Owner: "new", Limit: 10, Lease: time.Minute, Now: time.Now()})
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	for _, d := range claimed {
		require.NoError(t, s.Record(ctx, d.ID, "new", event.Outcome{Result: event.ResultDelivered, StatusCode: 200, At: time.Now()}))
	}
	require.Equal(t, []byte{0x00, 0xff}, claimed[0].Body, "bodies round-trip")

	// New rows get new ids.
	fresh := event.Event{Key: "raw:new", Kind: event.KindRaw, Source: event.SourceWebhook, Body: []byte("y"), ReceivedAt: time.Now()}
	require.NoError(t, s.Ingest(ctx, fresh, []string{"crm"}))
	ds, err = s.List(ctx, store.ListFilter{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, int64(5), ds[0].ID)
}
