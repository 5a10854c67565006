//! Reports: who holds what and why, orphaned accounts, and leavers who still hold anything.
//! Each report reads actual state from the systems at the moment it runs.

use crate::engine::Engine;
use crate::error::EngineError;
use crate::observe::{Observation, label};
use crate::progress::Progress;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tenure_core::plan::{Finding, StepAction};
use tenure_core::state::Desired;

/// One account held by one identity.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccessRow {
    /// Identity id.
    pub identity: String,
    /// Display name.
    pub name: String,
    /// Lifecycle status now.
    pub status: String,
    /// System.
    pub system: String,
    /// Account key.
    pub account: String,
    /// Whether the account is enabled.
    pub enabled: bool,
    /// Entitlements held.
    pub entitlements: Vec<String>,
    /// Why policy gives it (or why it is being taken away).
    pub why: String,
}

/// An account no identity justifies, or one correlation could not decide.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OrphanRow {
    /// System.
    pub system: String,
    /// Account key.
    pub account: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Entitlements held.
    pub entitlements: Vec<String>,
    /// `orphaned`, or `ambiguous: E1, E2`.
    pub finding: String,
}

/// A leaver who still holds an account somewhere.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaverRow {
    /// Identity id.
    pub identity: String,
    /// Display name.
    pub name: String,
    /// Their end date.
    pub end_date: Option<NaiveDate>,
    /// The deprovisioning policy that applies.
    pub policy: String,
    /// System.
    pub system: String,
    /// Account key.
    pub account: String,
    /// Whether it is still enabled.
    pub enabled: bool,
    /// How many entitlements it still holds.
    pub entitlements: usize,
    /// The next step and when it is due.
    pub next_step: Option<(StepAction, DateTime<Utc>)>,
}

fn why(d: &Desired, held: &[String]) -> String {
    let mut reasons: Vec<String> = match d {
        Desired::Account(a) => {
            // Entitlements say why each is held; an account without any says why it exists.
            let mut r: Vec<String> = a
                .entitlements
                .iter()
                .filter(|(e, _)| held.iter().any(|x| x == e.as_str()))
                .flat_map(|(e, why)| why.iter().map(move |w| format!("{e} ← {w}")))
                .collect();
            if r.is_empty() {
                r = a.reasons.iter().map(ToString::to_string).collect();
            }
            r
        }
        Desired::Restricted { reasons, .. } | Desired::Absent { reasons } => {
            reasons.iter().map(ToString::to_string).collect()
        }
    };
    reasons.dedup();
    reasons.join("; ")
}

/// Who holds which account and entitlement on which system, and why.
pub async fn access(
    engine: &Engine,
    progress: &dyn Progress,
) -> Result<Vec<AccessRow>, EngineError> {
    let obs = Observation::read(engine, progress).await?;
    let today = engine.clock.now().date_naive();
    let mut rows = Vec::new();
    for l in &obs.links {
        let Some(acct) = obs
            .actual
            .systems
            .get(&l.system)
            .and_then(|s| s.accounts.get(&l.account))
        else {
            continue;
        };
        let Some(i) = obs.identity(&l.identity) else {
            continue;
        };
        let entitlements: Vec<String> = acct.entitlements.iter().map(ToString::to_string).collect();
        let reason = obs
            .desired
            .identities
            .get(&l.identity)
            .map(|d| why(&d.on(&l.system), &entitlements))
            .unwrap_or_else(|| "policy evaluation failed (see tenure plan)".to_owned());
        rows.push(AccessRow {
            identity: l.identity.to_string(),
            name: label(i),
            status: i.status_on(today).to_string(),
            system: l.system.to_string(),
            account: l.account.to_string(),
            enabled: acct.enabled,
            entitlements,
            why: reason,
        });
    }
    rows.sort_by(|a, b| {
        (&a.identity, &a.system, &a.account).cmp(&(&b.identity, &b.system, &b.account))
    });
    Ok(rows)
}

/// Accounts no identity justifies, and ambiguous ones.
pub async fn orphans(
    engine: &Engine,
    progress: &dyn Progress,
) -> Result<Vec<OrphanRow>, EngineError> {
    let obs = Observation::read(engine, progress).await?;
    let owned: std::collections::BTreeSet<(&tenure_core::SystemId, &tenure_core::AccountKey)> = obs
        .links
        .iter()
        .filter(|l| obs.identity(&l.identity).is_some())
        .map(|l| (&l.system, &l.account))
        .collect();
    let ambiguous: std::collections::BTreeMap<
        (&tenure_core::SystemId, &tenure_core::AccountKey),
        String,
    > = obs
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::Ambiguous {
                system,
                account,
                identities,
            } => {
                let ids: Vec<String> = identities.iter().map(ToString::to_string).collect();
                Some(((system, account), format!("ambiguous: {}", ids.join(", "))))
            }
            _ => None,
        })
        .collect();
    let mut rows = Vec::new();
    for (system, accounts) in &obs.actual.systems {
        for (key, a) in &accounts.accounts {
            if owned.contains(&(system, key)) {
                continue;
            }
            rows.push(OrphanRow {
                system: system.to_string(),
                account: key.to_string(),
                enabled: a.enabled,
                entitlements: a.entitlements.iter().map(ToString::to_string).collect(),
                finding: ambiguous
                    .get(&(system, key))
                    .cloned()
                    .unwrap_or_else(|| "orphaned".to_owned()),
            });
        }
    }
    Ok(rows)
}

/// One account found on a system by [`discover`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveredRow {
    /// The system.
    pub system: String,
    /// The account's key.
    pub account: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// `linked` (a link Tenure already holds), `correlated` (the
    /// correlation rule matches one identity now), `orphaned` or `ambiguous`.
    pub status: String,
    /// The identity it belongs to, or the candidates when ambiguous.
    pub identity: String,
    /// The identity's name.
    pub name: String,
    /// The entitlements (groups) the account holds.
    pub entitlements: Vec<String>,
}

/// Reads every account of one system and correlates them to identities,
/// without changing anything (no link is saved): what a first connection
/// of a system would find.
pub async fn discover(
    engine: &Engine,
    system: &tenure_core::SystemId,
    progress: &dyn Progress,
) -> Result<Vec<DiscoveredRow>, EngineError> {
    if !engine.connectors.contains_key(system) {
        return Err(EngineError::UnknownSystem {
            system: system.clone(),
            known: engine.connectors.keys().map(ToString::to_string).collect(),
        });
    }
    let obs = Observation::read_systems(engine, Some(system), progress).await?;
    let Some(accounts) = obs.actual.systems.get(system) else {
        return Err(EngineError::SystemUnreadable {
            system: system.clone(),
            message: obs.unreadable.get(system).cloned().unwrap_or_default(),
        });
    };
    let fresh: std::collections::BTreeSet<&tenure_core::AccountKey> = obs
        .new_links
        .iter()
        .filter(|l| &l.system == system)
        .map(|l| &l.account)
        .collect();
    let owner: std::collections::BTreeMap<&tenure_core::AccountKey, &tenure_core::IdentityId> = obs
        .links
        .iter()
        .filter(|l| &l.system == system)
        .map(|l| (&l.account, &l.identity))
        .collect();
    let ambiguous: std::collections::BTreeMap<
        &tenure_core::AccountKey,
        &Vec<tenure_core::IdentityId>,
    > = obs
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::Ambiguous {
                system: s,
                account,
                identities,
            } if s == system => Some((account, identities)),
            _ => None,
        })
        .collect();
    let mut rows = Vec::with_capacity(accounts.accounts.len());
    for (key, a) in &accounts.accounts {
        let (status, identity, name) = match (owner.get(key), ambiguous.get(key)) {
            (Some(id), _) => (
                if fresh.contains(key) {
                    "correlated"
                } else {
                    "linked"
                },
                id.to_string(),
                obs.identity(id).map(label).unwrap_or_default(),
            ),
            (None, Some(ids)) => (
                "ambiguous",
                ids.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                String::new(),
            ),
            (None, None) => ("orphaned", String::new(), String::new()),
        };
        rows.push(DiscoveredRow {
            system: system.to_string(),
            account: key.to_string(),
            enabled: a.enabled,
            status: status.to_owned(),
            identity,
            name,
            entitlements: a.entitlements.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(rows)
}

/// Leavers who still hold an account anywhere, with the next step of their deprovisioning.
pub async fn leavers(
    engine: &Engine,
    progress: &dyn Progress,
) -> Result<Vec<LeaverRow>, EngineError> {
    let obs = Observation::read(engine, progress).await?;
    let now = engine.clock.now();
    let today = now.date_naive();
    let mut rows = Vec::new();
    for l in &obs.links {
        let Some(i) = obs.identity(&l.identity) else {
            continue;
        };
        if !i.status_on(today).is_gone() && i.status != tenure_core::LifecycleStatus::Deleted {
            continue;
        }
        let Some(acct) = obs
            .actual
            .systems
            .get(&l.system)
            .and_then(|s| s.accounts.get(&l.account))
        else {
            continue;
        };
        let (policy, steps) = match engine.policy.leaver_schedule(i) {
            Ok(s) => s,
            Err(e) => return Err(EngineError::Invalid(e.to_string())),
        };
        let next_step = steps.into_iter().find(|(_, at)| *at > now);
        rows.push(LeaverRow {
            identity: l.identity.to_string(),
            name: label(i),
            end_date: i.record.end_date,
            policy: policy.to_string(),
            system: l.system.to_string(),
            account: l.account.to_string(),
            enabled: acct.enabled,
            entitlements: acct.entitlements.len(),
            next_step,
        });
    }
    rows.sort_by(|a, b| (&a.identity, &a.system).cmp(&(&b.identity, &b.system)));
    Ok(rows)
}
