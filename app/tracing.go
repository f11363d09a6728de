package app

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/tracing"
)

// tracingFlushTimeout bounds the export of the spans still buffered at
// teardown: a collector that is gone must not hold up the exit.
const tracingFlushTimeout = 5 * time.Second

// newTracing builds the tracer provider from [tracing]; nil when it is off,
// which every component reads as "trace nothing".
func newTracing(ctx context.Context, c config.Tracing, version string, log *logrus.Logger) (*tracing.Provider, error) {
	tlog := log.WithField("component", "tracing")
	tp, err := tracing.New(ctx, tracing.Options{
		Enabled:        c.Enabled,
		Endpoint:       c.Endpoint,
		Insecure:       c.Insecure,
		Headers:        c.Headers,
		SampleRatio:    c.SampleRatio,
		ServiceName:    c.ServiceName,
		ServiceVersion: version,
		Logger:         tlog,
	})
	if err != nil {
		return nil, fmt.Errorf("build tracing: %w", err)
	}
	if tp != nil {
		// The endpoint is shown without credentials (headers never are).
		tlog.WithFields(logrus.Fields{
			"endpoint": config.Config{Tracing: c}.Masked().Tracing.Endpoint, "sample_ratio": c.SampleRatio,
		}).Info("tracing enabled: exporting OTLP/HTTP")
	}
	return tp, nil
}

// flushTracing exports what is still buffered. A collector that is slow or
// gone loses those spans, with a warning, but never fails the exit: the
// relay's own work is done.
func flushTracing(tp *tracing.Provider, log logrus.FieldLogger) error {
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		log.WithError(err).Warn("tracing: spans still buffered at shutdown were not all exported")
	}
	return nil
}
