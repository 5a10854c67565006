//! From notices to outbox rows: who is told what, rendered and signed once.

use crate::email::StoredEmail;
use crate::notice::Notice;
use crate::set::SetSigner;
use crate::templates::Templates;
use crate::{NotifyError, secret};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tenure_core::config::{
    Config, EmailRoute, NoticeKind, SetEvent, SetReceiverConfig, declared_attributes,
};
use tenure_store::{Channel, NewDelivery, Store};

/// Turns notices into deliveries and enqueues them. Built once from the
/// configuration ([`Notifier::new`]); cheap to share.
#[derive(Debug)]
pub struct Notifier {
    templates: Templates,
    email_attribute: String,
    addresses: BTreeMap<String, String>,
    email_routes: Vec<EmailRoute>,
    webhooks: Vec<(String, BTreeSet<NoticeKind>)>,
    signer: Option<SetSigner>,
    receivers: Vec<SetReceiverConfig>,
}

/// What [`Notifier::enqueue`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Deliveries added to the outbox (those already there are not counted).
    pub added: u64,
    /// Messages that could not be made, each with why (a person without an
    /// e-mail address, a template that failed to render). Log them: nothing
    /// else keeps them.
    pub skipped: Vec<String>,
}

/// A message's id, stable across retries: the first 128 bits of SHA-256 of
/// its dedup key, in hex.
pub fn message_id(dedup_key: &str) -> String {
    let d = Sha256::digest(dedup_key.as_bytes());
    hex::encode(&d[..16])
}

/// Loads and test-renders the e-mail templates the configuration uses (the
/// shipped ones and those in `[notifications] templates`), reading no
/// secret: for `tenure check`, which validates without credentials.
pub fn check_templates(config: &Config, config_dir: &Path) -> Result<(), NotifyError> {
    let dir = config
        .notifications
        .as_ref()
        .and_then(|n| n.item.templates.as_deref())
        .map(|t| config_dir.join(t));
    Templates::load(dir.as_deref(), &declared_attributes(config)).map(|_| ())
}

impl Notifier {
    /// Loads the templates (test-rendering each one with every attribute the
    /// sources declare) and the SET signing key. Secrets other than the
    /// signing key are read by [`crate::Dispatcher::new`].
    pub fn new(config: &Config, config_dir: &Path) -> Result<Notifier, NotifyError> {
        let n = config
            .notifications
            .as_ref()
            .map(|n| n.item.clone())
            .unwrap_or_default();
        let templates = Templates::load(
            n.templates
                .as_deref()
                .map(|t| config_dir.join(t))
                .as_deref(),
            &declared_attributes(config),
        )?;
        let (signer, receivers) = match &config.security_events {
            Some(se) => {
                let se = &se.item;
                let pem = secret::read(
                    "[security_events] signing_key",
                    &se.signing_key,
                    config_dir,
                    false,
                )?;
                let signer = SetSigner::new(
                    &se.issuer,
                    &se.key_id,
                    se.algorithm,
                    pem.expose().as_bytes(),
                )?;
                (Some(signer), se.receivers.clone())
            }
            None => (None, Vec::new()),
        };
        Ok(Notifier {
            templates,
            email_attribute: n.email_attribute,
            addresses: n.addresses,
            email_routes: n.email.into_iter().map(toml::Spanned::into_inner).collect(),
            webhooks: config
                .webhooks
                .iter()
                .map(|w| {
                    let events = if w.item.events.is_empty() {
                        NoticeKind::ALL.into_iter().collect()
                    } else {
                        w.item.events.iter().copied().collect()
                    };
                    (w.item.id.clone(), events)
                })
                .collect(),
            signer,
            receivers,
        })
    }

    /// The public SET signing keys as a JWKS (empty without `[security_events]`),
    /// to serve at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        match &self.signer {
            Some(s) => s.jwks(),
            None => json!({ "keys": [] }),
        }
    }

    /// The deliveries `notice` makes at `now`: a webhook message per
    /// subscribed webhook, an e-mail per recipient address of the matching
    /// routes, and, for a leaver or a suspension, a signed token per SET
    /// receiver and subscribed event. What could not be made is in the
    /// second list, with why.
    pub fn deliveries(
        &self,
        notice: &Notice,
        now: DateTime<Utc>,
    ) -> (Vec<NewDelivery>, Vec<String>) {
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        let subject = notice
            .identity
            .as_ref()
            .map(|i| format!("identity:{}", i.id))
            .or_else(|| notice.system.as_ref().map(|s| format!("system:{s}")));
        let mut add =
            |channel: Channel, target: &str, event: &str, key: String, payload: String| {
                out.push(NewDelivery {
                    dedup_key: key,
                    channel,
                    target: target.to_owned(),
                    event: event.to_owned(),
                    subject: subject.clone(),
                    payload,
                });
            };

        // Webhooks.
        for (id, events) in &self.webhooks {
            if !events.contains(&notice.kind) {
                continue;
            }
            let key = format!("{}/webhook/{id}", notice.id);
            let body = json!({
                "id": message_id(&key),
                "event_id": notice.id,
                "type": notice.kind.as_str(),
                "at": notice.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                "identity": notice.identity,
                "system": notice.system,
                "detail": notice.detail,
            });
            add(
                Channel::Webhook,
                id,
                notice.kind.as_str(),
                key,
                body.to_string(),
            );
        }

        // E-mail: every address once, however many routes name it.
        let mut to: BTreeSet<String> = BTreeSet::new();
        for route in self
            .email_routes
            .iter()
            .filter(|r| r.events.contains(&notice.kind))
        {
            for r in &route.to {
                match self.address(notice, r) {
                    Ok(a) => {
                        to.insert(a);
                    }
                    Err(why) => skipped.push(format!("e-mail for notice {}: {why}", notice.id)),
                }
            }
        }
        for addr in to {
            match self.templates.render(notice, &addr) {
                Ok(content) => {
                    let key = format!("{}/email/{addr}", notice.id);
                    let mail = StoredEmail {
                        to: addr.clone(),
                        content,
                    };
                    match serde_json::to_string(&mail) {
                        Ok(p) => add(Channel::Email, &addr, notice.kind.as_str(), key, p),
                        Err(e) => skipped.push(format!("e-mail to {addr}: {e}")),
                    }
                }
                Err(e) => skipped.push(format!("e-mail to {addr} for notice {}: {e}", notice.id)),
            }
        }

        // Security event tokens.
        if let Some(signer) = &self.signer
            && notice.kind.revokes_access()
        {
            for r in &self.receivers {
                let events: Vec<SetEvent> = if r.events.is_empty() {
                    vec![SetEvent::SessionRevoked, SetEvent::AccountDisabled]
                } else {
                    r.events.clone()
                };
                for event in events {
                    let key = format!("{}/set/{}/{}", notice.id, r.id, event.as_str());
                    let jti = message_id(&key);
                    let claims = match signer.claims(r, event, notice, &jti, now.timestamp()) {
                        Ok(c) => c,
                        Err(why) => {
                            skipped.push(format!("security event token for {}: {why}", r.id));
                            continue;
                        }
                    };
                    match signer.sign(&r.id, &claims) {
                        Ok(token) => add(Channel::Set, &r.id, event.as_str(), key, token),
                        Err(e) => skipped.push(e.to_string()),
                    }
                }
            }
        }
        (out, skipped)
    }

    /// Makes the deliveries of `notices` and adds them to the outbox, due at
    /// `now`. Quick and local (one transaction, no network): callers such as
    /// a leaver's deprovisioning step call it and move on, and a receiver
    /// that is down delays only its own deliveries. Enqueueing a notice
    /// again (same id) adds nothing.
    pub async fn enqueue(
        &self,
        store: &Store,
        notices: &[Notice],
        now: DateTime<Utc>,
    ) -> Result<Enqueued, NotifyError> {
        let mut all = Vec::new();
        let mut skipped = Vec::new();
        for n in notices {
            let (d, s) = self.deliveries(n, now);
            all.extend(d);
            skipped.extend(s);
        }
        for s in &skipped {
            tracing::warn!(problem = %s, "a notification could not be made");
        }
        let added = store.enqueue_deliveries(&all, now).await?;
        Ok(Enqueued { added, skipped })
    }

    fn address(&self, notice: &Notice, recipient: &str) -> Result<String, String> {
        let who = || {
            notice
                .identity
                .as_ref()
                .map(|i| format!("identity {}", i.id))
                .unwrap_or_else(|| "the notice".into())
        };
        match recipient {
            "person" => notice
                .identity
                .as_ref()
                .and_then(|i| i.attributes.get(&self.email_attribute))
                .filter(|a| !a.trim().is_empty())
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{} has no {} for recipient person",
                        who(),
                        self.email_attribute
                    )
                }),
            "manager" => notice
                .identity
                .as_ref()
                .and_then(|i| i.manager_email.clone())
                .filter(|a| !a.trim().is_empty())
                .ok_or_else(|| format!("{} has no manager e-mail address", who())),
            named => self
                .addresses
                .get(named)
                .cloned()
                .ok_or_else(|| format!("no address named {named:?}")),
        }
    }
}
