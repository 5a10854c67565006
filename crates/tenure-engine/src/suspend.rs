//! Emergency suspend and resume: one person disabled everywhere at once,
//! ahead of everything else in the queue, and the confirmation of each
//! system reported as it comes.
//!
//! A suspend sets the identity's `suspended` flag (audited with the actor and
//! the reason), plans for that person alone (every enabled account is
//! disabled, entitlements are kept so that a resume restores access as it
//! was), queues the plan at [`SUSPEND_PRIORITY`] without waiting for the
//! backlog, and executes it: every system has its own lane, so all systems
//! work at the same time. A resume clears the flag and plans the same way.

use crate::engine::{ApplyOptions, Engine, Scope};
use crate::error::EngineError;
use crate::progress::Progress;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use tenure_core::{IdentityId, SystemId};
use tenure_store::{OpState, PlanId};

/// Queue priority of suspend and resume operations (ordinary plans have 0).
pub const SUSPEND_PRIORITY: i32 = 100;

/// What happened on one system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemOutcome {
    /// The system.
    pub system: SystemId,
    /// Operations planned there.
    pub operations: usize,
    /// Confirmed by the system.
    pub done: usize,
    /// Failed (retried later, or failed for good).
    pub failed: usize,
    /// Still queued (waiting for a retry).
    pub pending: usize,
    /// Seconds from the request to the last confirmation there.
    pub confirmed_after_s: Option<f64>,
    /// Errors, as the system gave them.
    pub errors: Vec<String>,
}

/// What a suspend or resume did.
#[derive(Debug, Clone, Serialize)]
pub struct SuspendReport {
    /// Who.
    pub identity: IdentityId,
    /// Whether the person is suspended now.
    pub suspended: bool,
    /// Whether the flag was already so (the plan then only repairs drift).
    pub unchanged: bool,
    /// When the request was made (wall clock).
    pub requested_at: DateTime<Utc>,
    /// The plan queued (none when every system already matched).
    pub plan_id: Option<i64>,
    /// Per system, in system order.
    pub systems: Vec<SystemOutcome>,
}

impl SuspendReport {
    /// Whether every operation was confirmed.
    pub fn complete(&self) -> bool {
        self.systems
            .iter()
            .all(|s| s.done == s.operations && s.failed == 0)
    }
}

/// Suspends (`suspend` true) or resumes one identity everywhere, and with
/// `execute` waits for every system's confirmation. The audit log names the
/// engine's actor.
pub async fn set_suspended(
    engine: &Engine,
    id: &IdentityId,
    suspend: bool,
    reason: &str,
    execute: bool,
    progress: &dyn Progress,
) -> Result<SuspendReport, EngineError> {
    set_suspended_by(
        engine,
        &engine.actor,
        id,
        suspend,
        reason,
        execute,
        progress,
    )
    .await
}

/// [`set_suspended`], recorded in the audit log as done by `actor` (a
/// service's caller, such as `token:NAME`).
#[allow(clippy::too_many_arguments)]
pub async fn set_suspended_by(
    engine: &Engine,
    actor: &str,
    id: &IdentityId,
    suspend: bool,
    reason: &str,
    execute: bool,
    progress: &dyn Progress,
) -> Result<SuspendReport, EngineError> {
    let requested_at = engine.wall.now();
    let verb = if suspend { "suspend" } else { "resume" };
    if reason.trim().is_empty() {
        return Err(EngineError::Invalid(format!(
            "a {verb} needs a reason (--reason), recorded in the audit log"
        )));
    }
    let identity = engine
        .store
        .identity(id)
        .await?
        .ok_or_else(|| EngineError::UnknownIdentity(id.clone()))?;
    let unchanged = identity.suspended == suspend;
    let mut event = engine.event(
        if suspend {
            "identity.suspended"
        } else {
            "identity.resumed"
        },
        format!("identity:{id}"),
        reason.to_owned(),
        serde_json::json!({ "already": unchanged }),
    );
    actor.clone_into(&mut event.actor);
    if unchanged {
        engine.store.append_audit(vec![event]).await?;
    } else {
        let updated = tenure_core::Identity {
            suspended: suspend,
            ..identity
        };
        engine
            .store
            .save_identities(&[updated], vec![event])
            .await?;
    }
    if !unchanged && engine.notifies() {
        let kind = if suspend {
            tenure_core::config::NoticeKind::Suspended
        } else {
            tenure_core::config::NoticeKind::Resumed
        };
        let key = requested_at.timestamp_micros().to_string();
        if let Some(n) = engine
            .person_notice(kind, id, &key, reason.to_owned())
            .await
        {
            engine.notify(vec![n]).await;
        }
    }
    let (_, report) = engine
        .apply_with(
            ApplyOptions {
                scope: Scope::Identities(vec![id.clone()]),
                // One person, named by an operator: not an accident the
                // guard is for (a refusal here would keep a compromised
                // account open). An override would still be audited.
                allow_mass_change: true,
                execute,
                priority: SUSPEND_PRIORITY,
                finish_queued_first: false,
            },
            None,
            progress,
        )
        .await?;
    let mut systems: BTreeMap<SystemId, SystemOutcome> = BTreeMap::new();
    if let Some(plan) = report.plan_id {
        for op in engine.store.operations(Some(plan)).await? {
            let s = systems
                .entry(op.operation.system.clone())
                .or_insert_with(|| SystemOutcome {
                    system: op.operation.system.clone(),
                    operations: 0,
                    done: 0,
                    failed: 0,
                    pending: 0,
                    confirmed_after_s: None,
                    errors: Vec::new(),
                });
            s.operations += 1;
            match op.state {
                OpState::Done => {
                    s.done += 1;
                    if let Some(at) = op.done_at {
                        let after = (at - requested_at).as_seconds_f64().max(0.0);
                        s.confirmed_after_s =
                            Some(s.confirmed_after_s.map_or(after, |a: f64| a.max(after)));
                    }
                }
                OpState::Failed => s.failed += 1,
                _ => s.pending += 1,
            }
            if op.state != OpState::Done
                && let Some(e) = op.last_error
            {
                s.errors.push(e);
            }
        }
    }
    if suspend {
        for s in systems.values() {
            if let Some(t) = s.confirmed_after_s {
                metrics::histogram!("tenure_time_to_revoke_seconds", "path" => "suspend").record(t);
            }
        }
    }
    Ok(SuspendReport {
        identity: id.clone(),
        suspended: suspend,
        unchanged,
        requested_at,
        plan_id: report.plan_id.map(|PlanId(p)| p),
        systems: systems.into_values().collect(),
    })
}

/// Places (`hold` true) or releases a legal hold on one identity: while held,
/// its accounts are never deleted (deprovisioning stops at disabled and
/// stripped). Audited (`identity.legal_hold`, `identity.legal_hold_released`)
/// with the actor and the reason; the next plan for the person applies it.
pub async fn set_legal_hold(
    engine: &Engine,
    actor: &str,
    id: &IdentityId,
    hold: bool,
    reason: &str,
) -> Result<(), EngineError> {
    if reason.trim().is_empty() {
        return Err(EngineError::Invalid(
            "a legal hold needs a reason (--reason), such as a case reference".to_owned(),
        ));
    }
    if engine.store.identity(id).await?.is_none() {
        return Err(EngineError::UnknownIdentity(id.clone()));
    }
    let mut event = engine.event(
        if hold {
            "identity.legal_hold"
        } else {
            "identity.legal_hold_released"
        },
        format!("identity:{id}"),
        reason.to_owned(),
        serde_json::json!({}),
    );
    actor.clone_into(&mut event.actor);
    let h = tenure_store::LegalHold {
        identity: id.clone(),
        reason: reason.to_owned(),
        actor: actor.to_owned(),
        since: engine.clock.now(),
    };
    engine
        .store
        .set_legal_hold(id, hold.then_some(&h), vec![event])
        .await?;
    Ok(())
}
