-- Tenure store, schema version 5: planning only what changed, and the
-- service's schedules and system health.
--
-- Every save of identities takes the next number of `change_counter` and
-- stamps the rows it writes with it (`change_seq`). A plan that is applied
-- moves `plan_cursor` to the number it read: identities stamped after it, or
-- whose `next_due` moment has come, are the ones the next incremental plan
-- looks at. `record_hash` lets an import skip people whose record did not
-- change without decoding them.

ALTER TABLE identities ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE identities ADD COLUMN record_hash TEXT;
ALTER TABLE identities ADD COLUMN next_due BIGINT;   -- unix microseconds; NULL: nothing scheduled
CREATE INDEX identities_changes ON identities (change_seq);
CREATE INDEX identities_due ON identities (next_due) WHERE next_due IS NOT NULL;

CREATE TABLE change_counter (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq BIGINT  NOT NULL
);
INSERT INTO change_counter (id, seq) VALUES (1, 1);
-- Existing identities were all saved before any cursor: stamp them 1.
UPDATE identities SET change_seq = 1;

CREATE TABLE plan_cursor (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    change_seq BIGINT  NOT NULL,   -- identities stamped up to this were planned
    policy     TEXT    NOT NULL    -- the policy fingerprint they were planned with ('' = never)
);
INSERT INTO plan_cursor (id, change_seq, policy) VALUES (1, 0, '');

-- The service's schedules (periodic reconciliation per system, …): the next
-- run of each survives restarts.
CREATE TABLE schedules (
    name     TEXT   NOT NULL PRIMARY KEY,
    next_run BIGINT NOT NULL,          -- unix microseconds
    last_run BIGINT,
    last_outcome TEXT
);

-- Each system's health: consecutive failed batches, and quarantine.
CREATE TABLE system_health (
    system            TEXT   NOT NULL PRIMARY KEY,
    failures          BIGINT NOT NULL DEFAULT 0,
    quarantined_since BIGINT,            -- NULL: not quarantined
    retry_at          BIGINT,            -- next probe while quarantined
    last_error        TEXT
);

-- A person's operations: what an incremental plan checks for pending work,
-- and their timeline (`tenure status`).
CREATE INDEX operations_identity ON operations (identity);

-- Legal holds: a held person's accounts are never deleted until released.
CREATE TABLE legal_holds (
    identity TEXT   NOT NULL PRIMARY KEY,
    reason   TEXT   NOT NULL,
    actor    TEXT   NOT NULL,
    since    BIGINT NOT NULL
);
