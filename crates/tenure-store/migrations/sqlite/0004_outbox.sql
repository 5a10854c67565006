-- Tenure store, schema version 4: the notification outbox.
--
-- One row per message to deliver: a webhook POST, an e-mail or a security
-- event token, rendered when it was enqueued. Rows are claimed when due
-- (next_attempt_at), delivered, and marked done; a failed attempt moves
-- next_attempt_at forward with exponential backoff, and after the last
-- attempt the row stays, failed, for an operator to see. Nothing is deleted.

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Enqueueing the same message twice (a retried step) adds nothing.
    dedup_key       TEXT    NOT NULL UNIQUE,
    channel         TEXT    NOT NULL CHECK (channel IN ('webhook', 'email', 'set')),
    target          TEXT    NOT NULL,   -- webhook id, SET receiver id, or e-mail recipient address
    event           TEXT    NOT NULL,   -- what it is about (leaver, session-revoked, ...)
    subject         TEXT,               -- the identity or system it is about, for operators
    payload         TEXT    NOT NULL,   -- JSON body, rendered e-mail (JSON) or signed token
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,   -- unix microseconds; also the claim's lease
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
-- Claims: WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE state = 'pending';
-- Operators: the failed ones.
CREATE INDEX deliveries_failed ON deliveries (id) WHERE state = 'failed';
