//! The service's scheduler: what `tenure serve` does on every tick.
//!
//! One [`Scheduler::tick`] is: import every source file that changed since
//! it was last seen; plan for the people who changed or whose dates came
//! (an incremental plan, queued); run every full reconciliation whose cron
//! time came (one system at a time, its next time kept in the store, so
//! schedules survive restarts); and execute the queue until nothing is
//! runnable. A step that fails is reported in the tick's outcome and tried
//! again on the next tick; it never stops the others. All times come from the
//! engine's clocks (`clock` for lifecycle dates, `wall` for schedules), so
//! tests move time instead of sleeping.

use crate::engine::{ApplyOptions, Engine, Scope};
use crate::error::EngineError;
use crate::executor::ExecStats;
use crate::progress::NoProgress;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use tenure_core::{SourceId, SystemId};

/// What one tick did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TickReport {
    /// Sources imported, with what their import found (kind → count).
    pub imported: Vec<(SourceId, std::collections::BTreeMap<String, usize>)>,
    /// Operations queued by the incremental plan.
    pub planned: usize,
    /// Systems reconciled in full, with the operations queued for each.
    pub reconciled: Vec<(SystemId, usize)>,
    /// Operations executed.
    pub executed: ExecStatsReport,
    /// Notifications sent (delivered) this round.
    pub notified: u64,
    /// What went wrong (each step is tried again next tick).
    pub errors: Vec<String>,
}

/// [`ExecStats`], serialisable.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ExecStatsReport {
    /// Confirmed.
    pub done: u64,
    /// Failed (queued again or failed for good).
    pub failed: u64,
}

impl From<ExecStats> for ExecStatsReport {
    fn from(s: ExecStats) -> Self {
        ExecStatsReport {
            done: s.done,
            failed: s.failed,
        }
    }
}

/// A source file's signature: its length and modification time.
type Signature = (u64, Option<std::time::SystemTime>);

/// The scheduler of one service process.
pub struct Scheduler<'a> {
    engine: &'a Engine,
    /// Source files as last seen (a file is imported when this changes).
    seen: Mutex<HashMap<SourceId, Signature>>,
    /// The fingerprint of the last plan the guard refused: not tried again
    /// (nor audited again) until something changes.
    refused: Mutex<Option<String>>,
    /// Sends notifications, when any are configured.
    dispatcher: Option<tenure_notify::Dispatcher>,
}

fn reconcile_schedule(system: &SystemId) -> String {
    format!("reconcile:{system}")
}

impl<'a> Scheduler<'a> {
    /// A scheduler over `engine`.
    pub fn new(engine: &'a Engine) -> Self {
        Scheduler {
            engine,
            seen: Mutex::new(HashMap::new()),
            refused: Mutex::new(None),
            dispatcher: None,
        }
    }

    /// A scheduler that also delivers the notifications due on every round.
    pub fn with_dispatcher(mut self, dispatcher: tenure_notify::Dispatcher) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// One round of work. Never fails as a whole: see [`TickReport::errors`].
    pub async fn tick(&self) -> TickReport {
        let mut report = TickReport::default();
        let started = self.engine.wall.now();
        if let Err(e) = self.import_changed_sources(&mut report).await {
            report.errors.push(format!("watching sources: {e}"));
        }
        let mut planned = None;
        match self.plan_changes().await {
            Ok((n, plan)) => {
                report.planned = n;
                planned = plan;
            }
            Err(e) => report.errors.push(format!("planning what changed: {e}")),
        }
        if let Err(e) = self.reconcile_due(&mut report).await {
            report.errors.push(format!("reconciliation: {e}"));
        }
        match self.engine.execute(&NoProgress).await {
            Ok(s) => report.executed = s.into(),
            Err(e) => report.errors.push(format!("executing the queue: {e}")),
        }
        if let Some(plan) = planned
            && let Err(e) = self.observe_time_to_revoke(plan, started).await
        {
            report.errors.push(format!("measuring time to revoke: {e}"));
        }
        if let Some(d) = &self.dispatcher {
            match tenure_notify::deliver_due(&self.engine.store, self.engine.wall.now(), d, 500)
                .await
            {
                Ok(stats) => report.notified = stats.delivered,
                Err(e) => report.errors.push(format!("delivering notifications: {e}")),
            }
        }
        for e in &report.errors {
            tracing::error!(error = %e, "service tick");
        }
        report
    }

    async fn import_changed_sources(&self, report: &mut TickReport) -> Result<(), EngineError> {
        let cfg = self.engine.policy.config();
        for src in cfg.sources.iter().map(|s| &s.item) {
            let Some(path) = &src.path else { continue };
            let path = self.engine.config_dir.join(path);
            let Ok(meta) = std::fs::metadata(&path) else {
                // Not there yet: an export being written, or a misconfiguration
                // `tenure check` does not catch. Say so once per tick.
                report.errors.push(format!(
                    "source {}: {} cannot be read",
                    src.id,
                    path.display()
                ));
                continue;
            };
            let signature = (meta.len(), meta.modified().ok());
            let known = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&src.id)
                .copied();
            if known == Some(signature) {
                continue;
            }
            let outcome =
                crate::import::import(self.engine, Some(src.id.as_str()), None, false).await;
            // Seen either way: a refused or malformed file is not retried (nor
            // audited again) every tick, only once it changes.
            self.seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(src.id.clone(), signature);
            match outcome {
                Ok(r) => report.imported.push((
                    src.id.clone(),
                    r.classification
                        .counts()
                        .into_iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v))
                        .collect(),
                )),
                Err(e) => report.errors.push(format!(
                    "source {}: import of {}: {e}",
                    src.id,
                    path.display()
                )),
            }
        }
        Ok(())
    }

    /// Time to revoke, from the tick that learnt of a leaver to each
    /// disable or delete its system confirmed (in `tenure_time_to_revoke_seconds`).
    async fn observe_time_to_revoke(
        &self,
        plan: tenure_store::PlanId,
        known: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), EngineError> {
        let h = metrics::histogram!("tenure_time_to_revoke_seconds", "path" => "lifecycle");
        for op in self.engine.store.operations(Some(plan)).await? {
            if op.operation.action.is_deprovisioning()
                && let Some(done) = op.done_at
            {
                h.record((done - known).as_seconds_f64().max(0.0));
            }
        }
        Ok(())
    }

    /// Plans for what changed and queues it; returns the operations queued
    /// and the plan.
    async fn plan_changes(&self) -> Result<(usize, Option<tenure_store::PlanId>), EngineError> {
        let planned = self.engine.plan_scoped(Scope::Changed, &NoProgress).await?;
        if planned.plan.operations.is_empty() && planned.mark.due.is_empty() {
            return Ok((0, None));
        }
        if planned.guard.blocked {
            let mut refused = self
                .refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if refused.as_deref() == Some(planned.plan.fingerprint.as_str()) {
                return Ok((0, None));
            }
            *refused = Some(planned.plan.fingerprint.clone());
        }
        let (planned, report) = self
            .engine
            .apply_with(
                ApplyOptions {
                    scope: Scope::Changed,
                    allow_mass_change: false,
                    execute: false,
                    priority: 0,
                    finish_queued_first: false,
                },
                None,
                &NoProgress,
            )
            .await?;
        Ok((planned.plan.operations.len(), report.plan_id))
    }

    /// When each system with a schedule is reconciled next (recorded now if
    /// it never was).
    pub async fn next_reconciliations(
        &self,
    ) -> Result<Vec<(SystemId, chrono::DateTime<chrono::Utc>)>, EngineError> {
        let now = self.engine.wall.now();
        let mut out = Vec::new();
        for system in self.engine.policy.reconciled_systems() {
            let name = reconcile_schedule(system);
            let next = match self.engine.store.schedule_next(&name).await? {
                Some(t) => t,
                None => {
                    let Some(t) = self.engine.policy.next_reconcile(system, now) else {
                        continue;
                    };
                    self.engine.store.set_schedule(&name, t, None).await?;
                    t
                }
            };
            out.push((system.clone(), next));
        }
        Ok(out)
    }

    async fn reconcile_due(&self, report: &mut TickReport) -> Result<(), EngineError> {
        let now = self.engine.wall.now();
        for (system, next) in self.next_reconciliations().await? {
            if next > now {
                continue;
            }
            let outcome = self
                .engine
                .apply_with(
                    ApplyOptions {
                        scope: Scope::System(system.clone()),
                        allow_mass_change: false,
                        execute: false,
                        priority: 0,
                        finish_queued_first: false,
                    },
                    None,
                    &NoProgress,
                )
                .await;
            let text = match &outcome {
                Ok((p, _)) => format!("{} operations queued", p.plan.operations.len()),
                Err(e) => format!("failed: {e}"),
            };
            // The next run is after now, not after the missed one: a service
            // that was down runs a missed reconciliation once, not once per miss.
            let after = self
                .engine
                .policy
                .next_reconcile(&system, now)
                .unwrap_or(now + chrono::Duration::days(1));
            self.engine
                .store
                .set_schedule(&reconcile_schedule(&system), after, Some((now, &text)))
                .await?;
            match outcome {
                Ok((p, _)) => report
                    .reconciled
                    .push((system.clone(), p.plan.operations.len())),
                Err(e) => report
                    .errors
                    .push(format!("reconciling system {system}: {e}")),
            }
        }
        Ok(())
    }
}
