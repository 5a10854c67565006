//! Delivering what is due: [`deliver_due`], called by the service on every
//! scheduler tick.
//!
//! Due deliveries are claimed from the outbox and grouped by receiver (a
//! webhook, a SET receiver, an e-mail address). Receivers are served all at
//! once; each receiver's messages go one after another, oldest first. When
//! one of them fails in a way worth retrying (no connection, a timeout, a
//! 5xx), the receiver's other claimed messages are not attempted in this
//! tick: they are put back, due when the failed one is retried, without
//! counting an attempt. So a receiver that is down costs one timeout per
//! tick, delays only its own messages, and never holds up anyone else's.

use crate::email::{Mailer, StoredEmail};
use crate::notifier::message_id;
use crate::webhook::{self, Outcome};
use crate::{NotifyError, secret};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tenure_core::config::Config;
use tenure_store::{Channel, Delivery, DeliveryState, RetryPolicy, Store};

/// How long a claim holds a delivery: a process that dies while sending
/// leaves it to be claimed again after this.
pub const CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);

/// What one [`deliver_due`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Accepted by their receivers.
    pub delivered: u64,
    /// Failed this time, due again later.
    pub retried: u64,
    /// Failed for good (refused, or out of attempts): visible in the outbox.
    pub failed: u64,
    /// Not attempted because their receiver had just failed: due again later.
    pub postponed: u64,
}

struct Webhook {
    url: String,
    secret: secret::Secret,
    timeout: Duration,
}

struct Receiver {
    url: String,
    token: Option<secret::Secret>,
    timeout: Duration,
}

/// Sends deliveries: holds the HTTP client, the SMTP transport, and the
/// webhook and SET receiver secrets. Built once from the configuration.
pub struct Dispatcher {
    http: reqwest::Client,
    mailer: Option<Mailer>,
    webhooks: BTreeMap<String, Webhook>,
    receivers: BTreeMap<String, Receiver>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("webhooks", &self.webhooks.keys().collect::<Vec<_>>())
            .field("receivers", &self.receivers.keys().collect::<Vec<_>>())
            .field("email", &self.mailer.is_some())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Reads every secret the configuration references (webhook secrets,
    /// SET bearer tokens, the SMTP password) and sets up the clients.
    pub fn new(config: &Config, config_dir: &Path) -> Result<Dispatcher, NotifyError> {
        let n = config
            .notifications
            .as_ref()
            .map(|n| n.item.clone())
            .unwrap_or_default();
        let mut webhooks = BTreeMap::new();
        for w in &config.webhooks {
            let w = &w.item;
            webhooks.insert(
                w.id.clone(),
                Webhook {
                    url: w.url.get_ref().clone(),
                    secret: secret::read(
                        &format!("webhook {}: secret", w.id),
                        &w.secret,
                        config_dir,
                        true,
                    )?,
                    timeout: Duration::from_secs(w.timeout_seconds),
                },
            );
        }
        let mut receivers = BTreeMap::new();
        for r in config
            .security_events
            .iter()
            .flat_map(|s| s.item.receivers.iter())
        {
            let token = r
                .token
                .as_ref()
                .map(|t| {
                    secret::read(
                        &format!("[[security_events.receiver]] {}: token", r.id),
                        t,
                        config_dir,
                        true,
                    )
                })
                .transpose()?;
            receivers.insert(
                r.id.clone(),
                Receiver {
                    url: r.url.get_ref().clone(),
                    token,
                    timeout: Duration::from_secs(r.timeout_seconds),
                },
            );
        }
        let mailer = config
            .smtp
            .as_ref()
            .map(|s| Mailer::new(&s.item, config_dir))
            .transpose()?;
        Ok(Dispatcher {
            http: webhook::client().map_err(NotifyError::Config)?,
            mailer,
            webhooks,
            receivers,
            retry: RetryPolicy {
                base: Duration::from_secs(n.retry_seconds),
                max_attempts: n.max_attempts,
            },
        })
    }

    /// The retry policy: backoff base and attempts before failing.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    async fn attempt(&self, d: &Delivery, now: DateTime<Utc>) -> Outcome {
        let id = message_id(&d.dedup_key);
        match d.channel {
            Channel::Webhook => match self.webhooks.get(&d.target) {
                Some(w) => {
                    webhook::post_webhook(
                        &self.http,
                        &w.url,
                        w.secret.expose().as_bytes(),
                        &id,
                        &d.payload,
                        now.timestamp(),
                        w.timeout,
                    )
                    .await
                }
                None => Outcome::Refused(format!(
                    "webhook {} is no longer in the configuration",
                    d.target
                )),
            },
            Channel::Set => match self.receivers.get(&d.target) {
                Some(r) => {
                    webhook::push_set(
                        &self.http,
                        &r.url,
                        r.token.as_ref().map(secret::Secret::expose),
                        &d.payload,
                        r.timeout,
                    )
                    .await
                }
                None => Outcome::Refused(format!(
                    "security event receiver {} is no longer in the configuration",
                    d.target
                )),
            },
            Channel::Email => {
                let Some(m) = &self.mailer else {
                    return Outcome::Refused("no [smtp] server is configured any more".into());
                };
                match serde_json::from_str::<StoredEmail>(&d.payload) {
                    Ok(mail) => m.send(&mail, &id).await,
                    Err(e) => Outcome::Refused(format!("the stored e-mail is unreadable: {e}")),
                }
            }
        }
    }

    /// One receiver's claimed deliveries, in order.
    async fn serve(
        &self,
        store: &Store,
        now: DateTime<Utc>,
        batch: Vec<Delivery>,
    ) -> Result<DeliveryStats, NotifyError> {
        let mut stats = DeliveryStats::default();
        let mut rest = batch.into_iter();
        while let Some(d) = rest.next() {
            match self.attempt(&d, now).await {
                Outcome::Delivered => {
                    store.delivery_done(d.id, now).await?;
                    stats.delivered += 1;
                }
                Outcome::Refused(why) => {
                    tracing::warn!(
                        channel = %d.channel, target = %d.target, delivery = d.id,
                        error = %why, "notification refused by its receiver: failed"
                    );
                    store.delivery_refused(d.id, &why).await?;
                    stats.failed += 1;
                }
                Outcome::Retry(why) => {
                    let state = store.delivery_retry(&d, now, &why, self.retry).await?;
                    if state == DeliveryState::Failed {
                        tracing::warn!(
                            channel = %d.channel, target = %d.target, delivery = d.id,
                            attempts = d.attempts, error = %why,
                            "notification failed after its last attempt"
                        );
                        stats.failed += 1;
                    } else {
                        tracing::info!(
                            channel = %d.channel, target = %d.target, delivery = d.id,
                            attempts = d.attempts, error = %why, "notification will be retried"
                        );
                        stats.retried += 1;
                    }
                    // The receiver is failing: leave its other messages for later.
                    let at = now
                        + chrono::Duration::from_std(self.retry.backoff(d.attempts.max(1)))
                            .unwrap_or(chrono::Duration::hours(1));
                    let note = format!("not attempted: {} failed just before: {why}", d.target);
                    for other in rest.by_ref() {
                        store.delivery_postpone(&other, at, &note).await?;
                        stats.postponed += 1;
                    }
                }
            }
        }
        Ok(stats)
    }
}

/// Delivers up to `limit` due deliveries at `now`, every receiver at once
/// (see the module documentation), and returns what became of them. The
/// service scheduler calls it on every tick; several processes may call it
/// against one PostgreSQL store at once.
pub async fn deliver_due(
    store: &Store,
    now: DateTime<Utc>,
    dispatcher: &Dispatcher,
    limit: usize,
) -> Result<DeliveryStats, NotifyError> {
    let claimed = store.claim_deliveries(now, CLAIM_LEASE, limit).await?;
    let mut groups: BTreeMap<(&'static str, String), Vec<Delivery>> = BTreeMap::new();
    for d in claimed {
        groups
            .entry((d.channel.as_str(), d.target.clone()))
            .or_default()
            .push(d);
    }
    let results = futures::future::join_all(
        groups
            .into_values()
            .map(|batch| dispatcher.serve(store, now, batch)),
    )
    .await;
    let mut total = DeliveryStats::default();
    for r in results {
        let s = r?;
        total.delivered += s.delivered;
        total.retried += s.retried;
        total.failed += s.failed;
        total.postponed += s.postponed;
    }
    Ok(total)
}
