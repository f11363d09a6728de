-- Targets an operator paused: their deliveries wait, every instance stops
-- attempting them, and the switch survives restarts.
CREATE TABLE target_pauses (
    target    TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL
);
