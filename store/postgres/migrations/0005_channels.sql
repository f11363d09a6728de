-- Several WAMM channels in one relay; see the SQLite migration of the same
-- name for what each column is for.
ALTER TABLE events ADD COLUMN channel text NOT NULL DEFAULT 'default';
ALTER TABLE events ADD COLUMN chat text NOT NULL DEFAULT '';
CREATE INDEX events_chat_idx ON events (chat, channel, id) WHERE chat <> '';

CREATE TABLE reconcile_baselines (
    channel     text        PRIMARY KEY,
    recorded_at timestamptz NOT NULL,
    high_in     text        NOT NULL DEFAULT '',
    high_out    text        NOT NULL DEFAULT '',
    adopted     boolean     NOT NULL DEFAULT false,
    backfill    boolean     NOT NULL DEFAULT false
);

CREATE TABLE reconcile_gaps (
    id            bigserial   PRIMARY KEY,
    channel       text        NOT NULL,
    chat          text        NOT NULL DEFAULT '',
    reason        text        NOT NULL,
    direction     text        NOT NULL DEFAULT '',
    after_msg_id  text        NOT NULL DEFAULT '',
    after_time    text        NOT NULL DEFAULT '',
    before_msg_id text        NOT NULL DEFAULT '',
    before_time   text        NOT NULL DEFAULT '',
    detected_at   timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    resolved_at   timestamptz,
    note          text        NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX reconcile_gaps_open_idx ON reconcile_gaps (channel, chat, reason, direction) WHERE resolved_at IS NULL;
