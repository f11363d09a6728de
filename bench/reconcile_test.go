package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/reconcile"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/store/sqlite"
	"github.com/wamm-relay/wamm-relay/wamm"
)

// lastResponse is a msg_get_last answer of n messages in one direction,
// newest first, shaped like the vendor's example (ids and from_me as
// strings).
func lastResponse(fromMe, n int) []byte {
	var b strings.Builder
	b.WriteString(`{"err":0,"msg_data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		id := 5_000_000 + 2*(n-i) + fromMe
		fmt.Fprintf(&b, `{"msg_id":"%d","from_me":"%d","phone":"7900%07d","chat_name":"Contact %d",`+
			`"tip_msg":"textMessage","msg_text":"Message %d","msg_link":null,`+
			`"date_ins":"2026-03-01 12:%02d:%02d","date_upd":"2026-03-01 12:%02d:%02d","state":"delivered"}`,
			id, fromMe, id%1000, id%1000, id, (n-i)/60, (n-i)%60, (n-i)/60, (n-i)%60)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// fakePoller answers msg_get_last from canned bodies, decoding them each
// time as the real client does.
type fakePoller struct {
	last map[int][]byte // by from_me
}

func (p fakePoller) LastMessages(_ context.Context, fromMe, _ int) ([]wamm.Message, error) {
	return wamm.DecodeMessages(p.last[fromMe])
}

func (p fakePoller) ChatMessages(context.Context, string, int) ([]wamm.Message, error) {
	return nil, errors.New("unexpected msg_get: the window should not overflow")
}

// storeIngester is app's fan-out ingester reduced to what the benchmark
// needs: every event to one target.
type storeIngester struct {
	st      store.Store
	targets []string
}

func (s storeIngester) Ingest(ctx context.Context, ev event.Event) (bool, error) {
	err := s.st.Ingest(ctx, ev, s.targets)
	if errors.Is(err, store.ErrDuplicate) {
		return true, nil
	}
	return false, err
}

// BenchmarkReconcilePass measures one reconciler poll cycle in the steady
// state: msg_get_last in both directions returns 100 messages each, all 200
// already known to a real SQLite store, so the pass polls, decodes, looks
// the 200 up and finds nothing to do. "fake-poller" decodes canned bodies;
// "http" goes through the real WAMM client to an httptest server.
func BenchmarkReconcilePass(b *testing.B) {
	bodies := map[int][]byte{0: lastResponse(0, 100), 1: lastResponse(1, 100)}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fromMe := 0
		if r.URL.Query().Get("from_me") == "1" {
			fromMe = 1
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(bodies[fromMe])
	}))
	b.Cleanup(api.Close)
	client, err := wamm.NewClient(wamm.ClientOptions{BaseURL: api.URL, Token: "bench-token", Timeout: 5 * time.Second})
	require.NoError(b, err)

	for _, tc := range []struct {
		name   string
		poller reconcile.Poller
	}{
		{"fake-poller", fakePoller{last: bodies}},
		{"http", client},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			log := logrus.New()
			log.SetOutput(io.Discard)
			st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(b.TempDir(), "relay.db"), Logger: log})
			require.NoError(b, err)
			b.Cleanup(func() { _ = st.Close() })

			// Make all 200 known, as their webhooks would have.
			now := time.Now()
			for _, body := range bodies {
				msgs, err := wamm.DecodeMessages(body)
				require.NoError(b, err)
				for _, m := range msgs {
					require.NoError(b, st.Ingest(ctx, wamm.MessageEvent(m, now), []string{"crm"}))
				}
			}

			ing := storeIngester{st: st, targets: []string{"crm"}}
			r, err := reconcile.New(reconcile.Options{
				Poller: tc.poller, Store: st, Ingester: ing, Seen: ing,
				Interval: 30 * time.Second, Grace: 20 * time.Second, Logger: log,
			})
			require.NoError(b, err)

			for b.Loop() {
				rep, err := r.ReconcileOnce(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if rep.Polled != 200 || rep.Known != 200 || rep.InGrace+rep.EnqueuedMsgs+rep.EnqueuedStates != 0 {
					b.Fatalf("unexpected pass: %+v", rep)
				}
			}
		})
	}
}
