-- QueueStats (every /metrics scrape) counts dead deliveries per target
-- through this index instead of reading the whole table; pending ones it
-- counts through the claim index.
CREATE INDEX deliveries_dead_idx ON deliveries (target) WHERE status = 'dead';
