-- Tenure store, schema version 8: a queue whose changes of state leave its
-- indexes alone.
--
-- The claim indexes were partial on `state`, so every change of state (a
-- claim, a dependency released, a retry) was a new row version in every
-- index of the table. They are now partial on `pending` (true until the row
-- is done or failed for good), which a claim, a release and a retry leave
-- as it is: with room left on each page (fillfactor), PostgreSQL writes those
-- changes as heap-only tuples, with no index entry at all. Claims read past
-- the running and blocked rows they meet in the index, and take over a
-- running row whose lease has expired there too, so the index of leases goes.
ALTER TABLE operations ADD COLUMN pending BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE operations SET pending = FALSE WHERE state IN ('done', 'failed');

DROP INDEX operations_runnable;
DROP INDEX operations_lane;
DROP INDEX operations_leases;
-- Claims: WHERE pending [AND system = ?] ORDER BY priority DESC, id.
CREATE INDEX operations_pending ON operations (priority DESC, id) WHERE pending;
CREATE INDEX operations_pending_lane ON operations (system, priority DESC, id) WHERE pending;

-- A row changes three or four times in its life: a third of each page is
-- left for its new versions.
ALTER TABLE operations SET (fillfactor = 70);
