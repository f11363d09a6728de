-- The newest msg_id of each direction's last poll the reconciler took in
-- (see the SQLite migration of the same name).
ALTER TABLE reconcile_baselines ADD COLUMN polled_in text NOT NULL DEFAULT '';
ALTER TABLE reconcile_baselines ADD COLUMN polled_out text NOT NULL DEFAULT '';
