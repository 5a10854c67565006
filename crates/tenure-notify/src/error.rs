//! The crate's error type. Every variant says what and where (the
//! configuration key, the template file, the store); none carries a secret.

use tenure_store::StoreError;

/// Anything that can go wrong while setting up or running notifications.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The notification configuration cannot be used (a secret that cannot
    /// be read, a signing key that does not parse, an address that does not
    /// parse). The message names the configuration key.
    #[error("{0}")]
    Config(String),

    /// A template does not parse or does not render.
    #[error("template {file}: {message}")]
    Template {
        /// The template file (in the configuration's template directory, or
        /// `built-in NAME` for a shipped default).
        file: String,
        /// What is wrong, with the line where minijinja knows it.
        message: String,
    },

    /// Signing a security event token failed.
    #[error("signing a security event token for receiver {receiver}: {message}")]
    Sign {
        /// The receiver.
        receiver: String,
        /// Why.
        message: String,
    },

    /// The outbox could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}
