-- Tenure store, schema version 3 (postgres): the SCIM 2.0 service provider and API tokens.
-- Resources are kept whole as JSON text (`resource`, without id and meta);
-- the columns beside it are copies for indexes and filters.

CREATE TABLE scim_users (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,   -- SCIM id (a UUID)
    identity_id     TEXT COLLATE "C" NOT NULL,               -- the lifecycle identity it feeds
    user_name       TEXT    NOT NULL,
    user_name_lower TEXT    NOT NULL,
    external_id     TEXT,
    display_name    TEXT,
    active          BIGINT NOT NULL CHECK (active IN (0, 1)),
    deactivated_at  BIGINT,                        -- when active last became false (the deactivation guard's window)
    version         BIGINT NOT NULL,
    created         BIGINT NOT NULL,
    modified        BIGINT NOT NULL,
    resource        TEXT    NOT NULL
);
CREATE UNIQUE INDEX scim_users_user_name ON scim_users (user_name_lower);
CREATE UNIQUE INDEX scim_users_identity ON scim_users (identity_id);
CREATE INDEX scim_users_external_id ON scim_users (external_id);
CREATE INDEX scim_users_display_name ON scim_users (display_name);
CREATE INDEX scim_users_created ON scim_users (created, id);
CREATE INDEX scim_users_deactivated ON scim_users (deactivated_at);

-- One row per value of a multi-valued attribute (emails, phoneNumbers …),
-- so that filters on them are indexed EXISTS subqueries.
CREATE TABLE scim_user_values (
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    attr          TEXT    NOT NULL,
    pos           BIGINT NOT NULL,
    type_lower    TEXT,
    value         TEXT,
    value_lower   TEXT,
    display       TEXT,
    primary_value BIGINT NOT NULL DEFAULT 0,
    item          TEXT    NOT NULL,   -- the whole value as JSON
    PRIMARY KEY (user_id, attr, pos)
);
CREATE INDEX scim_user_values_value ON scim_user_values (attr, value_lower);

CREATE TABLE scim_groups (
    id                 TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    display_name       TEXT    NOT NULL,
    display_name_lower TEXT    NOT NULL,
    external_id        TEXT,
    version            BIGINT NOT NULL,
    created            BIGINT NOT NULL,
    modified           BIGINT NOT NULL,
    resource           TEXT    NOT NULL   -- without members (they are rows of scim_group_members)
);
CREATE INDEX scim_groups_display_name ON scim_groups (display_name_lower);
CREATE INDEX scim_groups_created ON scim_groups (created, id);

CREATE TABLE scim_group_members (
    group_id    TEXT COLLATE "C" NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    member_id   TEXT COLLATE "C" NOT NULL,
    member_type TEXT    NOT NULL CHECK (member_type IN ('User', 'Group')),
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX scim_group_members_member ON scim_group_members (member_id);

-- Bearer tokens for the service: only the SHA-256 of the secret is kept.
CREATE TABLE api_tokens (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,   -- JSON array of strings
    secret_hash  TEXT    NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

-- Operator overrides of the SCIM deactivation guard: `allowed` more
-- deactivations until `until` (tenure scim allow-deactivations).
CREATE TABLE scim_guard_allowances (
    id         BIGINT NOT NULL PRIMARY KEY,
    allowed    BIGINT NOT NULL CHECK (allowed > 0),
    until_at   BIGINT NOT NULL,
    actor      TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);
