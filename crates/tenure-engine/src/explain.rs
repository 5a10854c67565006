//! "Why does this person have this access?": the trace of policy evaluation
//! for some people (`tenure plan --identity`, `tenure apply --identity`), and
//! `tenure explain IDENTITY SYSTEM`, which sets what one system really holds
//! for one person (read with the targeted read of [`Observation::read_for`])
//! against what justifies it.

use crate::engine::Engine;
use crate::error::EngineError;
use crate::observe::{Observation, label};
use crate::progress::Progress;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use tenure_core::plan::{DiffInput, Operation, Reason, diff};
use tenure_core::state::{Account, Desired, DesiredState};
use tenure_core::trace::Trace;
use tenure_core::{AccountKey, EntitlementName, IdentityId, LifecycleStatus, SystemId};

/// The traces of these people's evaluation now, in the order asked, legal
/// holds applied. An id no identity has is an error.
pub async fn traces(engine: &Engine, ids: &[IdentityId]) -> Result<Vec<Trace>, EngineError> {
    let now = engine.clock.now();
    let people = engine.store.identities_by_id(ids).await?;
    let held: BTreeSet<IdentityId> = engine
        .store
        .legal_holds()
        .await?
        .into_iter()
        .map(|h| h.identity)
        .collect();
    let grants = engine.store.live_grants(Some(ids), now).await?;
    ids.iter()
        .map(|id| {
            let person = people
                .iter()
                .find(|p| p.id() == id)
                .ok_or_else(|| EngineError::UnknownIdentity(id.clone()))?;
            let theirs: Vec<&tenure_core::policy::Grant> = grants
                .iter()
                .filter(|g| &g.grant.identity == id)
                .map(|g| &g.grant)
                .collect();
            let mut t = engine.policy.trace(person, &theirs, now);
            if held.contains(id) {
                t.hold();
            }
            Ok(t)
        })
        .collect()
}

/// Why one person holds (or should hold) what they hold on one system.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The person.
    pub identity: IdentityId,
    /// Their name.
    pub name: String,
    /// Their lifecycle status now.
    pub status: LifecycleStatus,
    /// The system.
    pub system: SystemId,
    /// Its display name.
    pub system_name: String,
    /// Why the system could not be read (then `account` shows only what policy says).
    pub unreadable: Option<String>,
    /// The account.
    pub account: AccountExplanation,
    /// Each entitlement the account holds or should hold, by name.
    pub entitlements: Vec<EntitlementExplanation>,
    /// What a plan for this person would do on this system now.
    pub operations: Vec<Operation>,
    /// The whole trace of the person's evaluation.
    pub trace: Trace,
}

/// The person's account on the system.
#[derive(Debug, Clone, Serialize)]
pub struct AccountExplanation {
    /// Its key: the linked account's, else the one policy would give.
    pub key: Option<AccountKey>,
    /// Whether the account is linked to the person (created by Tenure or correlated).
    pub linked: bool,
    /// Whether it exists on the system (`None`: the system could not be read).
    pub exists: Option<bool>,
    /// Whether it is enabled, when it exists.
    pub enabled: Option<bool>,
    /// What policy says of it: `account` (must exist), `restricted`
    /// (disabled, perhaps stripped) or `absent` (deleted).
    pub desired: String,
    /// The rules or grants → role paths that justify it, or why it is restricted or removed.
    pub reasons: Vec<Reason>,
    /// The verdict in words.
    pub verdict: String,
}

/// One entitlement.
#[derive(Debug, Clone, Serialize)]
pub struct EntitlementExplanation {
    /// The entitlement.
    pub entitlement: EntitlementName,
    /// Whether the account holds it now.
    pub held: bool,
    /// Whether Tenure manages it (it is in the system's `entitlements`).
    pub managed: bool,
    /// The rules or grants → role paths that justify it (empty: nothing does).
    pub justified_by: Vec<Reason>,
    /// The verdict in words.
    pub verdict: String,
}

/// Explains one person's access on one system, reading only that person's
/// accounts. An unknown identity or system is an error.
pub async fn explain(
    engine: &Engine,
    identity: &IdentityId,
    system: &SystemId,
    progress: &dyn Progress,
) -> Result<Explanation, EngineError> {
    if !engine.connectors.contains_key(system) {
        return Err(EngineError::UnknownSystem {
            system: system.clone(),
            known: engine.connectors.keys().map(ToString::to_string).collect(),
        });
    }
    let trace = traces(engine, std::slice::from_ref(identity))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| EngineError::UnknownIdentity(identity.clone()))?;
    let people = engine
        .store
        .identities_by_id(std::slice::from_ref(identity))
        .await?;
    let obs = Observation::read_for(engine, people, progress).await?;
    let person = obs
        .identity(identity)
        .ok_or_else(|| EngineError::UnknownIdentity(identity.clone()))?;
    let name = label(person);
    let unreadable = obs.unreadable.get(system).cloned();
    let desired = obs
        .desired
        .identities
        .get(identity)
        .map(|d| d.on(system).into_owned());
    let linked_key = obs
        .links
        .iter()
        .find(|l| &l.system == system && &l.identity == identity)
        .map(|l| l.account.clone());
    let accounts = obs.actual.systems.get(system);
    let key = linked_key.clone().or_else(|| match &desired {
        Some(Desired::Account(a)) => Some(a.key.clone()),
        _ => None,
    });
    let actual: Option<&Account> = match (accounts, &key) {
        (Some(a), Some(k)) => a.accounts.get(k),
        _ => None,
    };
    let managed: BTreeSet<EntitlementName> = engine
        .policy
        .config()
        .system(system)
        .map(|s| s.entitlements.iter().cloned().collect())
        .unwrap_or_default();

    // What a plan would do here for this person.
    let infos: BTreeMap<_, _> = engine
        .policy
        .system_infos(&obs.capabilities)
        .into_iter()
        .filter(|(id, _)| id == system && obs.actual.systems.contains_key(id))
        .collect();
    let mut one = DesiredState::default();
    if let Some(d) = obs.desired.identities.get(identity) {
        one.identities.insert(identity.clone(), d.clone());
    }
    one.skipped = obs.desired.skipped.clone();
    let operations: Vec<Operation> = diff(&DiffInput {
        systems: &infos,
        desired: &one,
        actual: &obs.actual,
        links: &obs.links,
    })
    .operations
    .into_iter()
    .filter(|o| &o.system == system && o.identity.as_ref() == Some(identity))
    .collect();

    let exists = accounts.map(|_| actual.is_some());
    let enabled = actual.map(|a| a.enabled);
    let (desired_name, reasons) = match &desired {
        Some(Desired::Account(a)) => ("account", a.reasons.clone()),
        Some(Desired::Restricted { reasons, .. }) => ("restricted", reasons.clone()),
        Some(Desired::Absent { reasons }) => ("absent", reasons.clone()),
        None => ("unknown", Vec::new()),
    };
    let why = |r: &[Reason]| {
        r.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let not_justified = reasons.contains(&Reason::NotJustified);
    let verdict = match (&desired, exists, enabled) {
        (None, _, _) => {
            "policy could not be evaluated for this person: the account is left exactly as it is"
                .to_owned()
        }
        (_, None, _) => format!(
            "the system could not be read; policy says: {}",
            if reasons.is_empty() {
                desired_name.to_owned()
            } else {
                why(&reasons)
            }
        ),
        (Some(Desired::Account(_)), Some(true), Some(true)) => "justified".to_owned(),
        (Some(Desired::Account(_)), Some(true), _) => "justified: will be enabled".to_owned(),
        (Some(Desired::Account(_)), Some(false), _) => "justified: will be created".to_owned(),
        (Some(Desired::Restricted { .. }), Some(true), Some(true)) if not_justified => {
            "not justified by anything: will be disabled and its entitlements removed".to_owned()
        }
        (Some(Desired::Restricted { .. }), Some(true), _) if not_justified => {
            "not justified by anything: stays disabled".to_owned()
        }
        (Some(Desired::Restricted { .. }), Some(true), Some(true)) => {
            format!("will be disabled: {}", why(&reasons))
        }
        (Some(Desired::Restricted { .. }), Some(true), _) => {
            format!("disabled, and stays so: {}", why(&reasons))
        }
        (Some(Desired::Absent { .. }), Some(true), _) => {
            format!("will be deleted: {}", why(&reasons))
        }
        (Some(_), Some(false), _) if not_justified => {
            "no account, and nothing justifies one".to_owned()
        }
        (Some(_), Some(false), _) => format!("no account, and none is created: {}", why(&reasons)),
    };
    let account = AccountExplanation {
        key,
        linked: linked_key.is_some(),
        exists,
        enabled,
        desired: desired_name.to_owned(),
        reasons: reasons.clone(),
        verdict,
    };

    // Entitlements held or wanted.
    let wanted: BTreeMap<EntitlementName, Vec<Reason>> = match &desired {
        Some(Desired::Account(a)) => a.entitlements.clone(),
        _ => BTreeMap::new(),
    };
    let held: BTreeSet<EntitlementName> =
        actual.map(|a| a.entitlements.clone()).unwrap_or_default();
    let names: BTreeSet<&EntitlementName> = wanted.keys().chain(held.iter()).collect();
    let entitlements = names
        .into_iter()
        .map(|e| {
            let is_held = held.contains(e);
            let is_managed = managed.contains(e);
            let justified_by = wanted.get(e).cloned().unwrap_or_default();
            let verdict = if !justified_by.is_empty() {
                if exists.is_none() {
                    "justified (the system could not be read)".to_owned()
                } else if is_held {
                    "justified".to_owned()
                } else {
                    "justified: will be added".to_owned()
                }
            } else if !is_managed {
                "not managed by Tenure (not in the system's entitlements): left alone".to_owned()
            } else {
                match &desired {
                    None => "policy could not be evaluated: left as it is".to_owned(),
                    Some(Desired::Account(_)) => {
                        "not justified by anything: will be removed".to_owned()
                    }
                    Some(Desired::Restricted {
                        keep_entitlements: true,
                        reasons,
                    }) => format!("kept while the account is disabled: {}", why(reasons)),
                    Some(Desired::Restricted { .. }) if not_justified => {
                        "not justified by anything: will be removed".to_owned()
                    }
                    Some(Desired::Restricted { reasons, .. }) => {
                        format!("will be removed: {}", why(reasons))
                    }
                    Some(Desired::Absent { reasons }) => {
                        format!("removed with the account: {}", why(reasons))
                    }
                }
            };
            EntitlementExplanation {
                entitlement: e.clone(),
                held: is_held,
                managed: is_managed,
                justified_by,
                verdict,
            }
        })
        .collect();
    Ok(Explanation {
        identity: identity.clone(),
        name,
        status: trace.status,
        system: system.clone(),
        system_name: engine
            .policy
            .system_name(system)
            .unwrap_or_default()
            .to_owned(),
        unreadable,
        account,
        entitlements,
        operations,
        trace,
    })
}
