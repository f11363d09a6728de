package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// pprofEnv names a hidden, opt-in switch for profiling: when set to an
// address ("127.0.0.1:6060"), serve exposes net/http/pprof there. It is for
// benchmarking (see BENCHMARKS.md), deliberately not a config key, and
// should only ever be bound to loopback.
const pprofEnv = "WAMM_RELAY_PPROF"

// startPprof serves the pprof handlers on addr until the returned stop is
// called; an empty addr does nothing.
func startPprof(addr string, stderr io.Writer) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for %s on %s: %w", pprofEnv, addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "wamm-relay: %s: pprof on http://%s/debug/pprof/\n", pprofEnv, ln.Addr())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(stderr, "wamm-relay: pprof server: %v\n", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
}
