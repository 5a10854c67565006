-- Tenure store, schema version 2: a lighter queue.
--
-- Operation bodies move to their own table, written once: a queue row changes
-- state three or four times in its life, and each change rewrote the body
-- with it. The claim indexes become partial, holding only queued rows
-- (overall, and per system for the executor's one lane per system), and
-- expired leases are found through an index of running rows.

CREATE TABLE operation_bodies (
    plan_id INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    body    TEXT    NOT NULL,   -- the operation as JSON
    PRIMARY KEY (plan_id, seq)
) WITHOUT ROWID;
INSERT INTO operation_bodies (plan_id, seq, body) SELECT plan_id, seq, body FROM operations;
ALTER TABLE operations DROP COLUMN body;

DROP INDEX operations_claim;
-- Claims: WHERE state = 'queued' [AND system = ?] ORDER BY priority DESC, id.
CREATE INDEX operations_runnable ON operations (priority DESC, id) WHERE state = 'queued';
CREATE INDEX operations_lane ON operations (system, priority DESC, id) WHERE state = 'queued';
-- Leases to take back: WHERE state = 'running' AND lease_until <= ?.
CREATE INDEX operations_leases ON operations (lease_until) WHERE state = 'running';
