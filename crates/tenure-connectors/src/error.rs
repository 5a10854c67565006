//! Connector errors.
//!
//! Every error names the system; errors about one operation name the action,
//! the account and (for memberships) the entitlement; errors from the database
//! keep the driver's error as their `source` and also quote the server's answer
//! in their message, so that `to_string()` alone is enough for an operator.
//! [`ConnectorError::is_transient`] tells a retry worth trying (connection
//! lost, timeout, deadlock) from one that will fail the same way again
//! (constraint violation, missing table, bad settings).
//!
//! This module does not decide whether or when to retry: that is the engine's
//! queue. Messages never contain a secret: database URLs are redacted before
//! they are put into an error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tenure_core::{AccountKey, EntitlementName, Operation, SystemId};

/// Which operation an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpLabel {
    /// The action's short name (`create`, `add_membership` …, see [`tenure_core::Action::name`]).
    pub action: &'static str,
    /// The account.
    pub account: AccountKey,
    /// The entitlement, for membership operations.
    pub entitlement: Option<EntitlementName>,
}

impl OpLabel {
    /// The label of an operation.
    pub fn of(op: &Operation) -> OpLabel {
        use tenure_core::Action;
        let entitlement = match &op.action {
            Action::AddMembership { entitlement } | Action::RemoveMembership { entitlement } => {
                Some(entitlement.clone())
            }
            _ => None,
        };
        OpLabel {
            action: op.action.name(),
            account: op.account.clone(),
            entitlement,
        }
    }
}

impl fmt::Display for OpLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of account {:?}", self.action, self.account.as_str())?;
        if let Some(e) = &self.entitlement {
            write!(f, " (entitlement {:?})", e.as_str())?;
        }
        Ok(())
    }
}

/// Why a connector could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The system's `settings` are invalid (see [`crate::validate`]).
    #[error("system {system}: invalid settings: {}", .problems.join("; "))]
    Settings {
        /// The system.
        system: SystemId,
        /// Every problem, each naming its key.
        problems: Vec<String>,
    },
    /// No connector exists for the system's `kind`.
    #[error("system {system}: unknown connector kind {kind:?} (known: {})", crate::KNOWN_KINDS.join(", "))]
    UnknownKind {
        /// The system.
        system: SystemId,
        /// The kind it asked for.
        kind: String,
    },
    /// A secret reference could not be resolved (the message names the
    /// variable or file, never the secret).
    #[error("system {system}: {reason}")]
    Secret {
        /// The system.
        system: SystemId,
        /// What failed.
        reason: String,
    },
    /// The system could not be reached.
    #[error("system {system}: cannot connect to {target}: {source}")]
    Connect {
        /// The system.
        system: SystemId,
        /// Where it was trying to connect (password redacted).
        target: String,
        /// The driver's error.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// The system's tables or columns do not match the settings.
    #[error("system {system}: the database does not match the settings: {}", .problems.join("; "))]
    Schema {
        /// The system.
        system: SystemId,
        /// Every mismatch found.
        problems: Vec<String>,
    },
    /// A query not tied to one operation failed (reading accounts, reading the schema, committing).
    #[error("system {system}: {context} failed: {source}")]
    Query {
        /// The system.
        system: SystemId,
        /// What was being done.
        context: &'static str,
        /// The driver's error (the server's answer).
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// The system refused one operation (constraint violation, value too long …).
    #[error("system {system}: {op} failed: {source}")]
    Operation {
        /// The system.
        system: SystemId,
        /// The operation.
        op: OpLabel,
        /// The driver's error (the server's answer).
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// The connector refused one operation without sending it (unsupported
    /// by the settings, unknown attribute, account not found …). Permanent.
    #[error("system {system}: {op} refused: {reason}")]
    Rejected {
        /// The system.
        system: SystemId,
        /// The operation.
        op: OpLabel,
        /// Why.
        reason: String,
    },
    /// The operation itself was fine but its batch's transaction failed as a
    /// whole (the connection was lost, the commit failed, the server rolled
    /// everything back): nothing of it was applied.
    #[error("system {system}: {op} not applied: {reason}: {source}")]
    NotApplied {
        /// The system.
        system: SystemId,
        /// The operation.
        op: OpLabel,
        /// What happened to the batch.
        reason: &'static str,
        /// The driver's error that ended the batch.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// An LDAP directory could not be reached, did not answer in time, or
    /// refused a request (binding, reading, or one operation).
    #[error("system {system}: {what}: {message}")]
    Directory {
        /// The system.
        system: SystemId,
        /// What failed: the operation and the entry's DN (`create of account
        /// "alice" at uid=alice,ou=people,dc=example,dc=com`) or the step
        /// (`reading accounts under ou=people,dc=example,dc=com`).
        what: String,
        /// The server's answer (result code, its name and diagnostic text),
        /// or why no answer came. Never a password.
        message: String,
        /// The LDAP result code, when the server answered.
        code: Option<u32>,
        /// Whether trying again later may succeed (connection refused or
        /// lost, a timeout, `busy`, `unavailable`).
        transient: bool,
    },
    /// An HTTP service (a SCIM application) could not be reached, did not
    /// answer in time, or answered with an error or with something unusable.
    #[error("system {system}: {what}: {message}")]
    Http {
        /// The system.
        system: SystemId,
        /// What failed: the operation (`create of account "alice" failed`)
        /// or the step (`reading accounts failed`).
        what: String,
        /// The HTTP status and the service's answer (for SCIM, its `scimType`
        /// and `detail`), or why no answer came.
        message: String,
        /// The HTTP status, when the service answered.
        status: Option<u16>,
        /// Whether trying again later may succeed (no answer, a timeout,
        /// 429 Too Many Requests, a 5xx status).
        transient: bool,
        /// How long the service asked to wait before trying again (`Retry-After`).
        retry_after: Option<Duration>,
    },
}

impl ConnectorError {
    /// The system the error is about.
    pub fn system(&self) -> &SystemId {
        match self {
            ConnectorError::Settings { system, .. }
            | ConnectorError::UnknownKind { system, .. }
            | ConnectorError::Secret { system, .. }
            | ConnectorError::Connect { system, .. }
            | ConnectorError::Schema { system, .. }
            | ConnectorError::Query { system, .. }
            | ConnectorError::Operation { system, .. }
            | ConnectorError::Rejected { system, .. }
            | ConnectorError::NotApplied { system, .. }
            | ConnectorError::Http { system, .. }
            | ConnectorError::Directory { system, .. } => system,
        }
    }

    /// How long the system asked to wait before the next try, when it said
    /// (an HTTP `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectorError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The driver's error, when the database answered or the connection failed.
    pub fn database_error(&self) -> Option<&sqlx::Error> {
        match self {
            ConnectorError::Connect { source, .. }
            | ConnectorError::Query { source, .. }
            | ConnectorError::Operation { source, .. }
            | ConnectorError::NotApplied { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the connection was refused or
    /// lost, a timeout expired (including waiting for a pooled connection), or
    /// the database reported a deadlock, a serialization failure, a lock
    /// timeout or too many connections; an HTTP service did not answer, timed
    /// out, asked to slow down (429) or failed on its side (5xx). Constraint
    /// violations, missing tables, bad settings, refused operations and other
    /// HTTP errors (4xx) are permanent.
    pub fn is_transient(&self) -> bool {
        if let ConnectorError::Directory { transient, .. } = self {
            return *transient;
        }
        if let ConnectorError::Http { transient, .. } = self {
            return *transient;
        }
        self.database_error().is_some_and(sqlx_is_transient)
    }
}

/// Whether a driver error is worth retrying (see [`ConnectorError::is_transient`]).
pub(crate) fn sqlx_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => database_error_is_transient(db.as_ref()),
        _ => false,
    }
}

fn database_error_is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(e) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // 1040 too many connections, 1053 server shutdown, 1205 lock wait
        // timeout, 1213 deadlock, 1927 connection killed, 2006 server gone
        // away, 2013 lost connection, 3024/1969 statement timeout (MySQL /
        // MariaDB), 4031 disconnected for inactivity.
        return matches!(
            e.number(),
            1040 | 1053 | 1205 | 1213 | 1927 | 1969 | 2006 | 2013 | 3024 | 4031
        ) || e.code().is_some_and(sqlstate_is_transient);
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code.
        return db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6));
    }
    db.code().is_some_and(|c| sqlstate_is_transient(&c))
}

/// SQLSTATEs worth retrying: connection exceptions (class 08), serialization
/// failure, deadlock, too many connections, server shutting down or starting
/// up, lock not available, statement timeout.
fn sqlstate_is_transient(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03" | "55P03" | "57014"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        assert!(sqlstate_is_transient("40001"));
        assert!(sqlstate_is_transient("40P01"));
        assert!(sqlstate_is_transient("08006"));
        assert!(!sqlstate_is_transient("23505"));
        assert!(!sqlstate_is_transient("22001"));
    }

    #[test]
    fn io_and_pool_timeouts_are_transient() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(sqlx_is_transient(&refused));
        assert!(sqlx_is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!sqlx_is_transient(&sqlx::Error::RowNotFound));
    }
}
