//! Plans and the durable operation queue.
//!
//! [`Store::enqueue_plan`] stores a plan and one queue row per operation;
//! workers [`claim`](Store::claim) runnable rows under a lease and
//! [`complete`](Store::complete) them, which records the outcome and its
//! audit record in one transaction. Within a plan, an operation waits for the
//! previous operation on the same (system, account): a row whose dependency is
//! not done yet is stored in the internal state `blocked` (reported as
//! [`OpState::Queued`]) and becomes `queued` in the transaction that marks its
//! dependency done, so claiming never has to look past waiting rows.
//!
//! This module does not run operations, talk to connectors or decide retry
//! policy: the caller passes the [`RetryPolicy`] and the clock (`now`).

use crate::StoreError;
use crate::header::fields_without;
use crate::sql::{duration_micros, from_micros, micros, placeholder_list, to_u64, values_chunks};
use crate::store::{Dialect, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;
use tenure_core::audit::AuditEvent;
use tenure_core::{IdentityId, Operation, Plan};

/// The longest wait between two attempts of a failed operation.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How many ids one `IN (…)` list holds.
const ID_CHUNK: usize = 1000;

/// A stored plan's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanId(pub i64);

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a queued operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Waiting: for its time (`not_before`), for a worker, or for the
    /// operation it depends on to be done.
    Queued,
    /// Claimed by a worker whose lease has not been given up.
    Running,
    /// Applied.
    Done,
    /// Failed `max_attempts` times; waits for an operator's retry.
    Failed,
}

impl OpState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Queued => "queued",
            OpState::Running => "running",
            OpState::Done => "done",
            OpState::Failed => "failed",
        }
    }

    /// Reads a stored state (`blocked` is queued, waiting for its dependency).
    fn from_db(s: &str) -> Option<OpState> {
        match s {
            "queued" | "blocked" => Some(OpState::Queued),
            "running" => Some(OpState::Running),
            "done" => Some(OpState::Done),
            "failed" => Some(OpState::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for OpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operation of a stored plan, with its place in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedOperation {
    /// The queue row's id (what [`Store::complete`] takes).
    pub id: i64,
    /// The plan it belongs to.
    pub plan: PlanId,
    /// Its index in the plan's operations (from 0).
    pub seq: u32,
    /// What to do.
    pub operation: Operation,
    /// Where it is.
    pub state: OpState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// [`Operation::key`]: the same change on the same account has the same key.
    pub idempotency_key: String,
    /// Not to be claimed before this (the UNIX epoch when first queued).
    pub not_before: DateTime<Utc>,
    /// When it was done.
    pub done_at: Option<DateTime<Utc>>,
}

/// How many operations are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// Waiting (including those waiting for an operation they depend on).
    pub queued: u64,
    /// Claimed.
    pub running: u64,
    /// Applied.
    pub done: u64,
    /// Given up on.
    pub failed: u64,
}

/// When to retry a failed operation and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles after each further one,
    /// up to [`MAX_BACKOFF`].
    pub base: Duration,
    /// After this many failed attempts the operation is `failed`.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 30 seconds, doubling; five attempts.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(30),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` failed ones
    /// (`attempts` ≥ 1): `min(base × 2^(attempts-1), MAX_BACKOFF)`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
    }
}

/// One operation, encoded for its queue row.
struct OpRow<'a> {
    seq: i64,
    system: &'a str,
    account: &'a str,
    identity: Option<&'a str>,
    action: &'static str,
    body: String,
    key: String,
    depends_on: Option<i64>,
    next_seq: Option<i64>,
}

const OP_COLUMNS: &str = "id, plan_id, seq, body, state, attempts, last_error, idempotency_key, \
                          not_before, done_at, priority";

/// An operation whose outcome is being recorded.
struct Finished {
    id: i64,
    plan: i64,
    seq: i64,
    system: String,
    account: String,
    body: String,
    key: String,
    next_seq: Option<i64>,
}

impl Store {
    /// Persists the plan, one queue row per operation (state queued) and the
    /// audit events, atomically, and returns the plan's id.
    ///
    /// Each row depends on the previous operation of the same plan on the
    /// same (system, account), so a create runs before that account's
    /// memberships. The idempotency key is [`Operation::key`]. Rows may be
    /// claimed at once (their `not_before` is the UNIX epoch); `priority`
    /// orders claims across plans (higher first).
    pub async fn enqueue_plan(
        &self,
        plan: &Plan,
        priority: i32,
        audit: Vec<AuditEvent>,
    ) -> Result<PlanId, StoreError> {
        if u32::try_from(plan.operations.len()).is_err() {
            return Err(self.invalid(format!(
                "a plan of {} operations is more than a queue can hold",
                plan.operations.len()
            )));
        }
        // The plan without its operations: they are stored once, as queue rows.
        let header = fields_without(plan, "operations")
            .and_then(|fields| serde_json::to_string(&fields))
            .map_err(|e| self.encode_err("the plan", e))?;
        // Each operation as JSON, with its idempotency key: the costly part,
        // spread over the CPUs for big plans, and done before any lock is taken.
        let encoded = crate::sql::par_map(&plan.operations, |op| {
            serde_json::to_string(op).map(|body| (body, op.key()))
        })
        .map_err(|e| match e {
            crate::sql::ParError::Failed(i, e) => {
                self.encode_err(format!("operation {i} of the plan"), e)
            }
            crate::sql::ParError::Panicked => {
                self.invalid("encoding the plan's operations failed (a worker thread panicked)")
            }
        })?;
        // The previous operation on each (system, account): the one to wait for.
        let mut last: HashMap<(&str, &str), usize> = HashMap::new();
        let mut rows: Vec<OpRow<'_>> = Vec::with_capacity(plan.operations.len());
        for (i, (op, (body, key))) in plan.operations.iter().zip(encoded).enumerate() {
            let seq = i64::try_from(i).unwrap_or(i64::MAX);
            let previous = last.insert((op.system.as_str(), op.account.as_str()), i);
            if let Some(row) = previous.and_then(|p| rows.get_mut(p)) {
                row.next_seq = Some(seq);
            }
            let depends_on = previous.and_then(|p| i64::try_from(p).ok());
            rows.push(OpRow {
                seq,
                system: op.system.as_str(),
                account: op.account.as_str(),
                identity: op.identity.as_ref().map(IdentityId::as_str),
                action: op.action.name(),
                body,
                key,
                depends_on,
                next_seq: None,
            });
        }

        let what = format!("enqueueing a plan of {} operations", rows.len());
        let mut tx = self.begin_write(&what).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO plans (format, fingerprint, made_at, today, priority, operation_count, header) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(i64::from(plan.format))
        .bind(plan.fingerprint.as_str())
        .bind(micros(plan.made_at))
        .bind(crate::sql::date_text(plan.today))
        .bind(i64::from(priority))
        .bind(i64::try_from(rows.len()).unwrap_or(i64::MAX))
        .bind(header)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        let priority = i64::from(priority);
        values_chunks(
            &mut tx,
            self.dialect,
            "INSERT INTO operations (plan_id, seq, system, account, identity, action, body, \
             idempotency_key, priority, depends_on, next_seq, state, not_before)",
            13,
            "",
            &rows,
            |q, r| {
                q.bind(id)
                    .bind(r.seq)
                    .bind(r.system)
                    .bind(r.account)
                    .bind(r.identity)
                    .bind(r.action)
                    .bind(r.body.as_str())
                    .bind(r.key.as_str())
                    .bind(priority)
                    .bind(r.depends_on)
                    .bind(r.next_seq)
                    .bind(if r.depends_on.is_some() {
                        "blocked"
                    } else {
                        "queued"
                    })
                    .bind(0i64)
            },
        )
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await?;
        Ok(PlanId(id))
    }

    /// Claims up to `limit` runnable operations for `worker`, with a lease
    /// until `now + lease`, ordered by priority (highest first), then id.
    ///
    /// Runnable: queued with `not_before <= now` and the operation it depends
    /// on done (or none); or running with an expired lease (its worker died):
    /// such rows are first put back in the queue, then claimed like any
    /// other. On PostgreSQL rows are selected `FOR UPDATE … SKIP LOCKED`, so
    /// concurrent claimers (in any process) never get the same operation.
    pub async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<QueuedOperation>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_us = micros(now);
        let until = now_us.saturating_add(duration_micros(lease));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let what = format!("claiming operations for worker {worker:?}");
        let (reclaim, claim) = match self.dialect {
            Dialect::Sqlite => (
                "UPDATE operations SET state = 'queued', worker = NULL, lease_until = NULL \
                 WHERE state = 'running' AND lease_until <= $1",
                "UPDATE operations SET state = 'running', worker = $1, lease_until = $2 \
                 WHERE id IN (SELECT o.id FROM operations o \
                   WHERE o.state = 'queued' AND o.not_before <= $3 \
                   ORDER BY o.priority DESC, o.id LIMIT $4) \
                 RETURNING ",
            ),
            Dialect::Postgres => (
                "UPDATE operations SET state = 'queued', worker = NULL, lease_until = NULL \
                 WHERE id IN (SELECT o.id FROM operations o \
                   WHERE o.state = 'running' AND o.lease_until <= $1 \
                   FOR UPDATE OF o SKIP LOCKED)",
                "UPDATE operations SET state = 'running', worker = $1, lease_until = $2 \
                 WHERE id IN (SELECT o.id FROM operations o \
                   WHERE o.state = 'queued' AND o.not_before <= $3 \
                   ORDER BY o.priority DESC, o.id LIMIT $4 \
                   FOR UPDATE OF o SKIP LOCKED) \
                 RETURNING ",
            ),
        };
        let mut tx = self.begin_write(&what).await?;
        let reclaimed = sqlx::query(reclaim)
            .bind(now_us)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?
            .rows_affected();
        if reclaimed > 0 {
            tracing::warn!(
                store = %self.location,
                reclaimed,
                "operations whose lease expired are queued again"
            );
        }
        let rows = sqlx::query(AssertSqlSafe(format!("{claim}{OP_COLUMNS}")))
            .bind(worker)
            .bind(until)
            .bind(now_us)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await?;
        let mut ops = rows
            .iter()
            .map(|r| self.decode_op(r))
            .collect::<Result<Vec<_>, _>>()?;
        ops.sort_by(|(a, pa), (b, pb)| pb.cmp(pa).then(a.id.cmp(&b.id)));
        Ok(ops.into_iter().map(|(op, _)| op).collect())
    }

    /// Records outcomes in one transaction, only for rows still claimed by
    /// `worker` (a row whose lease expired and was claimed again, or that is
    /// no longer running, is left alone).
    ///
    /// `done`: state done, `done_at = now`, the operations that depend on it
    /// become runnable, and one audit record `operation.done` each (actor
    /// `tenure`, subject `system:S/account:A`, detail: the operation, plan id,
    /// seq and idempotency key).
    ///
    /// `failed`: attempts + 1 and `last_error`; queued again with
    /// `not_before = now + retry.backoff(attempts)`, or `failed` once attempts
    /// reaches `retry.max_attempts`; one audit record `operation.failed` each.
    pub async fn complete(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        done: &[i64],
        failed: &[(i64, String)],
        retry: RetryPolicy,
    ) -> Result<(), StoreError> {
        if done.is_empty() && failed.is_empty() {
            return Ok(());
        }
        let now_us = micros(now);
        let what = format!(
            "recording {} done and {} failed operations for worker {worker:?}",
            done.len(),
            failed.len()
        );
        let mut tx = self.begin_write(&what).await?;
        let mut audit = Vec::new();

        // Done.
        let done_ids: Vec<i64> = done
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut finished = Vec::new();
        for chunk in done_ids.chunks(ID_CHUNK) {
            let sql = format!(
                "UPDATE operations SET state = 'done', done_at = $1, worker = NULL, lease_until = NULL \
                 WHERE state = 'running' AND worker = $2 AND id IN ({}) \
                 RETURNING id, plan_id, seq, system, account, body, idempotency_key, next_seq",
                placeholder_list(3, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_us).bind(worker);
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.db_err(&what, e))?;
            for r in &rows {
                finished.push(self.decode_finished(r)?);
            }
        }
        finished.sort_by_key(|f| f.id);
        // Their dependents may run now.
        let next: Vec<(i64, i64)> = finished
            .iter()
            .filter_map(|f| f.next_seq.map(|n| (f.plan, n)))
            .collect();
        if !next.is_empty() {
            values_chunks(
                &mut tx,
                self.dialect,
                "UPDATE operations SET state = 'queued' \
                 WHERE state = 'blocked' AND (plan_id, seq) IN (",
                2,
                ")",
                &next,
                |q, (p, s)| q.bind(*p).bind(*s),
            )
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        for f in &finished {
            let op = self.parse_op(f.id, &f.body)?;
            let reason = if op.reasons.is_empty() {
                format!("{} applied", op.action.name())
            } else {
                op.reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            audit.push(AuditEvent {
                at: now,
                actor: "tenure".into(),
                action: "operation.done".into(),
                subject: format!("system:{}/account:{}", f.system, f.account),
                reason,
                detail: serde_json::json!({
                    "operation": op,
                    "plan": f.plan,
                    "seq": f.seq,
                    "idempotency_key": f.key,
                })
                .to_string(),
            });
        }

        // Failed.
        let mut failures: BTreeMap<i64, &str> = BTreeMap::new();
        for (id, message) in failed {
            failures.insert(*id, message);
        }
        let select = match self.dialect {
            Dialect::Sqlite => {
                "SELECT id, plan_id, seq, system, account, body, idempotency_key, next_seq, \
                 attempts FROM operations WHERE id = $1 AND state = 'running' AND worker = $2"
            }
            Dialect::Postgres => {
                "SELECT id, plan_id, seq, system, account, body, idempotency_key, next_seq, \
                 attempts FROM operations WHERE id = $1 AND state = 'running' AND worker = $2 \
                 FOR UPDATE"
            }
        };
        for (id, message) in failures {
            let Some(row) = sqlx::query(select)
                .bind(id)
                .bind(worker)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.db_err(&what, e))?
            else {
                continue;
            };
            let f = self.decode_finished(&row)?;
            let before: i64 = self.col(&row, "operations", "attempts", id)?;
            let attempts = u32::try_from(before).unwrap_or(u32::MAX).saturating_add(1);
            let give_up = attempts >= retry.max_attempts;
            let (state, not_before) = if give_up {
                ("failed", now_us)
            } else {
                let wait = duration_micros(retry.backoff(attempts));
                ("queued", now_us.saturating_add(wait))
            };
            sqlx::query(
                "UPDATE operations SET state = $1, attempts = $2, last_error = $3, not_before = $4, \
                 worker = NULL, lease_until = NULL \
                 WHERE id = $5 AND state = 'running' AND worker = $6",
            )
            .bind(state)
            .bind(i64::from(attempts))
            .bind(message)
            .bind(not_before)
            .bind(id)
            .bind(worker)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
            let op = self.parse_op(f.id, &f.body)?;
            audit.push(AuditEvent {
                at: now,
                actor: "tenure".into(),
                action: "operation.failed".into(),
                subject: format!("system:{}/account:{}", f.system, f.account),
                reason: message.to_owned(),
                detail: serde_json::json!({
                    "operation": op,
                    "plan": f.plan,
                    "seq": f.seq,
                    "idempotency_key": f.key,
                    "attempts": attempts,
                    "final": give_up,
                    "retry_at": (!give_up).then(|| from_micros(not_before)).flatten(),
                })
                .to_string(),
            });
        }

        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await
    }

    /// The queued operations of one plan, or of every plan, ordered by id
    /// (for reports and status).
    pub async fn operations(
        &self,
        plan: Option<PlanId>,
    ) -> Result<Vec<QueuedOperation>, StoreError> {
        let rows = match plan {
            Some(p) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {OP_COLUMNS} FROM operations WHERE plan_id = $1 ORDER BY id"
                )))
                .bind(p.0)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {OP_COLUMNS} FROM operations ORDER BY id"
                )))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(|e| self.db_err("listing queued operations", e))?;
        rows.iter()
            .map(|r| self.decode_op(r).map(|(op, _)| op))
            .collect()
    }

    /// How many operations are in each state.
    pub async fn queue_counts(&self) -> Result<QueueCounts, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM operations GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err("counting queued operations", e))?;
        let mut counts = QueueCounts::default();
        for row in &rows {
            let state: String = self.col(row, "operations", "state", "(count)")?;
            let n: i64 = self.col(row, "operations", "n", &state)?;
            let n = to_u64(n);
            match OpState::from_db(&state) {
                Some(OpState::Queued) => counts.queued += n,
                Some(OpState::Running) => counts.running += n,
                Some(OpState::Done) => counts.done += n,
                Some(OpState::Failed) => counts.failed += n,
                None => {
                    return Err(self.bad_value(
                        "operations",
                        "state",
                        "(count)",
                        format!("unknown state {state:?}"),
                    ));
                }
            }
        }
        Ok(counts)
    }

    /// Puts every failed operation back in the queue, runnable from `now`,
    /// with its attempts reset (its last error is kept). Returns how many.
    pub async fn retry_failed(
        &self,
        now: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<u64, StoreError> {
        let what = "retrying failed operations";
        let mut tx = self.begin_write(what).await?;
        let n = sqlx::query(
            "UPDATE operations SET state = 'queued', attempts = 0, not_before = $1 \
             WHERE state = 'failed'",
        )
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(what, e))?
        .rows_affected();
        if n > 0 {
            self.append_audit_tx(&mut tx, audit).await?;
        }
        self.commit(tx, what).await?;
        Ok(n)
    }

    /// The idempotency keys of every operation not done yet (queued, waiting
    /// for another, running, or failed): a new plan leaves these out, so the
    /// same change is never queued twice.
    pub async fn pending_keys(&self) -> Result<BTreeSet<String>, StoreError> {
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT idempotency_key FROM operations WHERE state <> 'done'")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err("reading the keys of pending operations", e))?;
        Ok(keys.into_iter().collect())
    }

    /// A stored plan, with its operations in order.
    pub async fn plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError> {
        let what = format!("reading plan {id}");
        let Some(row) = sqlx::query("SELECT header FROM plans WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(&what, e))?
        else {
            return Ok(None);
        };
        let mut header: serde_json::Map<String, serde_json::Value> =
            self.json_col(&row, "plans", "header", id)?;
        header.insert("operations".into(), serde_json::Value::Array(Vec::new()));
        let mut plan: Plan = serde_json::from_value(serde_json::Value::Object(header))
            .map_err(|e| self.corrupt("plans", "header", id, e))?;
        let bodies: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, body FROM operations WHERE plan_id = $1 ORDER BY seq")
                .bind(id.0)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err(&what, e))?;
        let operations = bodies
            .iter()
            .map(|(op_id, body)| self.parse_op(*op_id, body))
            .collect::<Result<Vec<_>, _>>()?;
        plan.operations = operations;
        Ok(Some(plan))
    }

    fn parse_op(&self, id: i64, body: &str) -> Result<Operation, StoreError> {
        serde_json::from_str(body).map_err(|e| self.corrupt("operations", "body", id, e))
    }

    fn decode_finished(&self, row: &AnyRow) -> Result<Finished, StoreError> {
        const T: &str = "operations";
        let id: i64 = self.col(row, T, "id", "?")?;
        Ok(Finished {
            id,
            plan: self.col(row, T, "plan_id", id)?,
            seq: self.col(row, T, "seq", id)?,
            system: self.col(row, T, "system", id)?,
            account: self.col(row, T, "account", id)?,
            body: self.col(row, T, "body", id)?,
            key: self.col(row, T, "idempotency_key", id)?,
            next_seq: self.col(row, T, "next_seq", id)?,
        })
    }

    /// A queue row and its priority.
    fn decode_op(&self, row: &AnyRow) -> Result<(QueuedOperation, i64), StoreError> {
        const T: &str = "operations";
        let id: i64 = self.col(row, T, "id", "?")?;
        let seq: i64 = self.col(row, T, "seq", id)?;
        let body: String = self.col(row, T, "body", id)?;
        let state: String = self.col(row, T, "state", id)?;
        let attempts: i64 = self.col(row, T, "attempts", id)?;
        let not_before: i64 = self.col(row, T, "not_before", id)?;
        let done_at: Option<i64> = self.col(row, T, "done_at", id)?;
        let time = |column: &'static str, v: i64| {
            from_micros(v)
                .ok_or_else(|| self.bad_value(T, column, id, format!("timestamp {v} out of range")))
        };
        let op = QueuedOperation {
            id,
            plan: PlanId(self.col(row, T, "plan_id", id)?),
            seq: u32::try_from(seq)
                .map_err(|_| self.bad_value(T, "seq", id, format!("{seq} is out of range")))?,
            operation: self.parse_op(id, &body)?,
            state: OpState::from_db(&state).ok_or_else(|| {
                self.bad_value(T, "state", id, format!("unknown state {state:?}"))
            })?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            last_error: self.col(row, T, "last_error", id)?,
            idempotency_key: self.col(row, T, "idempotency_key", id)?,
            not_before: time("not_before", not_before)?,
            done_at: done_at.map(|v| time("done_at", v)).transpose()?,
        };
        let priority: i64 = self.col(row, T, "priority", id)?;
        Ok((op, priority))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            base: Duration::from_secs(10),
            max_attempts: 5,
        };
        assert_eq!(p.backoff(1), Duration::from_secs(10));
        assert_eq!(p.backoff(2), Duration::from_secs(20));
        assert_eq!(p.backoff(4), Duration::from_secs(80));
        assert_eq!(p.backoff(12), MAX_BACKOFF);
        assert_eq!(p.backoff(200), MAX_BACKOFF);
        assert_eq!(p.backoff(0), Duration::from_secs(10));
    }
}
