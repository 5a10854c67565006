//! Notices of what the lifecycle did, handed to `tenure-notify`'s outbox.
//!
//! Enqueueing is local (one transaction, no network) and never fails the
//! lifecycle step that caused it: a notice that cannot be stored is logged,
//! and the step carries on. Each notice has an id derived from its event, so
//! the same event told twice is delivered once.

use crate::engine::Engine;
use crate::observe::label;
use tenure_core::config::NoticeKind;
use tenure_core::{Identity, IdentityId};
use tenure_notify::{Notice, NoticeIdentity};

impl Engine {
    /// Whether notifications are configured at all.
    pub fn notifies(&self) -> bool {
        self.notifier.is_some()
    }

    /// What a notice says about a person: their name, attributes and their
    /// manager's e-mail address (looked up in the store).
    pub async fn notice_identity(&self, identity: &Identity) -> NoticeIdentity {
        let email_attribute = self
            .policy
            .config()
            .notifications
            .as_ref()
            .map(|n| n.item.email_attribute.clone())
            .unwrap_or_else(|| "email".to_owned());
        let manager_email = match &identity.record.manager {
            Some(m) => match self.store.identity(m).await {
                Ok(Some(m)) => m
                    .record
                    .attributes
                    .get(&email_attribute)
                    .filter(|e| !e.trim().is_empty())
                    .cloned(),
                _ => None,
            },
            None => None,
        };
        NoticeIdentity {
            id: identity.id().to_string(),
            display_name: label(identity),
            attributes: identity.record.attributes.clone(),
            manager_email,
        }
    }

    /// Puts notices in the outbox (when notifications are configured).
    /// Never fails: a notice that cannot be stored is logged.
    pub async fn notify(&self, notices: Vec<Notice>) {
        let Some(n) = &self.notifier else { return };
        if notices.is_empty() {
            return;
        }
        if let Err(e) = n.enqueue(&self.store, &notices, self.wall.now()).await {
            tracing::error!(error = %e, notices = notices.len(), "notices could not be stored");
        }
    }

    /// A notice about one person.
    pub async fn person_notice(
        &self,
        kind: NoticeKind,
        id: &IdentityId,
        event_key: &str,
        detail: String,
    ) -> Option<Notice> {
        let identity = match self.store.identity(id).await {
            Ok(Some(i)) => i,
            _ => return None,
        };
        Some(
            self.identity_notice(kind, &identity, event_key, detail)
                .await,
        )
    }

    /// A notice about one person already read.
    pub async fn identity_notice(
        &self,
        kind: NoticeKind,
        identity: &Identity,
        event_key: &str,
        detail: String,
    ) -> Notice {
        Notice {
            id: format!("{}:{}:{event_key}", kind.as_str(), identity.id()),
            kind,
            identity: Some(self.notice_identity(identity).await),
            system: None,
            detail,
            at: self.clock.now(),
        }
    }

    /// A notice about one system.
    pub fn system_notice(
        &self,
        kind: NoticeKind,
        system: &str,
        event_key: &str,
        detail: String,
    ) -> Notice {
        Notice {
            id: format!("{}:{system}:{event_key}", kind.as_str()),
            kind,
            identity: None,
            system: Some(system.to_owned()),
            detail,
            at: self.wall.now(),
        }
    }
}
