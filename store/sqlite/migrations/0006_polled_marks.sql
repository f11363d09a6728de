-- The newest msg_id of each direction's last poll the reconciler took in:
-- every older message was seen by a poll (or named in a gap). The next poll,
-- after a restart or by another instance, must reach back to it, or more
-- than a page may have been missed. '' until the first poll is taken in.
ALTER TABLE reconcile_baselines ADD COLUMN polled_in TEXT NOT NULL DEFAULT '';
ALTER TABLE reconcile_baselines ADD COLUMN polled_out TEXT NOT NULL DEFAULT '';
