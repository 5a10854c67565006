//! The notification outbox: messages (webhook POSTs, e-mails, security event
//! tokens) waiting to be delivered, durably.
//!
//! A message is rendered and enqueued once ([`Store::enqueue_deliveries`];
//! the same `dedup_key` twice adds nothing), claimed when due
//! ([`Store::claim_deliveries`]), and then marked done, retried later with
//! exponential backoff, or failed. A claim is a lease: it moves the row's
//! `next_attempt_at` forward by the lease and counts the attempt, so a
//! process that dies while delivering leaves the row to be claimed again when
//! the lease ends. On PostgreSQL claims select rows `FOR UPDATE SKIP LOCKED`,
//! so processes sharing the database never claim the same row at once.
//! Delivery is therefore at least once: receivers deduplicate by the id each
//! message carries.
//!
//! Failed rows stay in the table (`state = 'failed'`) for operators to see
//! and retry; nothing is ever deleted here. This module does not render,
//! sign or send anything (the `tenure-notify` crate does) and reads no
//! clock: callers pass `now`.

use crate::StoreError;
use crate::queue::RetryPolicy;
use crate::sql::{duration_micros, from_micros, micros, to_i64, values_chunks};
use crate::store::{Dialect, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use std::fmt;
use std::time::Duration;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A signed JSON POST.
    Webhook,
    /// An e-mail over SMTP.
    Email,
    /// A security event token pushed to its receiver (RFC 8935).
    Set,
}

impl Channel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Set => "set",
        }
    }

    fn parse(s: &str) -> Option<Channel> {
        match s {
            "webhook" => Some(Channel::Webhook),
            "email" => Some(Channel::Email),
            "set" => Some(Channel::Set),
            _ => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    /// The receiver accepted it.
    Done,
    /// Given up: refused by the receiver, or out of attempts.
    Failed,
}

impl DeliveryState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Done => "done",
            DeliveryState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "done" => Some(DeliveryState::Done),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// Unique per message: enqueueing a key that is already there adds nothing.
    pub dedup_key: String,
    /// How it travels.
    pub channel: Channel,
    /// The webhook id, SET receiver id, or e-mail address.
    pub target: String,
    /// What it is about (`leaver`, `session-revoked`, …).
    pub event: String,
    /// The identity or system it is about, for operators.
    pub subject: Option<String>,
    /// The rendered message.
    pub payload: String,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Row id.
    pub id: i64,
    /// The message's unique key.
    pub dedup_key: String,
    /// How it travels.
    pub channel: Channel,
    /// The webhook id, SET receiver id, or e-mail address.
    pub target: String,
    /// What it is about.
    pub event: String,
    /// The identity or system it is about.
    pub subject: Option<String>,
    /// The rendered message.
    pub payload: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far (a claim counts as one).
    pub attempts: u32,
    /// When it may next be attempted (while pending).
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When the receiver accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// How many deliveries are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCounts {
    /// Waiting.
    pub pending: u64,
    /// Delivered.
    pub done: u64,
    /// Given up.
    pub failed: u64,
}

const COLUMNS: &str = "id, dedup_key, channel, target, event, subject, payload, state, attempts, \
                       next_attempt_at, last_error, created_at, delivered_at";

impl Store {
    /// Adds messages to the outbox, due at `now`; a message whose `dedup_key`
    /// is already there (in any state) is left out. Returns how many were added.
    pub async fn enqueue_deliveries(
        &self,
        items: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        let what = format!("enqueueing {} notification deliveries", items.len());
        let now_us = micros(now);
        let mut tx = self.begin_write(&what).await?;
        let added = values_chunks(
            &mut tx,
            self.dialect,
            "INSERT INTO deliveries (dedup_key, channel, target, event, subject, payload, \
             state, attempts, next_attempt_at, created_at)",
            10,
            " ON CONFLICT (dedup_key) DO NOTHING",
            items,
            |q, d| {
                q.bind(d.dedup_key.clone())
                    .bind(d.channel.as_str())
                    .bind(d.target.clone())
                    .bind(d.event.clone())
                    .bind(d.subject.clone())
                    .bind(d.payload.clone())
                    .bind("pending")
                    .bind(0i64)
                    .bind(now_us)
                    .bind(now_us)
            },
        )
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await?;
        Ok(added)
    }

    /// Claims up to `limit` pending deliveries due at `now` (oldest due
    /// first): each claim counts an attempt and moves `next_attempt_at` to
    /// `now + lease`, so a claimer that dies leaves the row to be claimed
    /// again after the lease. Concurrent claimers never get the same row.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let what = "claiming notification deliveries";
        let now_us = micros(now);
        let until = now_us.saturating_add(duration_micros(lease));
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE id IN (SELECT id FROM deliveries \
               WHERE state = 'pending' AND next_attempt_at <= $2 \
               ORDER BY next_attempt_at, id LIMIT $3{lock}) \
             RETURNING {COLUMNS}"
        );
        let mut tx = self.begin_write(what).await?;
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(until)
            .bind(now_us)
            .bind(to_i64(limit as u64))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db_err(what, e))?;
        self.commit(tx, what).await?;
        let mut out = rows
            .iter()
            .map(|r| self.delivery_row(r))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    /// The receiver accepted delivery `id`.
    pub async fn delivery_done(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let what = format!("marking notification delivery {id} done");
        let mut tx = self.begin_write(&what).await?;
        sqlx::query(
            "UPDATE deliveries SET state = 'done', delivered_at = $1, last_error = NULL \
             WHERE id = $2 AND state = 'pending'",
        )
        .bind(micros(now))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await
    }

    /// An attempt of a claimed delivery failed in a way worth retrying: it is
    /// due again after the policy's backoff, or failed once it has had
    /// `max_attempts` attempts. Returns the state it is left in.
    pub async fn delivery_retry(
        &self,
        delivery: &Delivery,
        now: DateTime<Utc>,
        error: &str,
        policy: RetryPolicy,
    ) -> Result<DeliveryState, StoreError> {
        if delivery.attempts >= policy.max_attempts {
            self.set_failed(delivery.id, error).await?;
            return Ok(DeliveryState::Failed);
        }
        let next = micros(now).saturating_add(duration_micros(policy.backoff(delivery.attempts)));
        let what = format!("rescheduling notification delivery {}", delivery.id);
        let mut tx = self.begin_write(&what).await?;
        sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $1, last_error = $2 \
             WHERE id = $3 AND state = 'pending'",
        )
        .bind(next)
        .bind(error)
        .bind(delivery.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await?;
        Ok(DeliveryState::Pending)
    }

    /// The receiver refused delivery `id` for good: it is failed at once.
    pub async fn delivery_refused(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.set_failed(id, error).await
    }

    /// A claimed delivery that was not attempted (its receiver had just
    /// failed another one): its claim is given back without counting an
    /// attempt, and it is due again at `at`.
    pub async fn delivery_postpone(
        &self,
        delivery: &Delivery,
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<(), StoreError> {
        let what = format!("postponing notification delivery {}", delivery.id);
        let mut tx = self.begin_write(&what).await?;
        sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $1, last_error = $2, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE id = $3 AND state = 'pending'",
        )
        .bind(micros(at))
        .bind(why)
        .bind(delivery.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await
    }

    async fn set_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let what = format!("marking notification delivery {id} failed");
        let mut tx = self.begin_write(&what).await?;
        sqlx::query(
            "UPDATE deliveries SET state = 'failed', last_error = $1 \
             WHERE id = $2 AND state = 'pending'",
        )
        .bind(error)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await
    }

    /// Puts every failed delivery back in the outbox, due at `now`, with its
    /// attempts counted afresh (an operator's retry). Returns how many.
    pub async fn retry_failed_deliveries(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let what = "retrying failed notification deliveries";
        let mut tx = self.begin_write(what).await?;
        let n = sqlx::query(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1 \
             WHERE state = 'failed'",
        )
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(what, e))?
        .rows_affected();
        self.commit(tx, what).await?;
        Ok(n)
    }

    /// Deliveries in `state` (or all), oldest first, at most `limit`.
    pub async fn deliveries(
        &self,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let what = "reading notification deliveries";
        let limit = to_i64(limit as u64);
        let rows = match state {
            Some(s) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM deliveries WHERE state = $1 ORDER BY id LIMIT $2"
                )))
                .bind(s.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM deliveries ORDER BY id LIMIT $1"
                )))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(|e| self.db_err(what, e))?;
        rows.iter().map(|r| self.delivery_row(r)).collect()
    }

    /// How many deliveries are pending, done and failed.
    pub async fn delivery_counts(&self) -> Result<DeliveryCounts, StoreError> {
        let what = "counting notification deliveries";
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err(what, e))?;
        let mut c = DeliveryCounts::default();
        for (state, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match DeliveryState::parse(&state) {
                Some(DeliveryState::Pending) => c.pending = n,
                Some(DeliveryState::Done) => c.done = n,
                Some(DeliveryState::Failed) => c.failed = n,
                None => {
                    return Err(self.bad_value(
                        "deliveries",
                        "state",
                        state.as_str(),
                        "unknown state",
                    ));
                }
            }
        }
        Ok(c)
    }

    fn delivery_row(&self, r: &AnyRow) -> Result<Delivery, StoreError> {
        const T: &str = "deliveries";
        let id: i64 = self.col(r, T, "id", "?")?;
        let channel: String = self.col(r, T, "channel", id)?;
        let state: String = self.col(r, T, "state", id)?;
        let time = |column: &'static str, v: i64| {
            from_micros(v).ok_or_else(|| self.bad_value(T, column, id, "timestamp out of range"))
        };
        let attempts: i64 = self.col(r, T, "attempts", id)?;
        let delivered_at: Option<i64> = self.col(r, T, "delivered_at", id)?;
        Ok(Delivery {
            id,
            dedup_key: self.col(r, T, "dedup_key", id)?,
            channel: Channel::parse(&channel)
                .ok_or_else(|| self.bad_value(T, "channel", id, "unknown channel"))?,
            target: self.col(r, T, "target", id)?,
            event: self.col(r, T, "event", id)?,
            subject: self.col(r, T, "subject", id)?,
            payload: self.col(r, T, "payload", id)?,
            state: DeliveryState::parse(&state)
                .ok_or_else(|| self.bad_value(T, "state", id, "unknown state"))?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            next_attempt_at: time("next_attempt_at", self.col(r, T, "next_attempt_at", id)?)?,
            last_error: self.col(r, T, "last_error", id)?,
            created_at: time("created_at", self.col(r, T, "created_at", id)?)?,
            delivered_at: delivered_at.map(|v| time("delivered_at", v)).transpose()?,
        })
    }
}
