// Package reconcile finds WAMM events whose webhook never arrived: while this
// instance holds the "reconcile" leader lock it polls msg_get_last, treats a
// message or status the store does not know as missed only once a grace period
// since it was first seen has passed without the webhook, and feeds it through
// the same Ingest path webhooks take, so webhook and poll dedup against each
// other and each event is delivered once. When the polled window has no overlap
// with what is known it polls faster and recovers older gaps chat by chat with
// msg_get. It does not deliver anything itself, does not recover a status that
// a later one has overtaken (polling only shows the current state), and cannot
// see past the newest 100 messages of a chat.
//
// A ChannelChecker, run by the reconciler at its first led pass and every
// CheckEvery-th after, asks channel_list whether the channel is authorized and
// its hook is this relay's webhook URL; it reports what it finds (status,
// metrics, a log line per change) and never fails a pass.
package reconcile
