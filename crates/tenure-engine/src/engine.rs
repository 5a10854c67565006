//! The engine: a store, a compiled policy, the connectors and a clock.

use crate::clock::Clock;
use crate::error::EngineError;
use crate::executor::{ExecStats, Executor};
use crate::load::load_policy;
use crate::observe::Observation;
use crate::progress::Progress;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tenure_connectors::Connector;
use tenure_core::audit::AuditEvent;
use tenure_core::guard::{GuardVerdict, plan_verdict};
use tenure_core::plan::{DiffInput, PLAN_FORMAT, Plan, diff};
use tenure_core::policy::Policy;
use tenure_core::{Link, SystemId};
use tenure_store::{PlanId, Store};

/// Everything an engine step needs. Cloning it is cheap (the store's pool,
/// the policy, the connectors and the clocks are shared).
#[derive(Clone)]
pub struct Engine {
    /// The store.
    pub store: Store,
    /// The compiled policy.
    pub policy: Arc<Policy>,
    /// Where the configuration lives (relative paths in it are relative to this).
    pub config_dir: PathBuf,
    /// One connector per configured system.
    pub connectors: BTreeMap<SystemId, Arc<dyn Connector>>,
    /// The clock lifecycle dates are evaluated against (pinned by `--now` in demos and tests).
    pub clock: Arc<dyn Clock>,
    /// Real elapsed time, for leases and retry backoff: a process that died must lose its
    /// claims after the lease however the lifecycle clock is set. Tests may replace it.
    pub wall: Arc<dyn Clock>,
    /// Who acts (recorded in the audit log).
    pub actor: String,
    /// How long a claimed operation stays ours before another process may take it.
    pub lease: std::time::Duration,
    /// How many operations one claim takes at most (each system's lane
    /// starts smaller and grows while its batches run fast: see
    /// [`crate::executor::next_batch`]).
    pub batch: usize,
    /// Turns lifecycle events into notifications, when any are configured.
    pub notifier: Option<Arc<tenure_notify::Notifier>>,
}

/// A plan with what the engine learnt while making it.
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// The mass-change guard's verdict on it.
    pub guard: GuardVerdict,
    /// New links correlation found (stored when the plan is applied).
    pub new_links: Vec<Link>,
    /// Stored links whose account has gone.
    pub stale_links: Vec<(SystemId, tenure_core::AccountKey)>,
    /// What applying this plan records for the next incremental plan.
    pub mark: PlanMark,
}

/// Which people a plan is made for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Everyone, against every account of every system: a full reconciliation
    /// (orphans are found, drift anywhere is corrected).
    #[default]
    Everyone,
    /// The people whose record or status changed, or whose next date came,
    /// since the last applied plan, against their own accounts only. When no
    /// plan was applied yet, or the policy changed since, this is everyone.
    Changed,
    /// These people only, against their own accounts (one person on demand,
    /// an emergency suspend). Applying it does not move the incremental
    /// plans' cursor: they look at these people again if they changed.
    Identities(Vec<tenure_core::IdentityId>),
    /// Everyone, against every account of one system: that system's full
    /// reconciliation (the service runs it on the system's `reconcile`
    /// schedule). Does not move the incremental plans' cursor.
    System(SystemId),
}

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Whose plan.
    pub scope: Scope,
    /// Apply even if the mass-change guard refuses (recorded as an override).
    pub allow_mass_change: bool,
    /// Execute the plan's operations now (otherwise only queue them).
    pub execute: bool,
    /// Queue priority of the plan's operations (claims take higher first).
    pub priority: i32,
    /// Finish work left in the queue before planning (an emergency plan
    /// does not wait for the backlog: its priority puts it first).
    pub finish_queued_first: bool,
}

/// What an applied plan covered, recorded so that the next incremental plan
/// starts where it ends.
#[derive(Debug, Clone, Default)]
pub struct PlanMark {
    /// Identities saved with change stamps up to this one were planned.
    pub upto: i64,
    /// The policy fingerprint they were planned with.
    pub policy: String,
    /// When each identity planned must be looked at again (`None`: nothing scheduled).
    pub due: Vec<(
        tenure_core::IdentityId,
        Option<chrono::DateTime<chrono::Utc>>,
    )>,
    /// Whether everyone was planned.
    pub everyone: bool,
    /// Whether applying the plan records it for incremental plans (not for
    /// a plan of some people named on demand).
    pub moves_cursor: bool,
}

/// What an apply did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Operations left from earlier runs that were finished first.
    pub resumed: ExecStats,
    /// The plan applied (none when there was nothing to do).
    pub plan_id: Option<PlanId>,
    /// Operations of this plan executed.
    pub executed: ExecStats,
    /// Operations still queued (waiting for a retry) after this run.
    pub still_queued: u64,
    /// Operations that failed for good and need attention.
    pub failed: u64,
}

impl Engine {
    /// Opens the configuration directory and the store, and builds the connectors.
    pub async fn open(
        config_dir: &Path,
        database_url: &str,
        clock: Arc<dyn Clock>,
        actor: String,
    ) -> Result<Engine, EngineError> {
        let policy = Arc::new(load_policy(config_dir)?);
        // Paths in the configuration are relative to its directory, wherever Tenure runs from.
        let config_dir =
            std::path::absolute(config_dir).map_err(|source| EngineError::ConfigRead {
                path: config_dir.display().to_string(),
                source,
            })?;
        let config_dir = config_dir.as_path();
        let store = Store::open(database_url).await?;
        let cfg = policy.config();
        let notifier = if cfg.notifications.is_some()
            || !cfg.webhooks.is_empty()
            || cfg.security_events.is_some()
        {
            Some(Arc::new(tenure_notify::Notifier::new(cfg, config_dir)?))
        } else {
            None
        };
        let wall: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let mut connectors: BTreeMap<SystemId, Arc<dyn Connector>> = BTreeMap::new();
        for s in &policy.config().systems {
            let mut c: Arc<dyn Connector> =
                Arc::from(tenure_connectors::build(&s.item, config_dir).await?);
            // A system that archives through a webhook (checked to exist by compile).
            if let Some(id) = &s.item.archive_webhook
                && let Some(w) = cfg
                    .webhooks
                    .iter()
                    .find(|w| w.item.id.as_str() == id.get_ref().as_str())
            {
                let call = tenure_notify::webhook::WebhookCall::new(&w.item, config_dir)?;
                c = Arc::new(crate::archive::WebhookArchive::new(
                    c,
                    call,
                    store.clone(),
                    wall.clone(),
                ));
            }
            connectors.insert(s.item.id.clone(), c);
        }
        Ok(Engine {
            store,
            policy,
            config_dir: config_dir.to_path_buf(),
            connectors,
            clock,
            wall,
            actor,
            lease: std::time::Duration::from_secs(30),
            batch: crate::executor::BATCH,
            notifier,
        })
    }

    /// An audit event by this engine's actor, now.
    pub fn event(
        &self,
        action: &str,
        subject: String,
        reason: String,
        detail: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent {
            at: self.clock.now(),
            actor: self.actor.clone(),
            action: action.to_owned(),
            subject,
            reason,
            detail: detail.to_string(),
        }
    }

    /// Makes a plan for everyone from the current state. Changes nothing.
    pub async fn plan(&self, progress: &dyn Progress) -> Result<Planned, EngineError> {
        self.plan_scoped(Scope::Everyone, progress).await
    }

    /// The scope a plan for `scope` really has: [`Scope::Changed`] only once a
    /// plan was applied with the current policy.
    pub async fn effective_scope(&self, scope: &Scope) -> Result<Scope, EngineError> {
        if *scope != Scope::Changed {
            return Ok(scope.clone());
        }
        let cursor = self.store.plan_cursor().await?;
        Ok(if cursor.policy == self.policy.fingerprint() {
            Scope::Changed
        } else {
            Scope::Everyone
        })
    }

    /// Makes a plan for the people `scope` says. Changes nothing.
    pub async fn plan_scoped(
        &self,
        scope: Scope,
        progress: &dyn Progress,
    ) -> Result<Planned, EngineError> {
        let now = self.clock.now();
        // Read before the identities: whatever is saved later is planned next time.
        let upto = self.store.change_stamp().await?;
        let effective = self.effective_scope(&scope).await?;
        // Everyone's plan is made a slice of people at a time (`read_and_diff`):
        // their desired state is never all held at once.
        let (mut obs, population, sliced) = match &effective {
            Scope::Everyone => {
                let (obs, d) = Observation::read_and_diff(self, None, progress).await?;
                (obs, None, Some(d))
            }
            Scope::System(system) => {
                if !self.connectors.contains_key(system) {
                    return Err(EngineError::UnknownSystem {
                        system: system.clone(),
                        known: self.connectors.keys().map(ToString::to_string).collect(),
                    });
                }
                let (obs, d) = Observation::read_and_diff(self, Some(system), progress).await?;
                (obs, None, Some(d))
            }
            Scope::Identities(ids) => {
                let people = self.store.identities_by_id(ids).await?;
                if let Some(missing) = ids.iter().find(|id| !people.iter().any(|p| p.id() == *id)) {
                    return Err(EngineError::UnknownIdentity(missing.clone()));
                }
                let obs = Observation::read_for(self, people, progress).await?;
                (obs, Some(self.store.count_links().await?), None)
            }
            Scope::Changed => {
                let cursor = self.store.plan_cursor().await?;
                progress.start("reading identities that changed", None);
                let people = self
                    .store
                    .identities_to_plan(cursor.change_seq, upto, now)
                    .await?;
                progress.finish();
                let obs = Observation::read_for(self, people, progress).await?;
                (obs, Some(self.store.count_links().await?), None)
            }
        };
        progress.start("planning", None);
        let d = match sliced {
            Some(d) => d,
            None => {
                let systems = self.policy.system_infos(&obs.capabilities);
                let readable: BTreeMap<_, _> = systems
                    .into_iter()
                    .filter(|(id, _)| obs.actual.systems.contains_key(id))
                    .collect();
                diff(&DiffInput {
                    systems: &readable,
                    desired: &obs.desired,
                    actual: &obs.actual,
                    links: &obs.links,
                })
            }
        };
        // An orphan policy never acts on an account correlation could not decide:
        // it may well be a real person's account.
        let ambiguous: std::collections::BTreeSet<(&SystemId, &tenure_core::AccountKey)> = obs
            .findings
            .iter()
            .filter_map(|f| match f {
                tenure_core::plan::Finding::Ambiguous {
                    system, account, ..
                } => Some((system, account)),
                _ => None,
            })
            .collect();
        let mut d = d;
        // What remains needs neither desired nor actual state: free them now,
        // before the plan grows (a big plan is the biggest thing in memory).
        let existing: u64 = population.unwrap_or_else(|| {
            obs.actual
                .systems
                .values()
                .map(|s| s.accounts.len() as u64)
                .sum()
        });
        // Systems read this time: only their queued work can be judged.
        let read: std::collections::BTreeSet<String> =
            obs.actual.systems.keys().map(ToString::to_string).collect();
        drop(std::mem::take(&mut obs.desired));
        drop(std::mem::take(&mut obs.actual));
        d.operations
            .retain(|o| o.identity.is_some() || !ambiguous.contains(&(&o.system, &o.account)));
        let (pending, superseded) = self.superseded(&obs, &read, &d.operations).await?;
        let mut queued = Vec::new();
        if !pending.is_empty() {
            d.operations.retain(|o| {
                let keep = !pending.contains(&o.key());
                if !keep {
                    queued.push(tenure_core::plan::Finding::AlreadyQueued {
                        system: o.system.clone(),
                        account: o.account.clone(),
                        action: o.action.name().to_owned(),
                    });
                }
                keep
            });
        }
        let mut findings = obs.findings.clone();
        findings.extend(queued);
        findings.extend(d.findings);
        findings.sort();
        // One label per identity, not per operation (a joiner has several).
        let concerned: std::collections::BTreeSet<&tenure_core::IdentityId> = d
            .operations
            .iter()
            .filter_map(|o| o.identity.as_ref())
            .collect();
        let labels = concerned
            .into_iter()
            .filter_map(|id| {
                obs.identity(id)
                    .map(|i| (id.clone(), crate::observe::label(i)))
            })
            .collect();
        let system_names = self
            .policy
            .config()
            .systems
            .iter()
            .map(|s| {
                (
                    s.item.id.clone(),
                    self.policy
                        .system_name(&s.item.id)
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        let records: Vec<_> = obs
            .identities
            .iter()
            .map(|i| (&i.record, &i.source, i.suspended))
            .collect();
        let mut f = tenure_core::plan::Fingerprinter::default();
        f.part("policy", self.policy.fingerprint());
        f.part("identities", &records);
        f.part("links", &obs.links);
        f.part("operations", &d.operations);
        if obs.partial {
            f.part("changed_only", &true);
        }
        if let Scope::Identities(ids) = &effective {
            f.part("identities", ids);
        }
        if let Scope::System(system) = &effective {
            f.part("system", system);
        }
        let fp = f.finish();
        let plan = Plan {
            format: PLAN_FORMAT,
            fingerprint: fp,
            made_at: now,
            today: now.date_naive(),
            operations: d.operations,
            findings,
            labels,
            system_names,
            changed_only: effective == Scope::Changed,
            identities: match &effective {
                Scope::Identities(ids) => ids.clone(),
                _ => Vec::new(),
            },
            superseded,
        };
        // The guard weighs a plan against every account Tenure manages (`existing`,
        // counted above), not only those an incremental plan read.
        let mark = PlanMark {
            upto,
            policy: self.policy.fingerprint().to_owned(),
            due: obs
                .identities
                .iter()
                .map(|i| {
                    let grants: Vec<&tenure_core::policy::Grant> =
                        obs.grants.get(i.id()).into_iter().flatten().collect();
                    (i.id().clone(), self.policy.next_due(i, &grants, now))
                })
                .collect(),
            everyone: !obs.partial,
            moves_cursor: matches!(effective, Scope::Everyone | Scope::Changed),
        };
        let guard = plan_verdict(&self.policy.config().guard, &plan, existing);
        progress.finish();
        Ok(Planned {
            plan,
            guard,
            new_links: obs.new_links,
            stale_links: obs.stale_links,
            mark,
        })
    }

    /// Finishes queued work, brings lifecycle statuses up to date, makes a plan
    /// (or checks a saved one still holds), and executes it.
    /// With `execute` false the plan is only queued, for `tenure work` or the
    /// service to execute (several processes may share one PostgreSQL queue).
    pub async fn apply(
        &self,
        saved: Option<&Plan>,
        allow_mass_change: bool,
        execute: bool,
        progress: &dyn Progress,
    ) -> Result<(Planned, ApplyReport), EngineError> {
        self.apply_scoped(Scope::Everyone, saved, allow_mass_change, execute, progress)
            .await
    }

    /// [`Engine::apply`] for the people `scope` says (a saved plan's own
    /// scope wins: it is made again the way it was made).
    pub async fn apply_scoped(
        &self,
        scope: Scope,
        saved: Option<&Plan>,
        allow_mass_change: bool,
        execute: bool,
        progress: &dyn Progress,
    ) -> Result<(Planned, ApplyReport), EngineError> {
        self.apply_with(
            ApplyOptions {
                scope,
                allow_mass_change,
                execute,
                priority: 0,
                finish_queued_first: execute,
            },
            saved,
            progress,
        )
        .await
    }

    /// Applies with every option spelt out.
    pub async fn apply_with(
        &self,
        options: ApplyOptions,
        saved: Option<&Plan>,
        progress: &dyn Progress,
    ) -> Result<(Planned, ApplyReport), EngineError> {
        let ApplyOptions {
            scope,
            allow_mass_change,
            execute,
            priority,
            finish_queued_first,
        } = options;
        let scope = match saved {
            Some(p) if !p.identities.is_empty() => Scope::Identities(p.identities.clone()),
            Some(p) if p.changed_only => Scope::Changed,
            Some(_) => Scope::Everyone,
            None => scope,
        };
        let mut report = ApplyReport::default();
        if finish_queued_first {
            report.resumed = self.execute(progress).await?;
        }
        match self.effective_scope(&scope).await? {
            Scope::Everyone => crate::import::refresh(self).await?,
            Scope::Changed => crate::import::refresh_changed(self).await?,
            Scope::Identities(ids) => crate::import::refresh_identities(self, &ids).await?,
            Scope::System(_) => crate::import::refresh(self).await?,
        };
        let planned = self.plan_scoped(scope, progress).await?;
        if let Some(saved) = saved
            && saved.fingerprint != planned.plan.fingerprint
        {
            return Err(EngineError::StaleSavedPlan {
                saved: saved.fingerprint.clone(),
                current: planned.plan.fingerprint.clone(),
            });
        }
        let mut events = Vec::new();
        if planned.guard.blocked {
            if !allow_mass_change {
                self.store
                    .append_audit(vec![self.event(
                        "guard.refused",
                        format!("plan:{}", planned.plan.fingerprint),
                        planned.guard.to_string(),
                        serde_json::json!({ "verdict": planned.guard }),
                    )])
                    .await?;
                return Err(EngineError::MassChange {
                    verdict: planned.guard.clone(),
                    would: planned.plan.counts_text(),
                });
            }
            events.push(self.event(
                "guard.override",
                format!("plan:{}", planned.plan.fingerprint),
                format!("mass change allowed by {}: {}", self.actor, planned.guard),
                serde_json::json!({ "verdict": planned.guard }),
            ));
        }
        // Links: correlation's new matches, and the accounts this plan creates.
        let mut links = planned.new_links.clone();
        for op in &planned.plan.operations {
            if let (tenure_core::Action::CreateAccount { .. }, Some(id)) =
                (&op.action, &op.identity)
            {
                links.push(Link {
                    system: op.system.clone(),
                    account: op.account.clone(),
                    identity: id.clone(),
                });
            }
        }
        if !links.is_empty() || !planned.stale_links.is_empty() {
            self.store.save_links(&links, &planned.stale_links).await?;
        }
        // Not held while the queue runs (one per account created: 300,000
        // in a first apply at 100,000 people).
        drop(links);
        if planned.plan.operations.is_empty() {
            if !planned.plan.superseded.is_empty() {
                events.extend(self.cancel_events(&planned.plan));
                self.store
                    .cancel_superseded(&planned.plan.superseded, std::mem::take(&mut events))
                    .await?;
            }
            if !events.is_empty() {
                self.store.append_audit(events).await?;
            }
            self.record_planned(&planned.mark).await?;
            let counts = self.store.queue_counts().await?;
            report.still_queued = counts.queued + counts.running;
            report.failed = counts.failed;
            return Ok((planned, report));
        }
        events.push(self.event(
            "plan.enqueued",
            format!("plan:{}", planned.plan.fingerprint),
            format!("{} operations", planned.plan.operations.len()),
            serde_json::json!({
                "counts": planned.plan.counts(),
                "findings": planned.plan.findings.len(),
                "saved_plan": saved.is_some(),
            }),
        ));
        events.extend(self.cancel_events(&planned.plan));
        let id = self
            .store
            .enqueue_plan(&planned.plan, priority, events)
            .await?;
        report.plan_id = Some(id);
        self.record_planned(&planned.mark).await?;
        if execute {
            report.executed = self.execute(progress).await?;
        }
        let counts = self.store.queue_counts().await?;
        report.still_queued = counts.queued + counts.running;
        report.failed = counts.failed;
        Ok((planned, report))
    }

    /// Work already queued that a plan leaves out (the same change waits in
    /// the queue), and the accounts whose queued work the plan replaces:
    /// where something waits that the plan, made from what the system holds
    /// now, does not find needed (a rehire or an HR correction came before a
    /// leaver's queued steps ran), everything waiting on that account is
    /// cancelled when the plan is applied and the plan's own operations take
    /// its place. Only systems read for this plan are judged, and an account
    /// with an operation running is left as it is (the next plan sees its
    /// outcome).
    async fn superseded(
        &self,
        obs: &Observation,
        read: &std::collections::BTreeSet<String>,
        operations: &[tenure_core::Operation],
    ) -> Result<
        (
            std::collections::BTreeSet<String>,
            Vec<tenure_core::plan::Superseded>,
        ),
        EngineError,
    > {
        use std::collections::{BTreeMap, BTreeSet};
        let waiting = if obs.partial {
            let ids: Vec<tenure_core::IdentityId> =
                obs.identities.iter().map(|i| i.id().clone()).collect();
            self.store.pending_operations(Some(&ids)).await?
        } else {
            self.store.pending_operations(None).await?
        };
        if waiting.is_empty() {
            return Ok((BTreeSet::new(), Vec::new()));
        }
        let needed: BTreeSet<String> = operations.iter().map(|o| o.key()).collect();
        let account = |p: &tenure_store::PendingOperation| (p.system.clone(), p.account.clone());
        let busy: BTreeSet<(String, String)> =
            waiting.iter().filter(|p| p.running).map(account).collect();
        let stale: BTreeSet<(String, String)> = waiting
            .iter()
            .filter(|p| read.contains(&p.system) && !needed.contains(&p.key))
            .map(account)
            .filter(|a| !busy.contains(a))
            .collect();
        let mut superseded: BTreeMap<(String, String), tenure_core::plan::Superseded> =
            BTreeMap::new();
        let mut pending = BTreeSet::new();
        for p in &waiting {
            let a = account(p);
            if !stale.contains(&a) {
                pending.insert(p.key.clone());
                continue;
            }
            let (Ok(system), Ok(key)) = (
                tenure_core::SystemId::new(p.system.clone()),
                tenure_core::AccountKey::new(p.account.clone()),
            ) else {
                pending.insert(p.key.clone());
                continue;
            };
            let entry = superseded
                .entry(a)
                .or_insert_with(|| tenure_core::plan::Superseded {
                    system,
                    account: key,
                    identity: p
                        .identity
                        .as_ref()
                        .and_then(|i| tenure_core::IdentityId::new(i.clone()).ok()),
                    actions: Vec::new(),
                });
            entry.actions.push(p.action.clone());
        }
        Ok((pending, superseded.into_values().collect()))
    }

    /// The audit records of cancelling the queued work a plan supersedes.
    fn cancel_events(&self, plan: &Plan) -> Vec<AuditEvent> {
        plan.superseded
            .iter()
            .map(|s| {
                self.event(
                    "operation.cancelled",
                    match &s.identity {
                        Some(id) => format!("identity:{id}"),
                        None => format!("account:{}/{}", s.system, s.account),
                    },
                    format!(
                        "superseded by plan {}: {} on {}/{} no longer what policy wants",
                        plan.fingerprint,
                        s.actions.join(", "),
                        s.system,
                        s.account
                    ),
                    serde_json::json!({ "system": s.system, "account": s.account, "actions": s.actions }),
                )
            })
            .collect()
    }

    async fn record_planned(&self, mark: &PlanMark) -> Result<(), EngineError> {
        if !mark.moves_cursor {
            return Ok(());
        }
        self.store
            .record_planned(mark.upto, &mark.policy, &mark.due, mark.everyone)
            .await?;
        Ok(())
    }

    /// Executes queued operations until none is runnable now.
    pub async fn execute(&self, progress: &dyn Progress) -> Result<ExecStats, EngineError> {
        std::sync::Arc::new(Executor::new(self))
            .run_until_idle(progress)
            .await
    }
}
