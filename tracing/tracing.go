package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/wamm-relay/wamm-relay/event"
)

// Defaults for zero Options fields.
const (
	DefaultServiceName = "wamm-relay"
	// tracesPath is appended to Endpoint, as the OTLP specification does
	// for OTEL_EXPORTER_OTLP_ENDPOINT.
	tracesPath = "/v1/traces"
	// errorLogInterval rate-limits export failures: a collector that is
	// down fails every batch.
	errorLogInterval = time.Minute
	instrumentation  = "github.com/wamm-relay/wamm-relay"
)

// Options configures a Provider.
type Options struct {
	// Enabled false makes New return a nil Provider: no exporter, no spans.
	Enabled bool
	// Endpoint is the collector's OTLP/HTTP base URL ("http://collector:4318");
	// /v1/traces is appended. Empty leaves it to OTEL_EXPORTER_OTLP_ENDPOINT,
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or the SDK's localhost:4318.
	Endpoint string
	// Insecure sends plain HTTP; an http:// Endpoint implies it.
	Insecure bool
	// Headers are sent with every export (an API key, for instance).
	Headers map[string]string
	// SampleRatio is the share of events traced, decided from the trace id,
	// so every instance decides the same for one event. 0 traces nothing
	// (traceparent is still sent), 1 everything.
	SampleRatio float64
	// ServiceName is the service.name resource attribute; OTEL_SERVICE_NAME
	// overrides it.
	ServiceName    string
	ServiceVersion string
	// Logger receives export failures, rate-limited; nil discards them.
	Logger logrus.FieldLogger
}

func (o *Options) validate() error {
	if o.SampleRatio < 0 || o.SampleRatio > 1 {
		return fmt.Errorf("tracing options: SampleRatio must be between 0 and 1, got %v", o.SampleRatio)
	}
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("tracing options: Endpoint must be an absolute http:// or https:// URL")
		}
	}
	return nil
}

// Provider owns the SDK tracer provider and its exporter. A nil *Provider is
// tracing switched off; every method is safe on it.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// New builds the provider with a batching OTLP/HTTP exporter, or returns nil
// when opts.Enabled is false. It does not connect: a collector that is
// down costs failed exports, logged, never a failed start.
func New(ctx context.Context, opts Options) (*Provider, error) {
	if !opts.Enabled {
		return nil, nil
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	var eo []otlptracehttp.Option
	if opts.Endpoint != "" {
		u, _ := url.Parse(opts.Endpoint) // checked by validate
		u.Path = strings.TrimSuffix(u.Path, "/") + tracesPath
		eo = append(eo, otlptracehttp.WithEndpointURL(u.String()))
	}
	if opts.Insecure {
		eo = append(eo, otlptracehttp.WithInsecure())
	}
	if len(opts.Headers) > 0 {
		eo = append(eo, otlptracehttp.WithHeaders(opts.Headers))
	}
	exp, err := otlptracehttp.New(ctx, eo...)
	if err != nil {
		return nil, fmt.Errorf("build otlp exporter: %w", err)
	}
	if opts.Logger != nil {
		// The SDK reports export failures only through the global handler.
		otel.SetErrorHandler(&errorLog{log: opts.Logger})
	}
	return NewWithProcessor(opts, sdktrace.NewBatchSpanProcessor(exp))
}

// NewWithProcessor builds an enabled provider that hands its spans to sp,
// with the relay's sampler and id derivation; tests pass tracetest's
// SpanRecorder.
func NewWithProcessor(opts Options, sp sdktrace.SpanProcessor) (*Provider, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	name := opts.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if opts.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", opts.ServiceVersion))
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the configuration, as they do in every OTel SDK.
	res, err := resource.New(context.Background(),
		resource.WithAttributes(attrs...), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("build tracing resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(newSampler(opts.SampleRatio)),
		sdktrace.WithIDGenerator(idGenerator{}),
		sdktrace.WithSpanProcessor(sp),
	)
	return &Provider{tp: tp}, nil
}

// newSampler samples by trace id: a root span by the ratio, a span under a
// remote parent by the ratio too (the parents the relay makes up from event
// keys carry no decision), and a span under a local parent as its parent.
func newSampler(ratio float64) sdktrace.Sampler {
	byID := sdktrace.TraceIDRatioBased(ratio)
	return sdktrace.ParentBased(byID,
		sdktrace.WithRemoteParentSampled(byID),
		sdktrace.WithRemoteParentNotSampled(byID))
}

// Tracer returns the tracer of one component ("relay", "targets",
// "reconcile"); nil on a nil Provider.
func (p *Provider) Tracer(component string) *Tracer {
	if p == nil {
		return nil
	}
	return &Tracer{tr: p.tp.Tracer(instrumentation + "/" + component)}
}

// Shutdown exports the spans still buffered and stops the exporter, within
// ctx.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

// Tracer starts the relay's spans. A nil *Tracer starts none: its methods
// return the context unchanged and a span that records nothing.
type Tracer struct {
	tr trace.Tracer
}

// noSpan is the non-recording span of an empty context, shared.
var noSpan = trace.SpanFromContext(context.Background())

// Enabled reports whether t starts spans.
func (t *Tracer) Enabled() bool { return t != nil }

// Start starts a span of its own (a reconcile pass, a rejected request).
func (t *Tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noSpan
	}
	return t.tr.Start(ctx, name, opts...)
}

// StartInEvent starts a span in the trace of the event with key, as a child
// of its root ingest span, whichever instance made that one.
func (t *Tracer) StartInEvent(ctx context.Context, name string, key event.Key, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noSpan
	}
	return t.tr.Start(trace.ContextWithRemoteSpanContext(ctx, IngestSpanContext(key)), name, opts...)
}

// IngestSpan starts the span of one ingest of the event with key once its
// outcome is known; pass the ingest's start as trace.WithTimestamp. The
// ingest that stored the event (stored) is the root of the event's trace,
// with the derived ids; a duplicate or failed one is a child of that root,
// so a trace never holds two spans with one id. Ending the span is the
// caller's.
func (t *Tracer) IngestSpan(ctx context.Context, name string, key event.Key, stored bool, opts ...trace.SpanStartOption) trace.Span {
	if t == nil {
		return noSpan
	}
	if !stored {
		_, span := t.StartInEvent(ctx, name, key, opts...)
		return span
	}
	ctx = context.WithValue(ctx, fixedIDsKey{}, fixedIDs{trace: EventTraceID(key), span: IngestSpanID(key)})
	_, span := t.tr.Start(ctx, name, append(opts, trace.WithNewRoot())...)
	return span
}

// Inject writes the W3C traceparent (and tracestate) of the span in ctx into
// h; without one it writes nothing. A sampled-out span still has ids, so
// the header goes out whenever tracing is on.
func Inject(ctx context.Context, h http.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
}

// IncomingLink reads the W3C traceparent of an incoming request as a link.
// It is never the parent: the trace id is the event's, derived from its key.
func IncomingLink(h http.Header) (trace.Link, bool) {
	if h.Get("traceparent") == "" {
		return trace.Link{}, false
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(h))
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: sc}, true
}

// errorLog logs the SDK's errors (failed exports), the first at once and
// then at most one line per interval with the count.
type errorLog struct {
	log logrus.FieldLogger

	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (e *errorLog) Handle(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < errorLogInterval {
		e.skipped++
		return
	}
	e.log.WithError(err).WithField("suppressed", e.skipped).Warn("tracing: exporting spans failed")
	e.last, e.skipped = now, 0
}
