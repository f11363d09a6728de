// Package relay is wamm-relay's HTTP surface: it takes WAMM webhooks in
// (secret check, size limit, parse, Ingest) and serves /healthz, /readyz,
// /metrics and the bearer-protected admin API under /api/v1.
//
// A webhook is answered 200 only after the Ingester returned, so the answer
// means the event is durable; every failure of ours is a 503 that WAMM
// retries. The webhook secret and the admin token never reach a log line or
// an error. Requests it refuses are counted one by one but logged sampled
// (logx.Sampler), so a flood of them cannot flood the log; /metrics may
// have a listener and a bearer token of its own. relay does not deliver anything: it never imports targets or
// reconcile, and meets them only in the store.
package relay
