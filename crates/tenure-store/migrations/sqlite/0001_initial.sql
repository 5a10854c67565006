-- Tenure store, schema version 1 (SQLite).
-- Timestamps are INTEGER unix microseconds (UTC), dates TEXT YYYY-MM-DD,
-- structured values JSON TEXT.

CREATE TABLE identities (
    id              TEXT    NOT NULL PRIMARY KEY,
    source          TEXT    NOT NULL,
    employment_type TEXT    NOT NULL,
    manager         TEXT,
    start_date      TEXT,
    end_date        TEXT,
    attributes      TEXT    NOT NULL,   -- JSON object of strings
    groups_json     TEXT    NOT NULL,   -- JSON array of strings
    status          TEXT    NOT NULL,
    suspended       INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1))
);

CREATE TABLE links (
    system   TEXT NOT NULL,
    account  TEXT NOT NULL,
    identity TEXT NOT NULL,
    PRIMARY KEY (system, account)
);
CREATE INDEX links_identity ON links (identity);

CREATE TABLE plans (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    format          INTEGER NOT NULL,
    fingerprint     TEXT    NOT NULL,
    made_at         INTEGER NOT NULL,
    today           TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    operation_count INTEGER NOT NULL,
    header          TEXT    NOT NULL    -- the plan as JSON, without its operations (they are rows of `operations`)
);

-- The durable operation queue: one row per operation of a plan.
-- state: 'blocked' (queued, waiting for depends_on to be done), 'queued', 'running', 'done', 'failed'.
CREATE TABLE operations (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    plan_id         INTEGER NOT NULL REFERENCES plans (id),
    seq             INTEGER NOT NULL,   -- index in the plan's operations
    system          TEXT    NOT NULL,
    account         TEXT    NOT NULL,
    identity        TEXT,
    action          TEXT    NOT NULL,
    body            TEXT    NOT NULL,   -- the operation as JSON
    idempotency_key TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    depends_on      INTEGER,            -- seq, in the same plan, of the operation that must be done first
    next_seq        INTEGER,            -- seq of the operation that depends on this one (made runnable when this is done)
    state           TEXT    NOT NULL CHECK (state IN ('blocked', 'queued', 'running', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    not_before      INTEGER NOT NULL,
    worker          TEXT,
    lease_until     INTEGER,
    done_at         INTEGER,
    UNIQUE (plan_id, seq)
);
-- Claims: WHERE state = 'queued' ORDER BY priority DESC, id (and counts by state).
-- A done operation makes its dependent runnable through UNIQUE (plan_id, seq) and next_seq.
CREATE INDEX operations_claim ON operations (state, priority DESC, id);

CREATE TABLE audit_log (
    seq       INTEGER NOT NULL PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

-- The chain's head: one row, locked by every appender.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
