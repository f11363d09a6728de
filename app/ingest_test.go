package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/sqlite"
	"github.com/wamm-relay/wamm-relay/targets"
)

// panickingHandoff is a store whose handoff ingest panics.
type panickingHandoff struct{ store.Store }

func (panickingHandoff) IngestHandoff(context.Context, event.Event, []string, store.HandoffLease) ([]event.Delivery, error) {
	panic("handoff ingest failed badly")
}

type everyKind []string

func (r everyKind) Match(event.Kind, string) []string { return r }

// A panic between Reserve and Start must still give the reserved worker
// back: the dispatcher's drain waits for every reservation, so a lost one
// would hang the shutdown for good.
func TestFanoutGivesTheReservationBackOnPanic(t *testing.T) {
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "relay.db"), Logger: log})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(sink.Close)
	d, err := targets.New(targets.Options{
		Targets: []targets.Target{{Name: "a", URL: sink.URL, Timeout: time.Second, MaxAttempts: 3}},
		Store:   st, Owner: "test", Workers: 1, Logger: log, Registerer: prometheus.NewRegistry(),
		DrainTimeout: time.Second,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(ctx) }()
	t.Cleanup(cancel)
	// Once the target keeps up, its worker can be reserved.
	require.Eventually(t, func() bool {
		if r := d.Reserve([]string{"a"}); r != nil {
			r.Cancel()
			return true
		}
		return false
	}, 5*time.Second, time.Millisecond)

	f := &fanoutIngester{
		store: panickingHandoff{st}, router: everyKind{"a"}, handoff: d,
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "enqueued"}, []string{"source"}),
	}
	require.PanicsWithValue(t, "handoff ingest failed badly", func() {
		_, _ = f.Ingest(context.Background(), event.Event{Key: "raw:k", Kind: event.KindRaw, Body: []byte(`{}`)})
	})
	again := d.Reserve([]string{"a"})
	require.NotNil(t, again, "the worker is free again")
	again.Cancel()

	cancel()
	select {
	case err := <-runDone:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the dispatcher's drain hangs on the lost reservation")
	}
}
