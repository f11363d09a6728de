// Package tracing owns the relay's OpenTelemetry setup: the tracer provider
// and its OTLP/HTTP exporter, flushed on Shutdown, and the trace identity of
// an event. An event's trace id and the id of its ingest span are derived
// from its key, so the ingest, the reconciler's recovery and every delivery
// attempt, on any instance and after any restart, land in one trace without
// the store carrying a trace context. A nil *Tracer is tracing switched off:
// it starts nothing and injects nothing.
package tracing
