//! Archiving through a webhook: a connector decorator for systems with
//! `archive_webhook`.
//!
//! The `archive` deprovisioning step asks for a leaver's data to be
//! transferred or archived. On a system whose `[[system]]` names an
//! `archive_webhook`, [`WebhookArchive`] wraps the system's connector: every
//! operation but `ArchiveAccount` goes to the connector as before, and an
//! archive is a signed JSON `POST` to the webhook (signed by
//! `tenure_notify::webhook`, as notifications are), done only when the
//! receiver answers 2xx. No answer, a timeout, 408, 429 or 5xx is transient
//! (the queue retries it); any other status is a refusal that waits for an
//! operator.
//!
//! A receiver cannot be read back, so the store remembers the archived
//! accounts (`archived_accounts`) and reads mark them archived: the next plan
//! does not archive again. Enabling or creating the account again (a rehire)
//! forgets it, so that a later leave archives again; so does deleting it.
//!
//! The body:
//!
//! ```json
//! {"type": "archive", "id": "…", "system": "crm", "account": "ada",
//!  "identity": "E1001", "at": "2026-12-01T00:00:00Z"}
//! ```
//!
//! `id` is the operation's key, the same on every retry, and is also sent as
//! `Tenure-Delivery`.

use crate::clock::Clock;
use std::sync::Arc;
use tenure_connectors::{Connector, ConnectorError, OpLabel};
use tenure_core::state::{AccountQuery, SystemAccounts};
use tenure_core::{Action, Capabilities, Operation, SystemId};
use tenure_notify::webhook::WebhookCall;
use tenure_store::Store;

/// A system's connector whose archives are done by a webhook.
pub struct WebhookArchive {
    inner: Arc<dyn Connector>,
    call: WebhookCall,
    store: Store,
    /// Real time: the signature's timestamp, checked against the receiver's clock.
    wall: Arc<dyn Clock>,
}

impl WebhookArchive {
    /// Wraps `inner`; archives go to `call`, archived accounts are kept in `store`.
    pub fn new(
        inner: Arc<dyn Connector>,
        call: WebhookCall,
        store: Store,
        wall: Arc<dyn Clock>,
    ) -> WebhookArchive {
        WebhookArchive {
            inner,
            call,
            store,
            wall,
        }
    }

    fn failure(&self, op: &Operation, message: String, transient: bool) -> ConnectorError {
        ConnectorError::Http {
            system: self.inner.system().clone(),
            what: format!("{} (archive webhook {})", OpLabel::of(op), self.call.id()),
            message,
            status: None,
            transient,
            retry_after: None,
        }
    }

    async fn archive(&self, op: &Operation) -> Result<(), ConnectorError> {
        let now = self.wall.now();
        let id = op.key();
        let body = serde_json::json!({
            "type": "archive",
            "id": id,
            "system": op.system.as_str(),
            "account": op.account.as_str(),
            "identity": op.identity.as_ref().map(|i| i.as_str()),
            "at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
        .to_string();
        self.call
            .post(&id, &body, now.timestamp())
            .await
            .map_err(|f| self.failure(op, f.message, f.transient))?;
        // Done on the receiver's side; remembered so that the next plan
        // converges. If this fails, the operation is retried and the receiver
        // sees the same delivery id again.
        self.store
            .record_archived(&op.system, &op.account, now)
            .await
            .map_err(|e| {
                self.failure(
                    op,
                    format!("the receiver accepted it, but it could not be recorded: {e}"),
                    true,
                )
            })
    }

    /// Marks the accounts the store knows as archived.
    async fn mark(&self, mut accounts: SystemAccounts) -> Result<SystemAccounts, ConnectorError> {
        let archived = self
            .store
            .archived_accounts(self.inner.system())
            .await
            .map_err(|e| ConnectorError::Http {
                system: self.inner.system().clone(),
                what: "reading archived accounts".to_owned(),
                message: e.to_string(),
                status: None,
                transient: true,
                retry_after: None,
            })?;
        for (key, a) in accounts.accounts.iter_mut() {
            a.archived = archived.contains(key.as_str());
        }
        Ok(accounts)
    }
}

#[async_trait::async_trait]
impl Connector for WebhookArchive {
    fn system(&self) -> &SystemId {
        self.inner.system()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            archive: true,
            archive_to_manager: false,
            ..self.inner.capabilities()
        }
    }

    async fn check(&self) -> Result<(), ConnectorError> {
        self.inner.check().await
    }

    async fn read_accounts(&self) -> Result<SystemAccounts, ConnectorError> {
        let accounts = self.inner.read_accounts().await?;
        self.mark(accounts).await
    }

    async fn read_accounts_matching(
        &self,
        query: &AccountQuery,
    ) -> Result<SystemAccounts, ConnectorError> {
        let accounts = self.inner.read_accounts_matching(query).await?;
        self.mark(accounts).await
    }

    async fn apply(&self, ops: &[Operation]) -> Vec<Result<(), ConnectorError>> {
        let mut results = Vec::with_capacity(ops.len());
        // Runs of other operations go to the connector as batches, in order.
        let mut start = 0;
        for (i, op) in ops.iter().enumerate() {
            if !matches!(op.action, Action::ArchiveAccount { .. }) {
                continue;
            }
            if let Some(run) = ops.get(start..i)
                && !run.is_empty()
            {
                results.extend(self.forward(run).await);
            }
            results.push(self.archive(op).await);
            start = i + 1;
        }
        if let Some(run) = ops.get(start..)
            && !run.is_empty()
        {
            results.extend(self.forward(run).await);
        }
        results
    }
}

impl WebhookArchive {
    /// Applies operations through the connector; an account enabled or
    /// created again is no longer archived, and a deleted one is forgotten.
    async fn forward(&self, ops: &[Operation]) -> Vec<Result<(), ConnectorError>> {
        let mut results = self.inner.apply(ops).await;
        for (op, r) in ops.iter().zip(results.iter_mut()) {
            if r.is_ok()
                && matches!(
                    op.action,
                    Action::EnableAccount | Action::CreateAccount { .. } | Action::DeleteAccount
                )
                && let Err(e) = self.store.clear_archived(&op.system, &op.account).await
            {
                *r = Err(self.failure(
                    op,
                    format!("applied, but the account's archive could not be forgotten: {e}"),
                    true,
                ));
            }
        }
        results
    }
}
