//! Notifications: signed webhooks, e-mail over SMTP, and Security Event
//! Tokens (RFC 8417) pushed to relying parties (RFC 8935), all through a
//! durable outbox in the store.
//!
//! # How the service uses it
//!
//! ```text
//! start:   let notifier   = Notifier::new(&config, config_dir)?;    // templates, SET key
//!          let dispatcher = Dispatcher::new(&config, config_dir)?;  // secrets, HTTP, SMTP
//!          serve notifier.jwks() at /.well-known/jwks.json
//! check:   check_templates(&config, config_dir)?                  // `tenure check`: no secrets read
//! events:  notifier.enqueue(&store, &[notice], now).await?          // leaver, suspend, failure…
//! tick:    deliver_due(&store, now, &dispatcher, 100).await?        // send what is due
//! ```
//!
//! 1. Something happens (a joiner, a leaver, a suspension, a failure, a
//!    quarantine…): the caller describes it as a [`Notice`] and calls
//!    [`Notifier::enqueue`]. That renders every message the configuration
//!    asks for — a JSON message per subscribed `[[webhook]]`, an e-mail per
//!    recipient address from the templates, and for leavers and suspensions
//!    a signed security event token per SET receiver and event — and stores
//!    them in the outbox in one transaction. No network is touched, so
//!    enqueueing never waits for a receiver and never blocks a
//!    deprovisioning step. A notice's `id` makes it idempotent: enqueueing it
//!    again adds nothing.
//! 2. On every scheduler tick the service calls [`deliver_due`], which claims
//!    the due deliveries, sends them (every receiver at once), and marks each
//!    done, retried later with exponential backoff, or failed. Failed
//!    deliveries stay in the outbox ([`tenure_store::Store::deliveries`]) for
//!    operators, and [`tenure_store::Store::retry_failed_deliveries`] puts
//!    them back.
//!
//! # Invariants
//!
//! - Nothing is delivered that was not stored first; a crash at any point
//!   loses nothing (a claim is a lease: a message being sent by a process
//!   that died is sent again later). Delivery is at least once; every message
//!   carries an id that stays the same on every retry (the webhook
//!   `Tenure-Delivery` header, the SET `jti`) for receivers to deduplicate.
//! - A receiver that is down delays only its own messages.
//! - This crate reads no clock: callers pass `now` (the signature timestamp
//!   and the SET `iat` come from it too).
//! - Secrets (webhook HMAC keys, SET bearer tokens, the SMTP password, the
//!   signing key) are read from their references, never logged, never in an
//!   error; stored messages hold no secret (tokens are signed, not keyed).
//!
//! What it does not do: decide when something happens (the engine and the
//! service do), evaluate policy, or run a scheduler of its own.

mod deliver;
mod email;
mod error;
mod notice;
mod notifier;
mod secret;
pub mod set;
mod templates;
pub mod webhook;

pub use deliver::{CLAIM_LEASE, DeliveryStats, Dispatcher, deliver_due};
pub use error::NotifyError;
pub use notice::{Notice, NoticeIdentity};
pub use notifier::{Enqueued, Notifier, check_templates, message_id};
pub use templates::{RenderedEmail, Templates};
pub use tenure_core::config::NoticeKind;
