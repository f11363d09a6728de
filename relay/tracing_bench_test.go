package relay_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/tracing"
)

// BenchmarkWebhookIngest measures the handler alone (no network, an
// ingester that accepts at once): what tracing adds to one webhook.
func BenchmarkWebhookIngest(b *testing.B) {
	for _, bc := range []struct {
		name   string
		tracer func(b *testing.B) *tracing.Tracer
	}{
		{"tracing=off", func(*testing.B) *tracing.Tracer { return nil }},
		{"tracing=on", func(b *testing.B) *tracing.Tracer { return benchTracer(b, 1) }},
		{"tracing=sampled_out", func(b *testing.B) *tracing.Tracer { return benchTracer(b, 0) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			log := logrus.New()
			log.SetOutput(io.Discard)
			srv, err := relay.New(relay.Options{
				Listen: "127.0.0.1:0", Ingester: nopIngester{}, Logger: log, Tracer: bc.tracer(b),
			})
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(msgBody))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

func benchTracer(b *testing.B, ratio float64) *tracing.Tracer {
	// A span processor that drops ended spans: the cost measured is the
	// hot path's, not the exporter's (which runs in the batch goroutine).
	p, err := tracing.NewWithProcessor(tracing.Options{SampleRatio: ratio}, discard{})
	if err != nil {
		b.Fatal(err)
	}
	return p.Tracer("relay")
}

type discard struct{}

func (discard) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discard) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discard) Shutdown(context.Context) error                  { return nil }
func (discard) ForceFlush(context.Context) error                { return nil }

type nopIngester struct{}

func (nopIngester) Ingest(context.Context, event.Event) (bool, error) { return false, nil }
