// Package wammfake is a fake WAMM.chat channel for tests and for
// `wamm-relay demo`: it stores messages, serves msg_get_last, msg_get and
// channel_list the way the vendor documents them (string msg_id/from_me,
// string err on HTTP 200, newest first), and posts msg and msg_state webhooks
// one at a time, in order, with up to 5 retries, optionally dropping some so
// a reconciler has gaps to close. It records what it dropped and gave up on,
// so tests can assert exactly what was recovered. It imitates the documented
// behaviour only and guesses nothing beyond it (see wamm-api.md §6 for what
// is unknown).
package wammfake
