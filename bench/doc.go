// Command bench measures wamm-relay under load against a non-durable
// baseline forwarder on the same machine, in the same run: it builds and
// starts the relay binary with a generated configuration, starts in-process
// HTTP sinks and a webhook generator, and reports throughput, latency
// percentiles, peak RSS and a completeness check (every sink received every
// accepted message), each relay figure also as a ratio to the baseline's.
// A third system, the stack (stack.go), is the relay with its store taken
// out: the ceiling any store could reach, and what gin and resty cost.
// It needs no external service except, with --store postgres, a PostgreSQL
// server; it is a measuring tool, not a test of correctness beyond that check.
// See BENCHMARKS.md at the repository root for the method and the results.
package main
