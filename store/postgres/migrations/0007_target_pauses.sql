-- Targets an operator paused (see the SQLite migration of the same name).
CREATE TABLE target_pauses (
    target    text        PRIMARY KEY,
    paused_at timestamptz NOT NULL
);
