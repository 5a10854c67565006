//! A person's lifecycle timeline (`tenure status`): what happened to them
//! (the audit log's records about them), every operation on every system
//! with its state and the rule that caused it, and — for a leaver — the
//! deprovisioning schedule with each step done, due or still to come.

use crate::engine::Engine;
use crate::error::EngineError;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tenure_core::{IdentityId, LifecycleStatus};

/// One event of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// Who acted.
    pub actor: String,
    /// What (`import.leaver`, `identity.suspended`, …).
    pub action: String,
    /// Why.
    pub reason: String,
}

/// One operation on one system.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineStep {
    /// The system.
    pub system: String,
    /// The account.
    pub account: String,
    /// What (`disable_account`, `remove_membership staff`, …).
    pub action: String,
    /// `done`, `queued`, `blocked`, `running` or `failed`.
    pub state: String,
    /// When it was confirmed.
    pub done_at: Option<DateTime<Utc>>,
    /// Failed attempts, and the last error.
    pub attempts: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// The rule, role or policy step that caused it.
    pub why: String,
}

/// A step of the deprovisioning schedule.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduledStep {
    /// The deprovisioning policy.
    pub policy: String,
    /// The step (`disable`, `remove_memberships`, `delete`).
    pub step: String,
    /// When it is due.
    pub due: DateTime<Utc>,
    /// Whether its time has come.
    pub reached: bool,
    /// Systems where the step does something else (`ledger: disable`,
    /// `crm: nothing`), by the policy's per-system overrides.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
}

/// A person's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// The identity.
    pub identity: IdentityId,
    /// The display name.
    pub name: String,
    /// The lifecycle status now.
    pub status: LifecycleStatus,
    /// Whether suspended.
    pub suspended: bool,
    /// The legal hold in force, if any (its accounts are not deleted).
    pub legal_hold: Option<tenure_store::LegalHold>,
    /// Start date.
    pub start_date: Option<NaiveDate>,
    /// End date.
    pub end_date: Option<NaiveDate>,
    /// What happened, oldest first.
    pub events: Vec<TimelineEvent>,
    /// Every operation, oldest first.
    pub operations: Vec<TimelineStep>,
    /// The deprovisioning schedule (leavers only).
    pub schedule: Vec<ScheduledStep>,
    /// Grants (requests approved, grace periods after a move), ended and
    /// revoked ones included: when each access goes.
    pub grants: Vec<TimelineGrant>,
    /// When the service looks at this person again by date alone.
    pub next_due: Option<DateTime<Utc>>,
}

/// A grant on a timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineGrant {
    /// The grant as stored.
    #[serde(flatten)]
    pub grant: tenure_store::StoredGrant,
    /// `pending` (not started), `active`, `ended` or `revoked`.
    pub state: &'static str,
}

/// Builds the timeline of `id` at the engine's `now`.
pub async fn timeline(engine: &Engine, id: &IdentityId) -> Result<Timeline, EngineError> {
    let identity = engine
        .store
        .identity(id)
        .await?
        .ok_or_else(|| EngineError::UnknownIdentity(id.clone()))?;
    let now = engine.clock.now();
    let events = engine
        .store
        .audit_of(&format!("identity:{id}"))
        .await?
        .into_iter()
        .map(|r| TimelineEvent {
            at: r.event.at,
            actor: r.event.actor,
            action: r.event.action,
            reason: r.event.reason,
        })
        .collect();
    let operations = engine
        .store
        .operations_of_identity(id)
        .await?
        .into_iter()
        .map(|q| {
            let op = &q.operation;
            let action = match &op.action {
                tenure_core::Action::AddMembership { entitlement }
                | tenure_core::Action::RemoveMembership { entitlement } => {
                    format!("{} {entitlement}", op.action.name())
                }
                a => a.name().to_owned(),
            };
            TimelineStep {
                system: op.system.to_string(),
                account: op.account.to_string(),
                action,
                state: q.state.as_str().to_owned(),
                done_at: q.done_at,
                attempts: q.attempts,
                last_error: q.last_error.clone(),
                why: op
                    .reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        })
        .collect();
    let grants = engine.store.grants(Some(id)).await?;
    let mut schedule = Vec::new();
    let status = identity.status_on(now.date_naive());
    if identity.record.end_date.is_some()
        && let Ok((policy, steps)) = engine.policy.leaver_schedule(&identity)
    {
        for (step, due) in steps {
            let overrides = engine
                .policy
                .step_overrides(&policy, step)
                .into_iter()
                .map(|(system, instead)| {
                    format!("{system}: {}", instead.map_or("nothing", |a| a.as_str()))
                })
                .collect();
            schedule.push(ScheduledStep {
                policy: policy.to_string(),
                step: step.as_str().to_owned(),
                due,
                reached: due <= now,
                overrides,
            });
        }
    }
    Ok(Timeline {
        identity: id.clone(),
        name: crate::observe::label(&identity),
        status: if identity.status == LifecycleStatus::Deleted {
            LifecycleStatus::Deleted
        } else {
            status
        },
        suspended: identity.suspended,
        legal_hold: engine
            .store
            .legal_holds()
            .await?
            .into_iter()
            .find(|h| &h.identity == id),
        start_date: identity.record.start_date,
        end_date: identity.record.end_date,
        next_due: {
            let live: Vec<&tenure_core::policy::Grant> = grants
                .iter()
                .filter(|g| g.live(now))
                .map(|g| &g.grant)
                .collect();
            engine.policy.next_due(&identity, &live, now)
        },
        grants: grants
            .iter()
            .map(|g| TimelineGrant {
                state: if g.revoked_at.is_some() {
                    "revoked"
                } else if !g.live(now) {
                    "ended"
                } else if g.grant.in_force(now) {
                    "active"
                } else {
                    "pending"
                },
                grant: g.clone(),
            })
            .collect(),
        events,
        operations,
        schedule,
    })
}
