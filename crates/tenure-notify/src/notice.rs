//! What the engine tells this crate about: a [`Notice`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use tenure_core::config::NoticeKind;

/// The identity a notice is about, as recipients and receivers need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeIdentity {
    /// The identity's id.
    pub id: String,
    /// A name people recognise (`Ada Lovelace`).
    pub display_name: String,
    /// Its attributes (the e-mail address among them).
    pub attributes: BTreeMap<String, String>,
    /// The manager's e-mail address, when there is a manager with one.
    pub manager_email: Option<String>,
}

/// Something that happened, to be told to people and systems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// Unique for this event (for example `leaver:E1042:2026-11-24` or
    /// `audit:1234`): the same notice enqueued twice is delivered once.
    pub id: String,
    /// What happened.
    pub kind: NoticeKind,
    /// Whom it is about, when it is about a person.
    pub identity: Option<NoticeIdentity>,
    /// The system it is about, when it is about one (a failure, a quarantine).
    pub system: Option<String>,
    /// What happened, in words (the reason of a suspension, a failure's error).
    pub detail: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}
