//! Why one person has what they have: the trace of policy evaluation for one
//! identity, from the source record through the lifecycle status, every rule
//! (matched or not), the grants, the roles reached (with the path through
//! nested roles) to what each system must hold, or the deprovisioning step in
//! force. `tenure plan --identity` and `tenure apply --identity` print it
//! before the plan (like a "provision on demand" preview).
//!
//! Made by [`crate::policy::Policy::trace`]; pure, `now` is a parameter.
//! Rendered for people by [`crate::render::trace_text`].

use crate::identity::{IdentityRecord, LifecycleStatus};
use crate::ids::{EntitlementName, IdentityId, PolicyId, RoleId, RuleId, SourceId, SystemId};
use crate::plan::{Reason, StepAction};
use crate::policy::EvalError;
use crate::state::Desired;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The trace of policy evaluation for one identity at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// Whose.
    pub identity: IdentityId,
    /// The source authoritative for them.
    pub source: SourceId,
    /// The moment evaluated.
    pub at: DateTime<Utc>,
    /// What the source says (the attributes rules see).
    pub record: IdentityRecord,
    /// The lifecycle status at `at`.
    pub status: LifecycleStatus,
    /// Why that status (`start date 2026-12-01 not reached`, …).
    pub status_why: String,
    /// Whether rules and grants were evaluated: they are for active people
    /// and for leavers whose first deprovisioning step is not due yet; for
    /// anyone else `status_why` says what decides instead.
    pub rules_evaluated: bool,
    /// Every rule in configuration order.
    pub rules: Vec<RuleTrace>,
    /// The person's grants (approved requests, manual grants).
    pub grants: Vec<GrantTrace>,
    /// Every role reached, in id order, with each path that reaches it.
    pub roles: Vec<RoleTrace>,
    /// The deprovisioning policy and its steps, for a leaver or someone with
    /// an end date.
    pub deprovisioning: Option<DeprovisioningTrace>,
    /// A legal hold is in force: nothing is deleted.
    pub legal_hold: bool,
    /// Evaluation failed: the person's accounts are left exactly as they are.
    pub error: Option<EvalError>,
    /// What each system must hold, in system id order (empty when evaluation failed).
    pub systems: Vec<SystemTrace>,
}

/// One rule's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTrace {
    /// The rule.
    pub id: RuleId,
    /// Its condition, as written.
    pub when: String,
    /// Whether it held; `None` when it was not evaluated or failed.
    pub matched: Option<bool>,
    /// Why evaluating it failed.
    pub error: Option<String>,
    /// The roles it gives.
    pub roles: Vec<RoleId>,
}

/// One grant and whether it is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTrace {
    /// The role granted.
    pub role: RoleId,
    /// Why the grant exists.
    pub reason: String,
    /// From when.
    pub valid_from: Option<DateTime<Utc>>,
    /// Until when.
    pub valid_until: Option<DateTime<Utc>>,
    /// Whether it is in force at the trace's moment.
    pub in_force: bool,
}

/// A role reached, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleTrace {
    /// The role.
    pub role: RoleId,
    /// Each rule or grant that reaches it, with the roles from the one given
    /// down to this one (`rule sales → role sales-rep → role staff`).
    pub via: Vec<Reason>,
    /// What the role gives itself: accounts on systems, and entitlements.
    pub gives: Vec<RoleGift>,
}

/// Something one role gives directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGift {
    /// The system.
    pub system: SystemId,
    /// The entitlement (none: an account only).
    pub entitlement: Option<EntitlementName>,
}

/// The deprovisioning policy that applies to a leaver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeprovisioningTrace {
    /// The policy (`default-immediate` when none matched).
    pub policy: PolicyId,
    /// The end date.
    pub end_date: Option<NaiveDate>,
    /// Its steps, in order.
    pub steps: Vec<StepTrace>,
}

/// One deprovisioning step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTrace {
    /// What it does.
    pub action: StepAction,
    /// When it is due.
    pub at: DateTime<Utc>,
    /// Whether it is due at the trace's moment.
    pub due: bool,
}

/// What one system must hold for the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemTrace {
    /// The system.
    pub system: SystemId,
    /// Its display name.
    pub name: String,
    /// The account key, attributes and entitlements with their reasons, or
    /// the restriction (disabled, stripped, deleted) and why.
    pub desired: Desired,
}

impl Trace {
    /// Applies a legal hold as plans do (see
    /// [`crate::state::DesiredState::hold`]): where policy would delete, the
    /// account stays, disabled and stripped.
    pub fn hold(&mut self) {
        self.legal_hold = true;
        for s in &mut self.systems {
            s.desired.hold();
        }
    }
}

/// Why an identity has `status` on `today`, in words.
pub(crate) fn status_why(
    record: &IdentityRecord,
    status: LifecycleStatus,
    today: NaiveDate,
) -> String {
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string());
    match status {
        LifecycleStatus::Pending => format!(
            "start date {} not reached: no access until then",
            date(record.start_date).unwrap_or_default()
        ),
        LifecycleStatus::Suspended => {
            if record.start_date.is_some_and(|s| s > today) {
                "suspended by an operator (and not started yet): every account disabled".into()
            } else {
                "suspended by an operator: every account disabled, entitlements kept".into()
            }
        }
        LifecycleStatus::Leaver => format!(
            "end date {} reached: deprovisioning as its policy says",
            date(record.end_date).unwrap_or_default()
        ),
        LifecycleStatus::Deleted => "deleted: every account deleted".into(),
        LifecycleStatus::Active => {
            let mut s = match record.start_date {
                Some(d) => format!("started on {d}"),
                None => "no start date".to_owned(),
            };
            if let Some(end) = record.end_date {
                s.push_str(&format!("; leaves on {end}"));
            }
            s
        }
    }
}
