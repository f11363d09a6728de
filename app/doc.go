// Package app wires wamm-relay together: it maps config.Config onto each
// package's Options, opens the store, builds the dedup cache, the HTTP relay,
// the per-target dispatcher, the reconciler and the pruner, runs them as one
// group where the first fatal exit stops the rest, and tears everything down in
// reverse order. It never touches signals or exit codes (cmd/wamm-relay does),
// so tests can start a whole relay in-process on 127.0.0.1:0.
package app
