-- Leases now live in the relay's memory (see leases.go): lease_owner and
-- lease_until are no longer read or written. Clear what an older version
-- left, so a row never looks leased to someone.
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL;

-- Fewer index entries move when an attempt is recorded (the hot path):
-- listing by status alone scans by id (delivered and pending rows are the
-- common and the newest ones) except for dead deliveries, which are few and
-- have their own small index; prune and the cascade need event_id only.
DROP INDEX deliveries_status;
CREATE INDEX deliveries_dead ON deliveries (id) WHERE status = 'dead';
DROP INDEX deliveries_event;
CREATE INDEX deliveries_event ON deliveries (event_id);
