-- The failed attempts of each delivery, for operators. A delivery that
-- succeeds at its first attempt writes nothing here: its delivery row says
-- all there is. Rows go with their delivery.
CREATE TABLE delivery_attempts (
    id          bigserial   PRIMARY KEY,
    delivery_id bigint      NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    at          timestamptz NOT NULL,
    status_code integer     NOT NULL DEFAULT 0,
    error       text        NOT NULL DEFAULT ''
);
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id);
