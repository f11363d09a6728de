-- Claims take due deliveries in (next_attempt_at, id) order. With id in the
-- index, the scan returns rows in that order and stops at the claim's limit.
-- Without it the planner may sort all due deliveries of the target first (it
-- does while the table has no statistics yet, as after a fresh install), so
-- every claim cost time in proportion to the backlog.
CREATE INDEX deliveries_claim_order_idx ON deliveries (target, next_attempt_at, id) WHERE status = 'pending';
DROP INDEX deliveries_claim_idx;
