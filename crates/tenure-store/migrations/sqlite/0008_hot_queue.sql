-- Tenure store, schema version 8: a queue whose changes of state leave its
-- indexes alone.
--
-- The claim indexes were partial on `state`, so every change of state (a
-- claim, a dependency released, a retry) also moved the row in and out of
-- them. They are now partial on `pending` (true until the row is done or
-- failed for good), which a claim, a release and a retry leave as it is.
-- Claims read past the running and blocked rows they meet in the index, and
-- take over a running row whose lease has expired there too, so the index of
-- leases goes.
ALTER TABLE operations ADD COLUMN pending INTEGER NOT NULL DEFAULT 1;
UPDATE operations SET pending = 0 WHERE state IN ('done', 'failed');

DROP INDEX operations_runnable;
DROP INDEX operations_lane;
DROP INDEX operations_leases;
-- Claims: WHERE pending [AND system = ?] ORDER BY priority DESC, id.
CREATE INDEX operations_pending ON operations (priority DESC, id) WHERE pending;
CREATE INDEX operations_pending_lane ON operations (system, priority DESC, id) WHERE pending;
