-- Tenure store, schema version 6: grants, access held outside birthright
-- rules (an approved request, a grace period after a move), each with its
-- validity window. A grant ends by its window or by being revoked; ended
-- grants stay, for the record.

CREATE TABLE grants (
    id          BIGSERIAL PRIMARY KEY,
    identity    TEXT   NOT NULL,
    role        TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    valid_from  BIGINT,            -- unix microseconds; NULL: from the start
    valid_until BIGINT,            -- unix microseconds; NULL: no end
    created_at  BIGINT NOT NULL,
    created_by  TEXT   NOT NULL,
    revoked_at  BIGINT,            -- NULL: not revoked
    revoked_by  TEXT
);
CREATE INDEX grants_identity ON grants (identity);
