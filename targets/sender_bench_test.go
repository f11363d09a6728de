package targets

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
)

// BenchmarkSend is one signed attempt against a local target that answers
// 200 at once: the CPU and allocations the HTTP client spends per delivery.
// Run with -benchmem; compare ns/op to BenchmarkBareNetHTTP's, which posts
// the same body with nothing else, in the same run.
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	s, err := newSender(Target{Name: "crm", URL: srv.URL, Timeout: 10 * time.Second,
		SigningSecret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Headers: map[string]string{"Authorization": "Bearer t"}},
		4, "wamm-relay/bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.close)
	d := event.Delivery{ID: 1, EventKey: "msg:1234567", Target: "crm", Body: []byte(benchBody), Source: event.SourceWebhook}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := s.send(ctx, d, 1, time.Now()); r.err != nil || r.status != http.StatusOK {
			b.Fatalf("send: %+v", r)
		}
	}
}

// BenchmarkBareNetHTTP is the floor BenchmarkSend is measured against: the
// same POST with a default transport and no headers, signing or caps.
func BenchmarkBareNetHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := client.Post(srv.URL, "application/json", strings.NewReader(benchBody))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

const benchBody = `{"tip":"msg","msg_data":{"msg_id":1234567,"qoute_msg_id":null,"from_api":0,"from_me":0,` +
	`"phone":"79001234567","chat_name":"Ivan Petrov","tip_msg":"textMessage","msg_text":"Hello!","msg_link":null,` +
	`"date_ins":"2026-03-01 11:59:00","date_upd":"2026-03-01 11:59:30","state":"received","phone_acc":"79990000000"}}`
