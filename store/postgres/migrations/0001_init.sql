-- Objects are created unqualified, in the schema at the head of the
-- connection's search_path, so one database can hold several relays (or
-- several test runs) side by side.

CREATE TABLE events (
    id          bigserial   PRIMARY KEY,
    key         text        NOT NULL UNIQUE,
    kind        text        NOT NULL,
    source      text        NOT NULL,
    msg_id      text        NOT NULL DEFAULT '',
    state       text        NOT NULL DEFAULT '',
    body        bytea       NOT NULL,
    received_at timestamptz NOT NULL
);

-- KnownMessages looks events up by message id; raw events have none.
CREATE INDEX events_msg_id_idx ON events (msg_id) WHERE msg_id <> '';
-- Prune walks events by age.
CREATE INDEX events_received_at_idx ON events (received_at);

CREATE TABLE deliveries (
    id               bigserial   PRIMARY KEY,
    event_id         bigint      NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    target           text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    lease_owner      text,
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    last_error       text        NOT NULL DEFAULT '',
    -- when last_error was recorded: TargetStats reports the latest failure
    last_error_at    timestamptz,
    last_status_code integer     NOT NULL DEFAULT 0
);

-- Claims scan only the pending rows of one target, due first.
CREATE INDEX deliveries_claim_idx ON deliveries (target, next_attempt_at) WHERE status = 'pending';
-- The cascade from events and Prune's "all deliveries finished" check.
CREATE INDEX deliveries_event_id_idx ON deliveries (event_id);

-- Facts about the store as a whole. 'events_stored' is written with the first
-- committed event and never removed, so HasEvents stays true after Prune.
CREATE TABLE store_meta (
    name       text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
