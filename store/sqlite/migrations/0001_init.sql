-- Events are the dedup truth: one row per key ever accepted (until pruned).
-- AUTOINCREMENT keeps ids from being reused after a prune and lets
-- HasEvents read sqlite_sequence once every event is gone.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    msg_id      TEXT    NOT NULL DEFAULT '',
    state       TEXT    NOT NULL DEFAULT '',
    body        BLOB    NOT NULL,
    received_at INTEGER NOT NULL -- unix milliseconds, like every time below
);

CREATE INDEX events_msg_id ON events (msg_id) WHERE msg_id <> '';
CREATE INDEX events_received_at ON events (received_at);

-- One row per event and target. Ids are never reused, so admin paging and
-- replay by id stay stable across prunes.
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    target           TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    last_error       TEXT    NOT NULL DEFAULT '',
    last_error_at    INTEGER,
    last_status_code INTEGER NOT NULL DEFAULT 0
);

-- Claim and NextDue: pending rows of one target in due order.
CREATE INDEX deliveries_claim ON deliveries (target, next_attempt_at, id) WHERE status = 'pending';
-- List by status (newest first) and Replay by status.
CREATE INDEX deliveries_status ON deliveries (status, id);
-- List by target, Replay and TargetStats by target and status.
CREATE INDEX deliveries_target ON deliveries (target, status, id);
-- Prune and the foreign key cascade.
CREATE INDEX deliveries_event ON deliveries (event_id, status);
-- TargetStats: the latest failure of each target without a table scan.
CREATE INDEX deliveries_last_error ON deliveries (target, last_error_at) WHERE last_error_at IS NOT NULL;
