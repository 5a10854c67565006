//! Plans and the durable operation queue.
//!
//! [`Store::enqueue_plan`] stores a plan and one queue row per operation;
//! workers [`claim`](Store::claim) runnable rows under a lease and
//! [`complete`](Store::complete) them, which records the outcome and its
//! audit record in one transaction. Within a plan, an operation waits for the
//! previous operation on the same (system, account): a row whose dependency is
//! not done yet is stored in the internal state `blocked` (reported as
//! [`OpState::Queued`]) and becomes `queued` in the transaction that marks its
//! dependency done.
//!
//! The claim indexes hold the rows still `pending` (not done, not failed for
//! good), so a claim, a release and a retry change no indexed column: on
//! PostgreSQL they are heap-only updates, with no new index entries. Claims
//! read past the blocked and running rows they meet, and take over running
//! rows whose lease expired.
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
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;
use tenure_core::audit::AuditEvent;
use tenure_core::{IdentityId, Operation, Plan, SystemId};

/// An operation not done yet, as a plan compares it with what it finds needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOperation {
    /// Its idempotency key ([`Operation::key`]).
    pub key: String,
    /// The system.
    pub system: String,
    /// The account.
    pub account: String,
    /// Whose account, if known.
    pub identity: Option<String>,
    /// The action's name.
    pub action: String,
    /// Whether a worker holds it now.
    pub running: bool,
}

/// The longest wait between two attempts of a failed operation.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How many ids one `IN (…)` list holds.
const ID_CHUNK: usize = 1000;

/// Which operations a claim may take.
enum Lane<'a> {
    /// Any system's.
    Any,
    /// One system's.
    Only(&'a str),
    /// Any but these systems'.
    Except(&'a [SystemId]),
}

/// Operations encoded and written at a time when a plan is enqueued.
const ENQUEUE_SLICE: usize = 16_384;

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

/// A queue row's columns (its body is in `operation_bodies`, by plan and seq).
const OP_COLUMNS: &str = "id, plan_id, seq, state, attempts, last_error, idempotency_key, \
                          not_before, done_at, priority";

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
        // The previous operation on each (system, account): the one to wait for.
        let n = plan.operations.len();
        let mut depends_on: Vec<Option<i64>> = vec![None; n];
        let mut next_seq: Vec<Option<i64>> = vec![None; n];
        {
            let mut last: HashMap<(&str, &str), usize> = HashMap::new();
            for (i, op) in plan.operations.iter().enumerate() {
                if let Some(p) = last.insert((op.system.as_str(), op.account.as_str()), i) {
                    if let Some(slot) = depends_on.get_mut(i) {
                        *slot = i64::try_from(p).ok();
                    }
                    if let Some(slot) = next_seq.get_mut(p) {
                        *slot = i64::try_from(i).ok();
                    }
                }
            }
        }

        let what = format!("enqueueing a plan of {n} operations");
        let mut tx = self.begin_write(&what).await?;
        self.cancel_superseded_tx(&mut tx, &plan.superseded, &what)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO plans (format, fingerprint, made_at, today, priority, operation_count, header) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(i64::from(plan.format))
        .bind(plan.fingerprint.as_str())
        .bind(micros(plan.made_at))
        .bind(crate::sql::date_text(plan.today))
        .bind(i64::from(priority))
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(header)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        let priority = i64::from(priority);
        // Encoded and written a slice at a time, so that a big plan is never
        // held twice in memory (as operations and as JSON).
        for (c, chunk) in plan.operations.chunks(ENQUEUE_SLICE).enumerate() {
            let first = c * ENQUEUE_SLICE;
            // Each operation as JSON, with its idempotency key: the costly
            // part, spread over the CPUs.
            let encoded = crate::sql::par_map(chunk, |op| {
                serde_json::to_string(op).map(|body| (body, op.key()))
            })
            .map_err(|e| match e {
                crate::sql::ParError::Failed(i, e) => {
                    self.encode_err(format!("operation {} of the plan", first + i), e)
                }
                crate::sql::ParError::Panicked => {
                    self.invalid("encoding the plan's operations failed (a worker thread panicked)")
                }
            })?;
            let mut rows: Vec<OpRow<'_>> = Vec::with_capacity(chunk.len());
            for (j, (op, (body, key))) in chunk.iter().zip(encoded).enumerate() {
                let i = first + j;
                rows.push(OpRow {
                    seq: i64::try_from(i).unwrap_or(i64::MAX),
                    system: op.system.as_str(),
                    account: op.account.as_str(),
                    identity: op.identity.as_ref().map(IdentityId::as_str),
                    action: op.action.name(),
                    body,
                    key,
                    depends_on: depends_on.get(i).copied().flatten(),
                    next_seq: next_seq.get(i).copied().flatten(),
                });
            }
            values_chunks(
                &mut tx,
                self.dialect,
                "INSERT INTO operations (plan_id, seq, system, account, identity, action, \
                 idempotency_key, priority, depends_on, next_seq, state, not_before)",
                12,
                "",
                &rows,
                |q, r| {
                    q.bind(id)
                        .bind(r.seq)
                        .bind(r.system)
                        .bind(r.account)
                        .bind(r.identity)
                        .bind(r.action)
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
            values_chunks(
                &mut tx,
                self.dialect,
                "INSERT INTO operation_bodies (plan_id, seq, body)",
                3,
                "",
                &rows,
                |q, r| q.bind(id).bind(r.seq).bind(r.body.as_str()),
            )
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await?;
        self.analyze_after_bulk(&["operations", "operation_bodies"], n)
            .await?;
        Ok(PlanId(id))
    }

    /// Claims up to `limit` runnable operations for `worker`, with a lease
    /// until `now + lease`, ordered by priority (highest first), then id.
    ///
    /// Runnable: queued with `not_before <= now` and the operation it depends
    /// on done (or none); or running with an expired lease (its worker died):
    /// such rows are taken over in their place in the order. On PostgreSQL rows are selected `FOR UPDATE … SKIP LOCKED`, so
    /// concurrent claimers (in any process) never get the same operation.
    pub async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<QueuedOperation>, StoreError> {
        self.claim_in(worker, now, lease, limit, Lane::Any).await
    }

    /// [`claim`](Store::claim), leaving out the operations of these systems
    /// (quarantined ones, whose operations wait).
    pub async fn claim_except(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
        except: &[SystemId],
    ) -> Result<Vec<QueuedOperation>, StoreError> {
        if except.is_empty() {
            return self.claim_in(worker, now, lease, limit, Lane::Any).await;
        }
        self.claim_in(worker, now, lease, limit, Lane::Except(except))
            .await
    }

    /// [`claim`](Store::claim), for the operations of one system only: an
    /// executor runs one such lane per system, so that every system works at
    /// once and a slow one holds up only its own operations.
    pub async fn claim_system(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
        system: &SystemId,
    ) -> Result<Vec<QueuedOperation>, StoreError> {
        self.claim_in(worker, now, lease, limit, Lane::Only(system.as_str()))
            .await
    }

    async fn claim_in(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
        lane: Lane<'_>,
    ) -> Result<Vec<QueuedOperation>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_us = micros(now);
        let until = now_us.saturating_add(duration_micros(lease));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let what = match &lane {
            Lane::Only(s) => format!("claiming operations on system {s} for worker {worker:?}"),
            _ => format!("claiming operations for worker {worker:?}"),
        };
        // Candidates come through the index of pending rows (of the lane),
        // in claim order: queued ones whose time has come, and running ones
        // whose lease expired (their worker died: they are taken over like
        // any other). Blocked and running rows in between are read past.
        // Two statements, not `($5 IS NULL OR system = $5)`: each must be able
        // to use its own index (operations_pending, operations_pending_lane).
        let filter = match &lane {
            Lane::Any => String::new(),
            Lane::Only(_) => " AND o.system = $5".to_owned(),
            Lane::Except(list) => format!(
                " AND o.system NOT IN ({})",
                (0..list.len())
                    .map(|i| format!("${}", i + 5))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let candidates = format!(
            "SELECT o.id AS cid, o.state AS was FROM operations o \
             WHERE o.pending{filter} \
             AND ((o.state = 'queued' AND o.not_before <= $3) \
               OR (o.state = 'running' AND o.lease_until <= $3)) \
             ORDER BY o.priority DESC, o.id LIMIT $4"
        );
        let mut tx = self.begin_write(&what).await?;
        let sql = match self.dialect {
            // One statement: the candidates are locked (`SKIP LOCKED`: rows
            // another process is claiming are left to it) and updated, and
            // it says which of them were running.
            Dialect::Postgres => format!(
                "WITH c AS ({candidates} FOR UPDATE OF o SKIP LOCKED) \
                 UPDATE operations SET state = 'running', worker = $1, lease_until = $2 \
                 FROM c WHERE operations.id = c.cid RETURNING c.was, {OP_COLUMNS}"
            ),
            // SQLite has one writer: the transaction holds it from the
            // candidates to their update (below; its RETURNING sees only the
            // new row). $1 and $2 are not in the candidates' statement:
            // numbered parameters keep their places.
            Dialect::Sqlite => candidates,
        };
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(worker)
            .bind(until)
            .bind(now_us)
            .bind(limit);
        match &lane {
            Lane::Any => {}
            Lane::Only(system) => q = q.bind(*system),
            Lane::Except(list) => {
                for system in *list {
                    q = q.bind(system.as_str());
                }
            }
        }
        let found = q
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        let mut reclaimed = 0u64;
        for r in &found {
            let was: String = self.col(r, "operations", "was", "(claim)")?;
            reclaimed += u64::from(was == "running");
        }
        let rows = match self.dialect {
            Dialect::Postgres => found,
            Dialect::Sqlite => {
                let ids = found
                    .iter()
                    .map(|r| self.col::<i64>(r, "operations", "cid", "(claim)"))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut rows = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(ID_CHUNK) {
                    let sql = crate::sql::in_order(
                        self.dialect,
                        format!(
                            "UPDATE operations SET state = 'running', worker = $1, lease_until = $2 \
                             WHERE id IN ({}) RETURNING {OP_COLUMNS}",
                            placeholder_list(3, chunk.len())
                        ),
                    );
                    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(worker).bind(until);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    rows.extend(
                        q.fetch_all(&mut *tx)
                            .await
                            .map_err(|e| self.db_err(&what, e))?,
                    );
                }
                rows
            }
        };
        if reclaimed > 0 {
            tracing::warn!(
                store = %self.location,
                reclaimed,
                "operations whose lease expired are taken over"
            );
        }
        self.commit(tx, &what).await?;
        // Bodies are written once with their plan and never change while a
        // row is claimed: read after the claim commits, on any connection,
        // so that the writer's turn (SQLite has one writer) ends sooner.
        let mut bodies = if rows.is_empty() {
            HashMap::new()
        } else {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(|e| self.db_err(&what, e))?;
            self.bodies(&mut conn, &rows, &what).await?
        };
        let mut ops = rows
            .iter()
            .map(|r| self.decode_op(r, &mut bodies))
            .collect::<Result<Vec<_>, _>>()?;
        ops.sort_by(|(a, pa), (b, pb)| pb.cmp(pa).then(a.id.cmp(&b.id)));
        Ok(ops.into_iter().map(|(op, _)| op).collect())
    }

    /// Records the outcomes of operations `worker` claimed (as
    /// [`claim`](Store::claim) returned them), in one transaction, only for
    /// rows still claimed by `worker` (a row whose lease expired and was
    /// claimed again, or that is no longer running, is left alone).
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
        done: &[&QueuedOperation],
        failed: &[(&QueuedOperation, String)],
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
        // Done. The caller's copies of the operations are used for the audit
        // records; the store confirms which rows were still this worker's.
        let mut by_id: BTreeMap<i64, &QueuedOperation> = BTreeMap::new();
        for q in done {
            by_id.insert(q.id, q);
        }
        let ids: Vec<i64> = by_id.keys().copied().collect();
        // Their audit records are written before the transaction begins
        // (encoding them is most of the CPU a batch costs the store): on
        // SQLite the writer's turn is shared by every lane.
        let mut prepared: HashMap<i64, AuditEvent> = by_id
            .iter()
            .map(|(id, q)| (*id, done_event(q, now)))
            .collect();
        let mut tx = self.begin_write(&what).await?;
        let mut audit = Vec::new();
        let mut finished: Vec<(&QueuedOperation, Option<i64>)> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ID_CHUNK) {
            // `worker` is set only while a row is running (claims set it,
            // every other change of state clears it), so it alone says the
            // row is still ours. `state = 'running'` is not written here: with
            // statistics taken while nothing ran, PostgreSQL would read it as
            // rare and walk the index of running rows instead of the keys.
            let sql = format!(
                "UPDATE operations SET state = 'done', pending = FALSE, done_at = $1, \
                 worker = NULL, lease_until = NULL WHERE worker = $2 AND id IN ({}) \
                 RETURNING id, next_seq",
                placeholder_list(3, chunk.len())
            );
            let sql = crate::sql::in_order(self.dialect, sql);
            let mut q = sqlx::query_as::<_, (i64, Option<i64>)>(AssertSqlSafe(sql))
                .bind(now_us)
                .bind(worker);
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.db_err(&what, e))?;
            for (id, next_seq) in rows {
                if let Some(q) = by_id.get(&id) {
                    finished.push((q, next_seq));
                }
            }
        }
        finished.sort_by_key(|(q, _)| q.id);
        // Their dependents may run now.
        // Grouped by plan, so each statement is an equality on plan_id and an
        // IN list on seq: both databases then find the rows through the
        // UNIQUE (plan_id, seq) index (a row-value IN list made SQLite walk
        // every blocked row instead, once per batch).
        let mut next: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (q, next_seq) in &finished {
            if let Some(n) = next_seq {
                next.entry(q.plan.0).or_default().push(*n);
            }
        }
        for (plan, seqs) in &mut next {
            seqs.sort_unstable();
            for chunk in seqs.chunks(ID_CHUNK) {
                let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
                    continue;
                };
                // The range bounds the index scan whatever the planner knows:
                // without it, PostgreSQL (before it has statistics on a new
                // plan's rows) scans every row of the plan for each list.
                let sql = format!(
                    "UPDATE operations SET state = 'queued' \
                     WHERE plan_id = $1 AND seq BETWEEN $2 AND $3 AND seq IN ({}) \
                     AND state = 'blocked'",
                    placeholder_list(4, chunk.len())
                );
                let sql = crate::sql::in_order(self.dialect, sql);
                let mut q = sqlx::query(AssertSqlSafe(sql))
                    .bind(*plan)
                    .bind(*first)
                    .bind(*last);
                for seq in chunk {
                    q = q.bind(*seq);
                }
                q.execute(&mut *tx)
                    .await
                    .map_err(|e| self.db_err(&what, e))?;
            }
        }
        for (q, _) in &finished {
            if let Some(event) = prepared.remove(&q.id) {
                audit.push(event);
            }
        }

        // Failed: retried after a backoff, or given up on.
        let mut failures: BTreeMap<i64, (&QueuedOperation, &str)> = BTreeMap::new();
        for (q, message) in failed {
            failures.insert(q.id, (q, message));
        }
        for (id, (q, message)) in failures {
            let attempts = q.attempts.saturating_add(1);
            let give_up = attempts >= retry.max_attempts;
            let (state, not_before) = if give_up {
                ("failed", now_us)
            } else {
                let wait = duration_micros(retry.backoff(attempts));
                ("queued", now_us.saturating_add(wait))
            };
            let updated = sqlx::query(
                "UPDATE operations SET state = $1, pending = $7, attempts = $2, last_error = $3, \
                 not_before = $4, worker = NULL, lease_until = NULL \
                 WHERE id = $5 AND state = 'running' AND worker = $6",
            )
            .bind(state)
            .bind(i64::from(attempts))
            .bind(message)
            .bind(not_before)
            .bind(id)
            .bind(worker)
            .bind(!give_up)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?
            .rows_affected();
            if updated == 0 {
                // No longer this worker's (its lease expired and another took it).
                continue;
            }
            let op = &q.operation;
            audit.push(AuditEvent {
                at: now,
                actor: "tenure".into(),
                action: "operation.failed".into(),
                subject: format!("system:{}/account:{}", op.system, op.account),
                reason: message.to_owned(),
                detail: serde_json::json!({
                    "operation": op,
                    "plan": q.plan,
                    "seq": q.seq,
                    "idempotency_key": q.idempotency_key,
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
                    "SELECT {OP_COLUMNS}, body FROM operations JOIN operation_bodies b \
                     USING (plan_id, seq) WHERE plan_id = $1 ORDER BY id"
                )))
                .bind(p.0)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {OP_COLUMNS}, body FROM operations JOIN operation_bodies b \
                     USING (plan_id, seq) ORDER BY id"
                )))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(|e| self.db_err("listing queued operations", e))?;
        self.decode_with_bodies(&rows)
    }

    /// Every operation ever queued for one identity, ordered by id (for its timeline).
    pub async fn operations_of_identity(
        &self,
        identity: &IdentityId,
    ) -> Result<Vec<QueuedOperation>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {OP_COLUMNS}, body FROM operations JOIN operation_bodies b \
             USING (plan_id, seq) WHERE identity = $1 ORDER BY id"
        )))
        .bind(identity.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(format!("listing the operations of {identity}"), e))?;
        self.decode_with_bodies(&rows)
    }

    fn decode_with_bodies(&self, rows: &[AnyRow]) -> Result<Vec<QueuedOperation>, StoreError> {
        let mut bodies = HashMap::with_capacity(rows.len());
        for r in rows {
            let id: i64 = self.col(r, "operations", "id", "?")?;
            let plan: i64 = self.col(r, "operations", "plan_id", id)?;
            let seq: i64 = self.col(r, "operations", "seq", id)?;
            bodies.insert(
                (plan, seq),
                self.col::<String>(r, "operation_bodies", "body", id)?,
            );
        }
        rows.iter()
            .map(|r| self.decode_op(r, &mut bodies).map(|(op, _)| op))
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
            "UPDATE operations SET state = 'queued', pending = TRUE, attempts = 0, not_before = $1 \
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

    /// The operations not done yet (of these identities, through the
    /// identity index; or all of them): what a plan compares with what it
    /// finds needed, to tell work already queued from work superseded.
    pub async fn pending_operations(
        &self,
        identities: Option<&[IdentityId]>,
    ) -> Result<Vec<PendingOperation>, StoreError> {
        const COLS: &str =
            "SELECT idempotency_key, system, account, identity, action, state FROM operations";
        let what = "reading pending operations";
        let mut rows = Vec::new();
        match identities {
            None => {
                rows = sqlx::query(AssertSqlSafe(format!("{COLS} WHERE state <> 'done'")))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.db_err(what, e))?;
            }
            Some(ids) => {
                for chunk in ids.chunks(500) {
                    let sql = format!(
                        "{COLS} WHERE identity IN ({}) AND state <> 'done'",
                        crate::sql::placeholders(self.dialect, chunk.len(), 1)
                    );
                    let mut q = sqlx::query(AssertSqlSafe(sql));
                    for id in chunk {
                        q = q.bind(id.as_str());
                    }
                    rows.extend(
                        q.fetch_all(&self.pool)
                            .await
                            .map_err(|e| self.db_err(what, e))?,
                    );
                }
            }
        }
        const T: &str = "operations";
        rows.iter()
            .map(|r| {
                let key: String = self.col(r, T, "idempotency_key", "?")?;
                let state: String = self.col(r, T, "state", &key)?;
                Ok(PendingOperation {
                    system: self.col(r, T, "system", &key)?,
                    account: self.col(r, T, "account", &key)?,
                    identity: self.col(r, T, "identity", &key)?,
                    action: self.col(r, T, "action", &key)?,
                    running: state == "running",
                    key,
                })
            })
            .collect()
    }

    /// Cancels the operations waiting on these accounts (queued, waiting
    /// for another, or failed; never one that is running) and appends the
    /// audit events, in one transaction: a newer plan replaces them. The
    /// audit log keeps what was cancelled; the rows go. Returns how many.
    pub async fn cancel_superseded(
        &self,
        accounts: &[tenure_core::plan::Superseded],
        audit: Vec<AuditEvent>,
    ) -> Result<u64, StoreError> {
        let what = format!(
            "cancelling queued operations on {} accounts",
            accounts.len()
        );
        let mut tx = self.begin_write(&what).await?;
        let n = self.cancel_superseded_tx(&mut tx, accounts, &what).await?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await?;
        Ok(n)
    }

    async fn cancel_superseded_tx(
        &self,
        tx: &mut sqlx::AnyConnection,
        accounts: &[tenure_core::plan::Superseded],
        what: &str,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for a in accounts {
            // Bodies first: they are found through the rows about to go.
            sqlx::query(
                "DELETE FROM operation_bodies WHERE (plan_id, seq) IN (SELECT plan_id, seq FROM operations \
                 WHERE system = $1 AND account = $2 AND state IN ('queued', 'blocked', 'failed'))",
            )
            .bind(a.system.as_str())
            .bind(a.account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(what, e))?;
            n += sqlx::query(
                "DELETE FROM operations WHERE system = $1 AND account = $2 \
                 AND state IN ('queued', 'blocked', 'failed')",
            )
            .bind(a.system.as_str())
            .bind(a.account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(what, e))?
            .rows_affected();
        }
        Ok(n)
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
        let bodies: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, body FROM operation_bodies WHERE plan_id = $1 ORDER BY seq",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        let operations = bodies
            .iter()
            .map(|(seq, body)| {
                serde_json::from_str(body)
                    .map_err(|e| self.corrupt("operation_bodies", "body", format!("{id}/{seq}"), e))
            })
            .collect::<Result<Vec<Operation>, _>>()?;
        plan.operations = operations;
        Ok(Some(plan))
    }

    /// The bodies of the queue rows `rows` (which hold `plan_id` and `seq`).
    async fn bodies(
        &self,
        conn: &mut sqlx::AnyConnection,
        rows: &[AnyRow],
        what: &str,
    ) -> Result<HashMap<(i64, i64), String>, StoreError> {
        let mut keys = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = self.col(r, "operations", "id", "?")?;
            keys.push((
                self.col(r, "operations", "plan_id", id)?,
                self.col(r, "operations", "seq", id)?,
            ));
        }
        self.bodies_of(conn, &keys, what).await
    }

    /// The bodies of these (plan, seq) operations, read by plan in lists of
    /// seq (so each statement uses the primary key).
    async fn bodies_of(
        &self,
        conn: &mut sqlx::AnyConnection,
        keys: &[(i64, i64)],
        what: &str,
    ) -> Result<HashMap<(i64, i64), String>, StoreError> {
        let mut by_plan: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (plan, seq) in keys {
            by_plan.entry(*plan).or_default().push(*seq);
        }
        let mut out = HashMap::with_capacity(keys.len());
        for (plan, seqs) in &mut by_plan {
            seqs.sort_unstable();
            for chunk in seqs.chunks(ID_CHUNK) {
                let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
                    continue;
                };
                // Bounded by a range as well as listed: see `complete`.
                let sql = format!(
                    "SELECT seq, body FROM operation_bodies \
                     WHERE plan_id = $1 AND seq BETWEEN $2 AND $3 AND seq IN ({})",
                    placeholder_list(4, chunk.len())
                );
                let sql = crate::sql::in_order(self.dialect, sql);
                let mut q = sqlx::query_as::<_, (i64, String)>(AssertSqlSafe(sql))
                    .bind(*plan)
                    .bind(*first)
                    .bind(*last);
                for seq in chunk {
                    q = q.bind(*seq);
                }
                let rows = q
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| self.db_err(what, e))?;
                out.extend(rows.into_iter().map(|(seq, body)| ((*plan, seq), body)));
            }
        }
        Ok(out)
    }

    /// Parses (and takes out of `bodies`) the body of queue row `id`.
    fn take_op(
        &self,
        bodies: &mut HashMap<(i64, i64), String>,
        id: i64,
        plan: i64,
        seq: i64,
    ) -> Result<Operation, StoreError> {
        let body = bodies.remove(&(plan, seq)).ok_or_else(|| {
            self.bad_value(
                "operation_bodies",
                "body",
                format!("{plan}/{seq}"),
                format!("missing: queue row {id} has no body"),
            )
        })?;
        serde_json::from_str(&body).map_err(|e| self.corrupt("operation_bodies", "body", id, e))
    }

    /// A queue row and its priority.
    fn decode_op(
        &self,
        row: &AnyRow,
        bodies: &mut HashMap<(i64, i64), String>,
    ) -> Result<(QueuedOperation, i64), StoreError> {
        const T: &str = "operations";
        let id: i64 = self.col(row, T, "id", "?")?;
        let seq: i64 = self.col(row, T, "seq", id)?;
        let plan: i64 = self.col(row, T, "plan_id", id)?;
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
            plan: PlanId(plan),
            seq: u32::try_from(seq)
                .map_err(|_| self.bad_value(T, "seq", id, format!("{seq} is out of range")))?,
            operation: self.take_op(bodies, id, plan, seq)?,
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

/// The `operation.done` audit record of a confirmed operation.
fn done_event(q: &QueuedOperation, now: DateTime<Utc>) -> AuditEvent {
    let op = &q.operation;
    let reason = if op.reasons.is_empty() {
        format!("{} applied", op.action.name())
    } else {
        op.reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    AuditEvent {
        at: now,
        actor: "tenure".into(),
        action: "operation.done".into(),
        subject: format!("system:{}/account:{}", op.system, op.account),
        reason,
        detail: serde_json::json!({
            "operation": op,
            "plan": q.plan,
            "seq": q.seq,
            "idempotency_key": q.idempotency_key,
        })
        .to_string(),
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
