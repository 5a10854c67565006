//! Tenure's durable store: identities, account links, plans, the durable
//! operation queue, the hash-chained audit log and the notification outbox.
//!
//! Two databases are supported through one [`sqlx::AnyPool`]: SQLite (the
//! embedded default: a file created and migrated on first use, in WAL mode)
//! and PostgreSQL (production: several Tenure processes may share one
//! database; claims use `SKIP LOCKED` and audit appends lock a head row).
//! [`Store::open`] connects and migrates. Every state change and the audit
//! records that go with it are written in one transaction.
//!
//! Storage conventions: timestamps are BIGINT unix microseconds (UTC), dates
//! `YYYY-MM-DD` text, structured values JSON text. Every value is bound as a
//! parameter; statements are built only from fixed SQL and placeholders.
//!
//! What this crate deliberately does not do: evaluate policy or lifecycle
//! status, build plans, run operations or talk to connectors (the engine
//! does), read the clock for anything but migration bookkeeping (callers pass
//! `now`), or verify the audit chain (that is
//! [`tenure_core::audit::verify`], fed by [`Store::audit_page`]).

mod archives;
mod audit;
mod changes;
mod error;
mod grants;
mod header;
mod identities;
mod migrate;
mod outbox;
mod queue;
mod scim;
mod scim_sql;
mod service;
mod sql;
mod store;
mod tokens;
mod url;

pub use changes::{IdentityDigest, LegalHold, PlanCursor};
pub use error::StoreError;
pub use grants::StoredGrant;
pub use migrate::{SCHEMA_VERSION, schema_versions};
pub use outbox::{Channel, Delivery, DeliveryCounts, DeliveryState, NewDelivery};
pub use queue::{
    MAX_BACKOFF, OpState, PendingOperation, PlanId, QueueCounts, QueuedOperation, RetryPolicy,
};
pub use scim::{GroupWrite, ScimQueryError, ScimRecord, UserWrite};
pub use service::SystemHealth;
pub use store::{Dialect, Store};
pub use tokens::{ApiToken, TOKEN_PREFIX, secret_hash};
