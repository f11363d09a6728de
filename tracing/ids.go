package tracing

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"

	"github.com/wamm-relay/wamm-relay/event"
)

// The prefixes keep the derived ids apart from any other use of sha256 over
// a key, and the trace id apart from the span id.
const (
	traceIDPrefix = "wamm-relay trace:"
	spanIDPrefix  = "wamm-relay ingest span:"
)

// EventTraceID is the trace id of the event with this key: the first 16 bytes
// of sha256("wamm-relay trace:" + key). Every instance derives the same one.
func EventTraceID(key event.Key) trace.TraceID {
	sum := sha256.Sum256([]byte(traceIDPrefix + string(key)))
	var id trace.TraceID
	copy(id[:], sum[:16])
	return id
}

// IngestSpanID is the id of the span that first stored the event, the root
// of its trace: the first 8 bytes of sha256("wamm-relay ingest span:" + key).
func IngestSpanID(key event.Key) trace.SpanID {
	sum := sha256.Sum256([]byte(spanIDPrefix + string(key)))
	var id trace.SpanID
	copy(id[:], sum[:8])
	return id
}

// IngestSpanContext is the span context of the event's root ingest span, as
// a remote parent: what a delivery attempt, made by any instance at any
// time, is a child of.
func IngestSpanContext(key event.Key) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: EventTraceID(key),
		SpanID:  IngestSpanID(key),
		// The sampler decides from the trace id alone (see newSampler), so
		// this flag only tells a plain W3C reader the event is traced.
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
}

// EventLink links to the event's root ingest span.
func EventLink(key event.Key) trace.Link {
	return trace.Link{SpanContext: IngestSpanContext(key)}
}

type fixedIDsKey struct{}

type fixedIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

// idGenerator is the SDK's random generator, except that a root span started
// on a context carrying fixedIDs gets those: the SDK offers no other way to
// choose a span's ids.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if ids, ok := ctx.Value(fixedIDsKey{}).(fixedIDs); ok {
		return ids.trace, ids.span
	}
	return randomTraceID(), randomSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	return randomSpanID()
}

func randomTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.NativeEndian.PutUint64(id[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func randomSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.NativeEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}
