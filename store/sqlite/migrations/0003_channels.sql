-- Several WAMM channels in one relay. Every event belongs to one; rows of
-- earlier versions belong to the default channel, whose keys carry no
-- channel prefix. chat is the event's msg_data.phone: gap records name it,
-- the reconciler walks the chats it knows, operators search by it.
ALTER TABLE events ADD COLUMN channel TEXT NOT NULL DEFAULT 'default';
ALTER TABLE events ADD COLUMN chat TEXT NOT NULL DEFAULT '';
CREATE INDEX events_chat ON events (chat, channel) WHERE chat <> '';

-- The reconciler's first-run baseline of each channel: written at the first
-- successful poll, so "first run" is decided from it and never from an empty
-- events table. high_water is the highest msg_id of that poll per direction
-- ('' when it saw none); a message at or below it predates the relay.
CREATE TABLE reconcile_baselines (
    channel          TEXT    PRIMARY KEY,
    recorded_at      INTEGER NOT NULL,
    high_in          TEXT    NOT NULL DEFAULT '',
    high_out         TEXT    NOT NULL DEFAULT '',
    -- 1 when the baseline was taken over a store that already had events of
    -- the channel (an upgrade): nothing polled is treated as history.
    adopted          INTEGER NOT NULL DEFAULT 0,
    backfill         INTEGER NOT NULL DEFAULT 0
);

-- Messages the reconciler knows are missing and cannot recover: the durable
-- record an operator reviews and marks resolved.
CREATE TABLE reconcile_gaps (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    channel       TEXT    NOT NULL,
    chat          TEXT    NOT NULL DEFAULT '',
    reason        TEXT    NOT NULL,
    direction     TEXT    NOT NULL DEFAULT '',
    after_msg_id  TEXT    NOT NULL DEFAULT '',
    after_time    TEXT    NOT NULL DEFAULT '',
    before_msg_id TEXT    NOT NULL DEFAULT '',
    before_time   TEXT    NOT NULL DEFAULT '',
    detected_at   INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    resolved_at   INTEGER,
    note          TEXT    NOT NULL DEFAULT ''
);
-- One open record per chat and reason; a later detection of the same gap
-- widens it instead of adding another.
CREATE UNIQUE INDEX reconcile_gaps_open ON reconcile_gaps (channel, chat, reason, direction) WHERE resolved_at IS NULL;
