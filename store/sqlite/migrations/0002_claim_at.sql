-- claim_at is when a pending delivery may next be claimed: its
-- next_attempt_at while nobody holds it, its lease's end while leased. The
-- claim index is ordered by it, so a claim reads the first due rows of the
-- index and nothing else; before, it stepped over every row leased by a
-- worker still in flight (up to the number of workers, on every claim).
ALTER TABLE deliveries ADD COLUMN claim_at INTEGER NOT NULL DEFAULT 0;
UPDATE deliveries SET claim_at = MAX(next_attempt_at, COALESCE(lease_until, 0));

DROP INDEX deliveries_claim;
CREATE INDEX deliveries_claim ON deliveries (target, claim_at, id) WHERE status = 'pending';

-- Fewer index entries move when an attempt is recorded (the hot path):
-- listing by status alone scans by id (delivered and pending rows are the
-- common and the newest ones) except for dead deliveries, which are few and
-- have their own small index; prune and the cascade need event_id only.
DROP INDEX deliveries_status;
CREATE INDEX deliveries_dead ON deliveries (id) WHERE status = 'dead';
DROP INDEX deliveries_event;
CREATE INDEX deliveries_event ON deliveries (event_id);
