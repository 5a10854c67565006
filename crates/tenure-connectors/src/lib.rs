//! Connectors: how Tenure talks to the systems it provisions.
//!
//! A [`Connector`] executes operations the planner made and reads accounts
//! back; it never decides anything. It does not compute desired state, does not
//! retry (the engine's durable queue does, guided by
//! [`ConnectorError::is_transient`]), does not order or batch operations beyond
//! the batch it is given, and keeps no state of its own besides connection
//! pools and what it learnt about the target's schema.
//!
//! [`build`] turns a `[[system]]` of the configuration into a connector
//! (a registry over `kind`) and [`validate`] checks a system's `settings`
//! without connecting, for `tenure check`. Known kinds: [`KNOWN_KINDS`].
//!
//! Secrets (database URLs with passwords) are only ever referenced from the
//! configuration (`{ env = "…" }`, `{ file = "…" }`) and never appear in an
//! error message, a log line or a `Debug` output.

pub mod error;
pub mod ldap;
pub mod scim;
pub mod sql;

pub use error::{ConnectorError, OpLabel};

use std::path::Path;
use tenure_core::config::SystemConfig;
use tenure_core::state::{AccountQuery, SystemAccounts};
use tenure_core::{Capabilities, Operation, SystemId};

/// The connector kinds this crate provides (`kind = "…"` in `[[system]]`).
pub const KNOWN_KINDS: &[&str] = &[sql::KIND, ldap::KIND, scim::KIND];

/// A connection to one target system.
///
/// Connectors never decide anything: they execute the operations the planner
/// made, in the order given, and read accounts back.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// The system this connector serves.
    fn system(&self) -> &SystemId;

    /// What the system can do, as configured (the planner only plans what it can do).
    fn capabilities(&self) -> Capabilities;

    /// Checks the system is reachable and the configuration matches it
    /// (tables and columns exist).
    async fn check(&self) -> Result<(), ConnectorError>;

    /// Reads every account with its managed attributes, enabled flag and entitlements.
    async fn read_accounts(&self) -> Result<SystemAccounts, ConnectorError>;

    /// Reads only the accounts `query` asks for (by key, or by correlation
    /// attribute value, both ignoring case), with the same content as
    /// [`Connector::read_accounts`] gives them. Used to plan for the people
    /// who changed without reading every account. The default reads every
    /// account and keeps those asked for; connectors that can search override it.
    async fn read_accounts_matching(
        &self,
        query: &AccountQuery,
    ) -> Result<SystemAccounts, ConnectorError> {
        if query.is_empty() {
            return Ok(SystemAccounts::default());
        }
        Ok(query.filter(self.read_accounts().await?))
    }

    /// Executes a batch of operations for this system, in order.
    ///
    /// Returns one result per operation, in the same order; `Ok` means the
    /// system confirmed (committed) the change. Idempotent: applying the same
    /// operation again after a crash has the same effect (creating an existing
    /// key makes it match, adding a held membership and deleting or removing
    /// something absent do nothing).
    async fn apply(&self, ops: &[Operation]) -> Vec<Result<(), ConnectorError>>;
}

/// Checks a system's connector settings without connecting (for `tenure check`).
///
/// Every problem is returned at once; each message names the settings key it
/// is about. The caller adds the file and line.
pub fn validate(system: &SystemConfig) -> Result<(), Vec<String>> {
    let kind = system.kind.get_ref();
    match kind.as_str() {
        sql::KIND => sql::validate(system),
        ldap::KIND => ldap::validate(system),
        scim::KIND => scim::validate(system),
        other => Err(vec![unknown_kind_message(other)]),
    }
}

/// Builds the connector for a configured system.
///
/// Secret references are resolved now (environment variables, files relative
/// to `config_dir`); nothing is connected yet, so an unreachable system does
/// not stop the others from being built. Use [`Connector::check`] to connect.
pub async fn build(
    system: &SystemConfig,
    config_dir: &Path,
) -> Result<Box<dyn Connector>, ConnectorError> {
    let kind = system.kind.get_ref();
    match kind.as_str() {
        sql::KIND => Ok(Box::new(sql::SqlConnector::new(system, config_dir).await?)),
        ldap::KIND => Ok(Box::new(
            ldap::LdapConnector::new(system, config_dir).await?,
        )),
        scim::KIND => Ok(Box::new(
            scim::ScimConnector::new(system, config_dir).await?,
        )),
        other => Err(ConnectorError::UnknownKind {
            system: system.id.clone(),
            kind: other.to_owned(),
        }),
    }
}

fn unknown_kind_message(kind: &str) -> String {
    format!(
        "kind: unknown connector kind {kind:?} (known: {})",
        KNOWN_KINDS.join(", ")
    )
}
