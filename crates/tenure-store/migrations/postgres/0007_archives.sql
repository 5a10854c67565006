-- Leavers' data archived through a webhook (the `archive` deprovisioning
-- step on a system with `archive_webhook`): the receiver cannot be read
-- back, so the store remembers which accounts are archived. A row goes when
-- the account is enabled or created again (a rehire), or deleted.
CREATE TABLE archived_accounts (
    system  TEXT   NOT NULL,
    account TEXT   NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (system, account)
);
