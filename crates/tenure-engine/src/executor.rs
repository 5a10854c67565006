//! The executor: runs operations from the durable queue through the connectors.
//!
//! An operation is claimed with a lease, executed, and recorded as done only
//! after its system confirmed it; a failure is recorded with its error and
//! retried later with exponential backoff. A process that dies loses nothing:
//! its claims expire and another run takes them. Connectors are idempotent,
//! so an operation executed again after a crash has the same effect.

use crate::engine::Engine;
use crate::error::EngineError;
use crate::progress::Progress;
use std::collections::BTreeMap;
use tenure_core::SystemId;
use tenure_store::{QueuedOperation, RetryPolicy, SystemHealth};

/// Counts of one execution run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExecStats {
    /// Confirmed by their system.
    pub done: u64,
    /// Failed this time (queued again for a retry, or failed for good).
    pub failed: u64,
}

impl std::ops::AddAssign for ExecStats {
    fn add_assign(&mut self, other: ExecStats) {
        self.done += other.done;
        self.failed += other.failed;
    }
}

/// How many operations one claim takes at most, by default.
pub const BATCH: usize = 8000;

/// How many operations a lane's first claim takes: later claims grow or
/// shrink with how long a batch takes on that system ([`next_batch`]).
pub const FIRST_BATCH: usize = 500;

/// The size of a lane's next claim after a batch of `size` took `took`:
/// doubled (up to `max`) while a batch takes under an eighth of the lease,
/// halved (down to 1) when it takes over a quarter. A fast system soon runs
/// big batches (fewer store transactions per operation); a slow one (a SCIM
/// application answering a few requests a second) small ones, always done
/// long before the lease ends, so no other process takes them over while
/// they run.
pub fn next_batch(
    size: usize,
    took: std::time::Duration,
    lease: std::time::Duration,
    max: usize,
) -> usize {
    let max = max.max(1);
    if took > lease / 4 {
        (size / 2).max(1)
    } else if took < lease / 8 {
        size.saturating_mul(2).min(max)
    } else {
        size.min(max)
    }
}

/// Per operation: Ok, or the error and whether trying again later may help.
type Outcome = Result<(), (String, bool)>;

/// A batch run on its systems, its outcomes not recorded yet.
struct Executed {
    /// Each operation of the batch with its outcome.
    runs: Vec<(QueuedOperation, Outcome)>,
    /// When its claim began: its lease runs from then until it is recorded.
    claimed_at: std::time::Instant,
}

/// Executes the queue.
pub struct Executor {
    engine: Engine,
    worker: String,
    retry: RetryPolicy,
    /// Each system's health, as of this run (loaded when a run starts).
    health: std::sync::Mutex<BTreeMap<SystemId, SystemHealth>>,
}

/// What a lane does with a system now.
enum LaneMode {
    /// Claim and run as usual.
    Run,
    /// Quarantined, and its retry time has come: one operation, as a probe.
    Probe,
    /// Quarantined: leave its operations waiting.
    Wait,
}

impl Executor {
    /// An executor for this process.
    pub fn new(engine: &Engine) -> Self {
        let worker = format!(
            "{}-{}",
            std::process::id(),
            engine.wall.now().timestamp_micros()
        );
        Executor {
            engine: engine.clone(),
            worker,
            retry: RetryPolicy {
                base: std::time::Duration::from_secs(2),
                max_attempts: 8,
            },
            health: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    fn health_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<SystemId, SystemHealth>> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lane_mode(&self, system: &SystemId) -> LaneMode {
        let now = self.engine.wall.now();
        match self.health_map().get(system) {
            Some(h) if h.quarantined_since.is_some() => {
                if h.retry_at.is_none_or(|t| t <= now) {
                    LaneMode::Probe
                } else {
                    LaneMode::Wait
                }
            }
            _ => LaneMode::Run,
        }
    }

    /// Records how a batch went on a system: a batch with a success makes it
    /// healthy (and ends a quarantine); a batch whose every operation failed
    /// for a reason that may pass counts as a failure of the system, and
    /// enough of them in a row quarantine it.
    async fn note_batch(
        &self,
        system: &SystemId,
        succeeded: bool,
        failure: Option<String>,
    ) -> Result<(), EngineError> {
        let now = self.engine.wall.now();
        let timings = self.engine.policy.service();
        let (updated, events) = {
            let mut map = self.health_map();
            let h = map
                .entry(system.clone())
                .or_insert_with(|| SystemHealth::healthy(system.clone()));
            let before = h.clone();
            let mut events = Vec::new();
            if succeeded {
                if h.quarantined_since.is_some() {
                    events.push(self.engine.event(
                        "system.recovered",
                        format!("system:{system}"),
                        "an operation succeeded: quarantine ended".to_owned(),
                        serde_json::json!({ "failures": h.failures }),
                    ));
                }
                *h = SystemHealth::healthy(system.clone());
            } else if let Some(error) = failure {
                h.failures += 1;
                h.last_error = Some(error.clone());
                let retry = now + timings.quarantine_retry;
                if h.quarantined_since.is_some() {
                    h.retry_at = Some(retry);
                } else if h.failures >= timings.quarantine_after {
                    h.quarantined_since = Some(now);
                    h.retry_at = Some(retry);
                    events.push(self.engine.event(
                        "system.quarantined",
                        format!("system:{system}"),
                        format!(
                            "{} batches failed in a row; its operations wait, tried again from {retry}: {error}",
                            h.failures
                        ),
                        serde_json::json!({ "failures": h.failures, "retry_at": retry }),
                    ));
                    tracing::error!(%system, failures = h.failures, %error, "system quarantined");
                }
            }
            ((*h != before).then(|| h.clone()), events)
        };
        if let Some(h) = updated {
            let notices: Vec<_> = events
                .iter()
                .map(|e| {
                    let kind = if e.action == "system.quarantined" {
                        tenure_core::config::NoticeKind::Quarantine
                    } else {
                        tenure_core::config::NoticeKind::QuarantineLifted
                    };
                    self.engine.system_notice(
                        kind,
                        system.as_str(),
                        &now.timestamp_micros().to_string(),
                        e.reason.clone(),
                    )
                })
                .collect();
            self.engine.store.set_system_health(&h, events).await?;
            self.engine.notify(notices).await;
        }
        Ok(())
    }

    /// Claims and runs batches until nothing is runnable now.
    ///
    /// Every configured system has its own lane: it claims that system's
    /// operations only and runs them, so all systems work at the same time
    /// and a slow system holds up nobody else. (Plans are ordered by system:
    /// claims over all systems at once would give one system at a time.)
    ///
    /// Each lane is a task of its own, so lanes run on every thread of the
    /// runtime: a lane holding the store's writer (SQLite has one) is not
    /// kept waiting for a thread while another lane encodes its audit
    /// records. Dropping the returned future stops the lanes at their next
    /// step; their claims expire with their lease, as a dead process's do.
    pub async fn run_until_idle(
        self: std::sync::Arc<Self>,
        progress: &dyn Progress,
    ) -> Result<ExecStats, EngineError> {
        let mut stats = ExecStats::default();
        let counts = self.engine.store.queue_counts().await?;
        if counts.queued + counts.running == 0 {
            return Ok(stats);
        }
        {
            let health = self.engine.store.system_health().await?;
            let mut map = self.health_map();
            map.clear();
            map.extend(health.into_iter().map(|h| (h.system.clone(), h)));
        }
        progress.start("applying", Some(counts.queued + counts.running));
        loop {
            let (advanced, mut advances) = tokio::sync::mpsc::unbounded_channel();
            let mut lanes = tokio::task::JoinSet::new();
            for system in self.engine.connectors.keys() {
                let (me, system, advanced) = (
                    std::sync::Arc::clone(&self),
                    system.clone(),
                    advanced.clone(),
                );
                lanes.spawn(async move { me.run_lane(&system, &advanced).await });
            }
            drop(advanced);
            let mut first_error = None;
            loop {
                tokio::select! {
                    Some(n) = advances.recv() => progress.advance(n),
                    lane = lanes.join_next() => match lane {
                        None => break,
                        Some(Ok(Ok(s))) => stats += s,
                        Some(Ok(Err(e))) => {
                            // The other lanes finish what they hold first.
                            first_error.get_or_insert(e);
                        }
                        Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Some(Err(e)) => {
                            first_error.get_or_insert(EngineError::Internal {
                                what: format!("running a lane of the executor: {e}"),
                            });
                        }
                    },
                }
            }
            while let Ok(n) = advances.try_recv() {
                progress.advance(n);
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            // Whatever is left runnable now: operations on systems that are no
            // longer configured (they fail, saying so), or ones whose time came
            // while the lanes ran down.
            let now = self.engine.wall.now();
            let waiting: Vec<SystemId> = self
                .engine
                .connectors
                .keys()
                .filter(|s| matches!(self.lane_mode(s), LaneMode::Wait))
                .cloned()
                .collect();
            let batch = self
                .engine
                .store
                .claim_except(
                    &self.worker,
                    now,
                    self.engine.lease,
                    self.engine.batch,
                    &waiting,
                )
                .await?;
            if !batch.is_empty() {
                let s = self.run_batch(batch).await?;
                progress.advance(s.done + s.failed);
                stats += s;
                continue;
            }
            // Operations another process holds (perhaps one that died: its lease
            // will expire) must finish before the systems can be planned again.
            let c = self.engine.store.queue_counts().await?;
            if c.running > 0 {
                let pause = (self.engine.lease / 4).clamp(
                    std::time::Duration::from_millis(20),
                    std::time::Duration::from_millis(250),
                );
                tokio::time::sleep(pause).await;
                continue;
            }
            break;
        }
        progress.finish();
        Ok(stats)
    }

    /// One system's lane: claims and runs its batches until none is runnable.
    ///
    /// Pipelined: while a batch's outcomes are recorded in the store, the
    /// next batch is claimed and run on the system, so the store's work and
    /// the system's overlap. At most two batches are in hand: the next one's
    /// outcomes are recorded only after the one before is.
    async fn run_lane(
        &self,
        system: &SystemId,
        progress: &tokio::sync::mpsc::UnboundedSender<u64>,
    ) -> Result<ExecStats, EngineError> {
        let mut stats = ExecStats::default();
        let mut size = FIRST_BATCH.min(self.engine.batch).max(1);
        // A batch run, not recorded yet, and whether it was claimed full at
        // the lane's size (only such a batch says how big the next may be).
        let mut in_hand: Option<(Executed, bool)> = None;
        loop {
            let limit = match self.lane_mode(system) {
                LaneMode::Run => size,
                LaneMode::Probe => 1,
                LaneMode::Wait => 0,
            };
            let at_size = limit == size;
            let next = async {
                if limit == 0 {
                    return Ok(None);
                }
                let now = self.engine.wall.now();
                let claimed_at = std::time::Instant::now();
                let batch = self
                    .engine
                    .store
                    .claim_system(&self.worker, now, self.engine.lease, limit, system)
                    .await?;
                if batch.is_empty() {
                    return Ok(None);
                }
                self.execute(batch, claimed_at).await.map(Some)
            };
            let previous = async {
                match in_hand.take() {
                    None => Ok(None),
                    Some((e, full)) => {
                        let at = e.claimed_at;
                        let s = self.record(e).await?;
                        Ok::<_, EngineError>(Some((s, full, at.elapsed())))
                    }
                }
            };
            let (next, previous) = tokio::join!(next, previous);
            let recorded = previous?;
            let released = recorded.is_some();
            if let Some((s, full, took)) = recorded {
                // A batch's time runs from its claim to its record: the
                // span its lease must cover.
                if full {
                    size = next_batch(size, took, self.engine.lease, self.engine.batch);
                }
                // The receiver is gone only if the run was dropped.
                let _ = progress.send(s.done + s.failed);
                stats += s;
            }
            match next? {
                Some(e) => {
                    let full = e.runs.len() == limit && at_size;
                    in_hand = Some((e, full));
                }
                // Nothing was runnable while the batch before was recorded:
                // its record may have made its dependents runnable.
                None if released && limit > 0 => {}
                None => return Ok(stats),
            }
        }
    }

    async fn run_batch(&self, batch: Vec<QueuedOperation>) -> Result<ExecStats, EngineError> {
        let executed = self.execute(batch, std::time::Instant::now()).await?;
        self.record(executed).await
    }

    /// Runs a claimed batch on its systems and notes how each system did;
    /// records nothing in the queue ([`record`](Self::record) does).
    async fn execute(
        &self,
        batch: Vec<QueuedOperation>,
        claimed_at: std::time::Instant,
    ) -> Result<Executed, EngineError> {
        let mut by_system: BTreeMap<SystemId, Vec<QueuedOperation>> = BTreeMap::new();
        for q in batch {
            by_system
                .entry(q.operation.system.clone())
                .or_default()
                .push(q);
        }
        let runs =
            futures::future::join_all(by_system.into_iter().map(|(system, qs)| async move {
                let Some(conn) = self.engine.connectors.get(&system) else {
                    let msg = format!("system {system} is no longer in the configuration");
                    return qs
                        .into_iter()
                        .map(|q| (q, Err((msg.clone(), false))))
                        .collect::<Vec<(QueuedOperation, Outcome)>>();
                };
                let ops: Vec<_> = qs.iter().map(|q| q.operation.clone()).collect();
                let started = std::time::Instant::now();
                let results = conn.apply(&ops).await;
                if !ops.is_empty() {
                    // Per operation: the batch's time shared out.
                    let each = started.elapsed().as_secs_f64() / ops.len() as f64;
                    let h = metrics::histogram!(
                        "tenure_operation_seconds",
                        "system" => system.to_string()
                    );
                    for _ in &ops {
                        h.record(each);
                    }
                }
                qs.into_iter()
                    .enumerate()
                    .map(|(n, q)| {
                        let r: Outcome = match results.get(n) {
                            Some(Ok(())) => Ok(()),
                            Some(Err(e)) => Err((e.to_string(), e.is_transient())),
                            None => Err((
                                format!("system {system} gave no result for this operation"),
                                true,
                            )),
                        };
                        (q, r)
                    })
                    .collect()
            }))
            .await;
        // How each system did in this batch.
        let mut per_system: BTreeMap<&SystemId, (bool, Option<String>)> = BTreeMap::new();
        for (q, r) in runs.iter().flatten() {
            let e = per_system
                .entry(&q.operation.system)
                .or_insert((false, None));
            match r {
                Ok(()) => e.0 = true,
                Err((msg, true)) => {
                    if e.1.is_none() {
                        e.1 = Some(msg.clone());
                    }
                }
                Err((_, false)) => {}
            }
        }
        for (system, (succeeded, failure)) in per_system {
            if self.engine.connectors.contains_key(system) {
                self.note_batch(system, succeeded, if succeeded { None } else { failure })
                    .await?;
            }
        }
        // Counted per system and outcome, once per batch (not per operation).
        let mut counted: BTreeMap<(&SystemId, &'static str), u64> = BTreeMap::new();
        for (q, r) in runs.iter().flatten() {
            let outcome = match r {
                Ok(()) => "done",
                Err((_, true)) => "retry",
                Err((_, false)) => "refused",
            };
            *counted.entry((&q.operation.system, outcome)).or_default() += 1;
        }
        for ((system, outcome), n) in counted {
            metrics::counter!(
                "tenure_operations_total",
                "system" => system.to_string(),
                "outcome" => outcome
            )
            .increment(n);
        }
        Ok(Executed {
            runs: runs.into_iter().flatten().collect(),
            claimed_at,
        })
    }

    /// Records a batch's outcomes in the queue (done, or failed and retried
    /// later, or failed for good), with their audit records, and tells
    /// whoever is to be told about operations that wait for an operator.
    async fn record(&self, executed: Executed) -> Result<ExecStats, EngineError> {
        let mut done = Vec::new();
        let mut transient = Vec::new();
        let mut permanent = Vec::new();
        for (q, r) in &executed.runs {
            match r {
                Ok(()) => done.push(q),
                Err((e, retry)) => {
                    tracing::warn!(operation = q.id, error = %e, transient = retry, "operation failed");
                    if *retry {
                        transient.push((q, e.clone()));
                    } else {
                        permanent.push((q, e.clone()));
                    }
                }
            }
        }
        let now = self.engine.wall.now();
        self.engine
            .store
            .complete(&self.worker, now, &done, &transient, self.retry)
            .await?;
        if !permanent.is_empty() {
            // The system refused: trying the same change again cannot help. It waits,
            // visible in `tenure queue`, until someone fixes the cause and retries it.
            let refuse = RetryPolicy {
                max_attempts: 1,
                ..self.retry
            };
            self.engine
                .store
                .complete(&self.worker, now, &[], &permanent, refuse)
                .await?;
            if self.engine.notifies() {
                let notices = permanent
                    .iter()
                    .map(|(q, e)| {
                        self.engine.system_notice(
                            tenure_core::config::NoticeKind::Failure,
                            q.operation.system.as_str(),
                            &format!("operation-{}", q.id),
                            format!(
                                "{} of {} failed and waits for an operator (`tenure queue --retry-failed`): {e}",
                                q.operation.action.name(),
                                q.operation.account
                            ),
                        )
                    })
                    .collect();
                self.engine.notify(notices).await;
            }
        }
        Ok(ExecStats {
            done: done.len() as u64,
            failed: (transient.len() + permanent.len()) as u64,
        })
    }
}

/// Ends a system's quarantine by hand (an operator who fixed it and does not
/// want to wait for the next probe): its queued operations run again at
/// once. Audited as `system.quarantine_lifted` with the actor and reason,
/// and told as a `quarantine_lifted` notice. A running service sees it at
/// its next round. Errors if the system is unknown or not quarantined.
pub async fn lift_quarantine(
    engine: &Engine,
    actor: &str,
    system: &SystemId,
    reason: &str,
) -> Result<(), EngineError> {
    if reason.trim().is_empty() {
        return Err(EngineError::Invalid(
            "lifting a quarantine needs a reason (--reason)".to_owned(),
        ));
    }
    if !engine.connectors.contains_key(system) {
        return Err(EngineError::UnknownSystem {
            system: system.clone(),
            known: engine.connectors.keys().map(ToString::to_string).collect(),
        });
    }
    let quarantined = engine
        .store
        .system_health()
        .await?
        .into_iter()
        .any(|h| &h.system == system && h.quarantined_since.is_some());
    if !quarantined {
        return Err(EngineError::Invalid(format!(
            "system {system} is not quarantined"
        )));
    }
    let now = engine.wall.now();
    let mut event = engine.event(
        "system.quarantine_lifted",
        format!("system:{system}"),
        format!("lifted by hand: {reason}"),
        serde_json::json!({}),
    );
    actor.clone_into(&mut event.actor);
    engine
        .store
        .set_system_health(&SystemHealth::healthy(system.clone()), vec![event])
        .await?;
    engine
        .notify(vec![engine.system_notice(
            tenure_core::config::NoticeKind::QuarantineLifted,
            system.as_str(),
            &now.timestamp_micros().to_string(),
            format!("quarantine lifted by {actor}: {reason}"),
        )])
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::next_batch;
    use std::time::Duration;

    #[test]
    fn batches_grow_on_fast_systems_and_shrink_on_slow_ones() {
        let lease = Duration::from_secs(30);
        let ms = Duration::from_millis;
        // Fast: doubles up to the maximum.
        assert_eq!(next_batch(500, ms(200), lease, 8000), 1000);
        assert_eq!(next_batch(4000, ms(900), lease, 8000), 8000);
        assert_eq!(next_batch(8000, ms(900), lease, 8000), 8000);
        // Between an eighth and a quarter of the lease: kept.
        assert_eq!(next_batch(2000, Duration::from_secs(5), lease, 8000), 2000);
        // Slow: halved, never below one.
        assert_eq!(next_batch(2000, Duration::from_secs(10), lease, 8000), 1000);
        assert_eq!(next_batch(1, Duration::from_secs(60), lease, 8000), 1);
        // A smaller maximum wins.
        assert_eq!(next_batch(500, ms(1), lease, 300), 300);
    }
}
