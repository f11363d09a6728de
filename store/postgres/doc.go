// Package postgres is the PostgreSQL store backend, for several relay
// instances sharing one database behind a load balancer. It owns the schema
// (embedded migrations, applied under an advisory lock into the DSN's
// search_path schema), group-committed ingests (the unique event key is the
// cross-instance dedup truth) and delivery outcomes, SKIP LOCKED lease claims
// so no delivery goes to two instances at once, LISTEN/NOTIFY wake-ups between
// instances, and a session advisory lock per leader name that passes on when
// its holder dies. It survives losing the database (calls fail with wrapped
// errors and work again once it is back) but does not retry failed calls
// itself, and it needs session semantics: a transaction-pooling proxy breaks
// leader locks and LISTEN.
package postgres
