// Package deploytest holds the tests of the deployment kit under deploy/:
// the Helm chart renders a Deployment the relay can run (probes, preStop
// drain, secrets from Secrets, a config.toml the relay accepts), the compose
// stack wires two relays, PostgreSQL and nginx, and the alert rules and the
// Grafana dashboard name only metrics a running relay exports. It has no
// code of its own; the external tools (helm, promtool) are run when present
// and required when WAMM_RELAY_DEPLOY_TOOLS=required (as .ci/run sets).
package deploytest
