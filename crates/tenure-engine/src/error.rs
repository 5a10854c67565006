//! The engine's errors. Each says what went wrong and where, and keeps its cause.

use tenure_core::guard::GuardVerdict;

/// Why an engine step failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration directory could not be read.
    #[error("cannot read the configuration in {path}: {source}")]
    ConfigRead {
        /// The directory or file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] tenure_core::config::ConfigErrors),
    /// A source file could not be read.
    #[error("cannot read {path}: {source}")]
    FileRead {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A source file was rejected; nothing was imported.
    #[error("{0}\nnothing was imported")]
    Source(#[from] tenure_sources::SourceError),
    /// No such source in the configuration.
    #[error("no source {0:?} in the configuration (known: {1})")]
    UnknownSource(String, String),
    /// Notifications could not be set up (templates, signing key).
    #[error(transparent)]
    Notify(#[from] tenure_notify::NotifyError),
    /// No identity with this id is stored.
    #[error(
        "no identity {0} is known (ids are the source's person ids, as `tenure report access` shows them)"
    )]
    UnknownIdentity(tenure_core::IdentityId),
    /// An import names identities another source owns.
    #[error(
        "source {source_id} sent identities that source {owner} is authoritative for: {ids}; nothing was imported"
    )]
    SourceConflict {
        /// The importing source.
        source_id: String,
        /// The owning source.
        owner: String,
        /// The ids (first few).
        ids: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tenure_store::StoreError),
    /// A connector failed.
    #[error(transparent)]
    Connector(#[from] tenure_connectors::ConnectorError),
    /// The mass-change guard refused the change.
    #[error(
        "refused by the mass-change guard: {verdict}. Nothing was applied.\nIt would have: {would}\nIf this is intended, run again with --allow-mass-change (recorded in the audit log with your name)"
    )]
    MassChange {
        /// The verdict.
        verdict: GuardVerdict,
        /// What would have happened, in words.
        would: String,
    },
    /// A saved plan no longer matches the state.
    #[error(
        "the saved plan {saved} no longer matches the current state (planning now gives {current}): identities, policy or systems changed since it was made. Nothing was applied; make and review a new plan"
    )]
    StaleSavedPlan {
        /// Fingerprint in the file.
        saved: String,
        /// Fingerprint now.
        current: String,
    },
    /// A saved plan file is unreadable.
    #[error("{path}: not a Tenure plan: {message}")]
    BadPlanFile {
        /// The file.
        path: String,
        /// What is wrong (with line and column for JSON errors).
        message: String,
    },
    /// No such system in the configuration.
    #[error("no system {system} in the configuration (known: {})", known.join(", "))]
    UnknownSystem {
        /// The system asked for.
        system: tenure_core::SystemId,
        /// The configured systems.
        known: Vec<String>,
    },
    /// A system's accounts could not be read.
    #[error("could not read the accounts: {message}")]
    SystemUnreadable {
        /// The system.
        system: tenure_core::SystemId,
        /// Why: the connector's error, which names the system.
        message: String,
    },
    /// Something else that is the caller's mistake.
    #[error("{0}")]
    Invalid(String),
    /// A task of Tenure's own failed (a bug: it panicked or was cancelled).
    #[error("internal error while {what}")]
    Internal {
        /// What was being done, and how the task ended.
        what: String,
    },
}
