//! The store's error type.
//!
//! Every variant says what the store was doing and where (the store's URL,
//! with any password removed, or the table, column and row of a bad value),
//! and keeps the underlying error as its `source`. Unique-constraint
//! violations become [`StoreError::Conflict`] so callers can tell "already
//! there" from "the database is broken". This module does not log, retry or
//! decide what is fatal: that is the caller's business.

use std::error::Error as StdError;

/// Anything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store URL names no database Tenure can use.
    #[error(
        "unsupported store URL {url:?}: expected sqlite:PATH, sqlite://PATH, a path ending in .db, \
         postgres://… or postgresql://…"
    )]
    UnsupportedUrl {
        /// The URL, without its password.
        url: String,
    },

    /// The database could not be reached or opened.
    #[error("cannot open the store at {store}")]
    Connect {
        /// Where (the URL, without its password).
        store: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },

    /// A schema migration failed; the store is left at the version before it.
    #[error("cannot migrate the store at {store} to schema version {version} ({name})")]
    Migrate {
        /// Where.
        store: String,
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },

    /// The database was migrated by a newer Tenure than this one.
    #[error(
        "the store at {store} has schema version {found}, but this Tenure knows only up to \
         {known}: upgrade Tenure before using this database"
    )]
    SchemaTooNew {
        /// Where.
        store: String,
        /// The version found in the database.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },

    /// A write would duplicate a row that must be unique.
    #[error("{what} in the store at {store}: a row with the same key already exists")]
    Conflict {
        /// What the store was doing.
        what: String,
        /// Where.
        store: String,
        /// The database's unique-constraint error.
        #[source]
        source: sqlx::Error,
    },

    /// Any other database error.
    #[error("{what} in the store at {store} failed")]
    Database {
        /// What the store was doing.
        what: String,
        /// Where.
        store: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },

    /// A stored value cannot be read back as what it should be.
    #[error("corrupt value in {table}.{column} (row {row}) of the store at {store}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The row's key.
        row: String,
        /// Where.
        store: String,
        /// Why it cannot be read.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// A value could not be encoded as JSON for storage.
    #[error("cannot encode {what} as JSON for the store at {store}")]
    Encode {
        /// What.
        what: String,
        /// Where.
        store: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },

    /// A conditional write found the row at another version than expected.
    #[error("{what} in the store at {store}: it was changed since version {expected}")]
    Stale {
        /// What the store was doing.
        what: String,
        /// Where.
        store: String,
        /// The version the caller expected.
        expected: i64,
    },

    /// The row to change does not exist.
    #[error("{what} in the store at {store}: not found")]
    NotFound {
        /// What the store was doing.
        what: String,
        /// Where.
        store: String,
    },

    /// The caller asked for something the store cannot represent.
    #[error("invalid request to the store at {store}: {message}")]
    Invalid {
        /// Where.
        store: String,
        /// What is wrong.
        message: String,
    },
}

impl StoreError {
    /// Whether this is a unique-constraint conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Wraps a database error, recognising unique-constraint violations.
    pub(crate) fn db(store: &str, what: impl Into<String>, source: sqlx::Error) -> Self {
        let what = what.into();
        let store = store.to_owned();
        let unique = matches!(&source, sqlx::Error::Database(e) if e.is_unique_violation());
        if unique {
            StoreError::Conflict {
                what,
                store,
                source,
            }
        } else {
            StoreError::Database {
                what,
                store,
                source,
            }
        }
    }
}

/// A plain message as an error source (for corrupt values whose cause is not an error type).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Message(pub String);
