// Package wamm is the relay's side of the WAMM.chat provider: it parses
// webhook bodies into keyed events (msg:<id>, state:<id>:<state>, raw:<sha256>),
// rebuilds webhook-shaped events from polled messages, and calls msg_get_last
// and msg_get. It guarantees that one message gets one key whichever way it
// arrives (msg_id as number or string), that webhook bodies are kept byte for
// byte, and that the API token never appears in an error it returns. It does
// not store, deduplicate, retry or log anything; callers decide what to do
// with the events and errors.
package wamm
