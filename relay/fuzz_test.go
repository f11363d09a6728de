package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
)

const fuzzMaxBody = 4096

// ingestFunc is an Ingester made of a function.
type ingestFunc func(ctx context.Context, ev event.Event) (bool, error)

func (f ingestFunc) Ingest(ctx context.Context, ev event.Event) (bool, error) { return f(ctx, ev) }

// FuzzWebhookHandler posts arbitrary bodies, with and without a
// Content-Length, to the webhook route. Whatever the body, the answer is
// 200, 400 or 413; 200 happens exactly when the body is a JSON object of at
// most MaxBodyBytes, and then the ingester got the body byte for byte.
func FuzzWebhookHandler(f *testing.F) {
	for _, s := range []string{
		msgBody,
		`{"tip":"msg_state","msg_data":{"msg_id":"42","state":"not sent"}}`,
		`{"tip":"channel_state"}`, `{}`, ` {"a":1} `, `[]`, `null`, `"x"`, `1e9`, ``, `{`, `{"a":1}{"b":2}`,
		"{\"a\":\"\xff\xfe\"}", `{"pad":"` + strings.Repeat("x", fuzzMaxBody) + `"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}

	var mu sync.Mutex
	var got []event.Event
	// Not fakeIngester: it keeps every event, and a fuzz run makes millions.
	ing := ingestFunc(func(_ context.Context, ev event.Event) (bool, error) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		return false, nil
	})
	srv, err := relay.New(relay.Options{
		Listen:       "127.0.0.1:0",
		MaxBodyBytes: fuzzMaxBody,
		Ingester:     ing,
		Logger:       newDiscardLogger(),
	})
	require.NoError(f, err)
	h := srv.Handler()

	f.Fuzz(func(t *testing.T, body []byte, chunked bool) {
		mu.Lock()
		got = nil
		mu.Unlock()
		req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
		if chunked {
			// Unknown length: only the body reader can enforce the limit.
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = -1
		}
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		// A map of raw members: no number is decoded (1e700 is valid JSON
		// that does not fit a float64), and null, the only other JSON that
		// decodes into a map, leaves it nil.
		var obj map[string]json.RawMessage
		isObject := json.Unmarshal(body, &obj) == nil && obj != nil
		tooLarge := len(body) > fuzzMaxBody

		mu.Lock()
		ingested := append([]event.Event(nil), got...)
		mu.Unlock()
		switch {
		case tooLarge:
			require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
		case isObject:
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Len(t, ingested, 1)
			require.Equal(t, body, ingested[0].Body, "the body must reach the ingester unchanged")
			require.NotEmpty(t, ingested[0].Key)
		default:
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
		}
		if rec.Code != http.StatusOK {
			require.Empty(t, ingested, "a rejected body must not reach the ingester")
			require.Contains(t, rec.Body.String(), `"ok":false`)
		}
	})
}
