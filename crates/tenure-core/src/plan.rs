//! Plans: the ordered operations that turn actual state into desired state.
//!
//! [`diff`] is pure and deterministic: the same inputs give the same plan, in
//! the same order (systems, then identities, then accounts, then the fixed
//! order of [`Action`] kinds). Rendering is in [`crate::render`].

use crate::ids::{AccountKey, EntitlementName, IdentityId, PolicyId, RoleId, RuleId, SystemId};
use crate::state::{ActualState, Capabilities, Desired, DesiredState, Link};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The format version written into saved plans.
pub const PLAN_FORMAT: u32 = 1;

/// A step of a deprovisioning policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// Disable every account (reversible).
    Disable,
    /// Remove every entitlement (group memberships, licences).
    RemoveMemberships,
    /// Transfer or archive the person's data (to their manager's account, a
    /// fixed account, an archive container, or a webhook) on every system that
    /// can; the account stays disabled.
    Archive,
    /// Delete every account.
    Delete,
}

impl StepAction {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::RemoveMemberships => "remove_memberships",
            Self::Archive => "archive",
            Self::Delete => "delete",
        }
    }

    /// Every step action, in the order of how much they take away.
    pub const ALL: [StepAction; 4] = [
        Self::Disable,
        Self::RemoveMemberships,
        Self::Archive,
        Self::Delete,
    ];

    /// Parses the name used in configuration.
    pub fn parse(s: &str) -> Option<StepAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Why an operation is in the plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A birthright rule gave a role, which (perhaps through contained roles) gives this.
    Birthright {
        /// The rule that matched.
        rule: RuleId,
        /// The role the rule gave, then each contained role down to the one that carries this.
        roles: Vec<RoleId>,
    },
    /// A grant (an approved request, a manual grant) gave a role.
    Grant {
        /// Why the grant exists.
        reason: String,
        /// The role granted, then each contained role down to the one that carries this.
        roles: Vec<RoleId>,
    },
    /// The system's attribute mapping computes a different value.
    Mapping,
    /// A deprovisioning policy step for a leaver.
    Deprovisioning {
        /// The policy that applies to the leaver's population.
        policy: PolicyId,
        /// The step.
        step: StepAction,
        /// The leaver's end date.
        since: NaiveDate,
        /// The policy's own step, when a per-system override replaced it with `step`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instead_of: Option<StepAction>,
    },
    /// The identity is suspended by an operator.
    Suspended,
    /// The identity is not active yet (future start date).
    NotStarted,
    /// Nothing in policy justifies this access any more.
    NotJustified,
    /// The account belongs to no identity and the system's orphan policy acts on it.
    Orphan,
    /// A legal hold stops deletion: the account stays, disabled and stripped.
    LegalHold,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Birthright { rule, roles } => {
                write!(f, "rule {rule}")?;
                for r in roles {
                    write!(f, " → role {r}")?;
                }
                Ok(())
            }
            Reason::Grant { reason, roles } => {
                write!(f, "grant ({reason})")?;
                for r in roles {
                    write!(f, " → role {r}")?;
                }
                Ok(())
            }
            Reason::Mapping => f.write_str("attribute mapping"),
            Reason::Deprovisioning {
                policy,
                step,
                since,
                instead_of,
            } => {
                write!(
                    f,
                    "leaver since {since}: policy {policy}, step {}",
                    step.as_str()
                )?;
                if let Some(original) = instead_of {
                    write!(
                        f,
                        " (overridden on this system: instead of {})",
                        original.as_str()
                    )?;
                }
                Ok(())
            }
            Reason::Suspended => f.write_str("identity suspended"),
            Reason::NotStarted => f.write_str("start date not reached"),
            Reason::NotJustified => f.write_str("no longer justified by any rule"),
            Reason::Orphan => f.write_str("orphaned account (system orphan policy)"),
            Reason::LegalHold => f.write_str("legal hold: kept, not deleted"),
        }
    }
}

/// One attribute's change in an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeChange {
    /// The value on the system, if any.
    pub before: Option<String>,
    /// The value to write.
    pub after: String,
}

/// What one operation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the account, enabled, with these attributes.
    CreateAccount {
        /// Attributes to write.
        attributes: BTreeMap<String, String>,
    },
    /// Enable a disabled account.
    EnableAccount,
    /// Change these attributes only.
    UpdateAccount {
        /// Per attribute.
        changes: BTreeMap<String, AttributeChange>,
    },
    /// Add one entitlement.
    AddMembership {
        /// The entitlement.
        entitlement: EntitlementName,
    },
    /// Disable the account.
    DisableAccount,
    /// Remove one entitlement.
    RemoveMembership {
        /// The entitlement.
        entitlement: EntitlementName,
    },
    /// Transfer or archive the person's data (the account stays, disabled).
    ArchiveAccount {
        /// The account the data goes to (the manager's account on this
        /// system), when the system transfers to the manager.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<AccountKey>,
    },
    /// Delete the account.
    DeleteAccount,
}

impl Action {
    /// Order of actions on one account: create before memberships, disable
    /// before stripping, archive after stripping, delete last.
    pub fn rank(&self) -> u8 {
        match self {
            Action::CreateAccount { .. } => 0,
            Action::EnableAccount => 1,
            Action::UpdateAccount { .. } => 2,
            Action::AddMembership { .. } => 3,
            Action::DisableAccount => 4,
            Action::RemoveMembership { .. } => 5,
            Action::ArchiveAccount { .. } => 6,
            Action::DeleteAccount => 7,
        }
    }

    /// A short name (`create`, `disable` …) for tables and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateAccount { .. } => "create",
            Action::EnableAccount => "enable",
            Action::UpdateAccount { .. } => "update",
            Action::AddMembership { .. } => "add_membership",
            Action::DisableAccount => "disable",
            Action::RemoveMembership { .. } => "remove_membership",
            Action::ArchiveAccount { .. } => "archive",
            Action::DeleteAccount => "delete",
        }
    }

    /// Whether this takes access away (what the mass-change guard counts).
    pub fn is_deprovisioning(&self) -> bool {
        matches!(self, Action::DisableAccount | Action::DeleteAccount)
    }
}

/// One change on one system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The system.
    pub system: SystemId,
    /// Whose account (none for an orphan).
    pub identity: Option<IdentityId>,
    /// The account.
    pub account: AccountKey,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// Why.
    pub reasons: Vec<Reason>,
}

impl Operation {
    /// A stable key for this operation's effect: the same change on the same
    /// account always has the same key. Used for idempotency and audit.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.system.as_str().as_bytes());
        h.update([0]);
        h.update(self.account.as_str().as_bytes());
        h.update([0]);
        // Serialising an Action cannot fail: it holds only strings and maps of strings.
        h.update(serde_json::to_vec(&self.action).unwrap_or_default());
        hex::encode(&h.finalize()[..16])
    }
}

/// Queued operations on one account that a newer plan replaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Superseded {
    /// Where.
    pub system: SystemId,
    /// The account.
    pub account: AccountKey,
    /// Whose account it is, when known.
    pub identity: Option<IdentityId>,
    /// The waiting operations' actions (`delete`, `disable` …).
    pub actions: Vec<String>,
}

/// Something the planner noticed that is not an operation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// An account that no identity justifies.
    Orphan {
        /// Where.
        system: SystemId,
        /// The account.
        account: AccountKey,
    },
    /// Correlation found several candidates; nothing was linked.
    Ambiguous {
        /// Where.
        system: SystemId,
        /// The account.
        account: AccountKey,
        /// The identities it could belong to.
        identities: Vec<IdentityId>,
    },
    /// An identity's account key is taken by an account linked to someone else.
    KeyConflict {
        /// Where.
        system: SystemId,
        /// The key.
        account: AccountKey,
        /// Who wanted it.
        wanted_by: IdentityId,
        /// Who has it.
        held_by: IdentityId,
    },
    /// The same change is already in the queue (waiting, running, or failed and
    /// waiting for an operator), so it is not planned again.
    AlreadyQueued {
        /// Where.
        system: SystemId,
        /// The account.
        account: AccountKey,
        /// The action (`create`, `add_membership` …).
        action: String,
    },
    /// Evaluating policy for an identity failed; its access is left unchanged.
    EvaluationFailed {
        /// Whose.
        identity: IdentityId,
        /// The error.
        message: String,
    },
    /// A leaver's data is due to be archived on a system but is not, and why
    /// (no manager, the manager has no account there, a legal hold).
    ArchiveWaiting {
        /// Where.
        system: SystemId,
        /// Whose data.
        identity: IdentityId,
        /// The leaver's account.
        account: AccountKey,
        /// Why it waits.
        why: String,
    },
    /// The system cannot do what policy asks; what was done instead.
    Unsupported {
        /// Where.
        system: SystemId,
        /// What happened.
        message: String,
    },
}

/// What to do with accounts that belong to no identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanPolicy {
    /// Report them; change nothing (the default).
    #[default]
    Report,
    /// Disable them.
    Disable,
    /// Delete them.
    Delete,
}

/// What the planner needs to know about one system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// What it can do.
    pub capabilities: Capabilities,
    /// What to do with orphans.
    pub orphans: OrphanPolicy,
    /// The entitlements Tenure manages there; others are left alone.
    pub entitlements: BTreeSet<EntitlementName>,
}

/// An ordered list of operations, with what it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT`].
    pub format: u32,
    /// Hash of everything the plan was made from (policy, identities, links, actual state).
    pub fingerprint: String,
    /// When it was made.
    pub made_at: DateTime<Utc>,
    /// The date lifecycle statuses were evaluated for.
    pub today: NaiveDate,
    /// The operations, in execution order.
    pub operations: Vec<Operation>,
    /// What the planner noticed.
    pub findings: Vec<Finding>,
    /// Display names of the identities the operations concern.
    pub labels: BTreeMap<IdentityId, String>,
    /// Display names of the systems.
    pub system_names: BTreeMap<SystemId, String>,
    /// Made for the people who changed (or whose dates came) since the last
    /// applied plan only, against their accounts alone: no orphans are looked for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_only: bool,
    /// Made for these people only (on demand), against their accounts alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentityId>,
    /// Accounts whose queued operations this plan replaces: what waits in
    /// the queue for them is no longer what policy wants (a correction or a
    /// rehire came before a leaver's queued steps ran, a system was
    /// unreachable meanwhile …). Applying the plan cancels those operations
    /// (not one already running) and queues this plan's instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<Superseded>,
}

impl Plan {
    /// Counts of operations by action name.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for op in &self.operations {
            *m.entry(op.action.name()).or_insert(0) += 1;
        }
        m
    }

    /// The counts in words: `105 add membership, 69 create`.
    pub fn counts_text(&self) -> String {
        let parts: Vec<String> = self
            .counts()
            .iter()
            .map(|(k, v)| format!("{v} {}", k.replace('_', " ")))
            .collect();
        parts.join(", ")
    }
}

/// The planner's inputs beyond desired and actual state.
pub struct DiffInput<'a> {
    /// Every system in the policy.
    pub systems: &'a BTreeMap<SystemId, SystemInfo>,
    /// What policy says.
    pub desired: &'a DesiredState,
    /// What the systems hold.
    pub actual: &'a ActualState,
    /// Which account belongs to whom (persisted and newly correlated links).
    pub links: &'a [Link],
}

/// Operations and findings: the body of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// In execution order.
    pub operations: Vec<Operation>,
    /// Sorted.
    pub findings: Vec<Finding>,
}

/// Compares desired with actual state and lists the operations that close the gap.
pub fn diff(input: &DiffInput<'_>) -> Diff {
    let mut differ = Differ::new(input.systems, input.actual, input.links);
    differ.add(input.desired, input.desired);
    differ.finish()
}

/// [`diff`] a slice of identities at a time, so that only one slice's
/// desired state is ever held: slices given in identity order make exactly
/// the plan [`diff`] makes of them all at once (operations by system, then
/// identity, then account; each system's orphans after its identities).
pub struct Differ<'a> {
    systems: &'a BTreeMap<SystemId, SystemInfo>,
    actual: &'a ActualState,
    /// (system, identity) -> linked account keys.
    linked: BTreeMap<(&'a SystemId, &'a IdentityId), Vec<&'a AccountKey>>,
    /// (system, account) -> its identity.
    owner: BTreeMap<(&'a SystemId, &'a AccountKey), &'a IdentityId>,
    /// Per system: the keys this plan creates there, and for whom.
    creating: BTreeMap<&'a SystemId, BTreeMap<AccountKey, IdentityId>>,
    /// Per system: its operations so far, in plan order.
    operations: BTreeMap<&'a SystemId, Vec<Operation>>,
    findings: Vec<Finding>,
    /// Every identity seen (evaluated or skipped): their linked accounts are not orphans.
    known: std::collections::HashSet<IdentityId>,
}

impl<'a> Differ<'a> {
    /// Starts a plan over these systems, what they hold and the links in force.
    pub fn new(
        systems: &'a BTreeMap<SystemId, SystemInfo>,
        actual: &'a ActualState,
        links: &'a [Link],
    ) -> Self {
        let mut linked: BTreeMap<(&SystemId, &IdentityId), Vec<&AccountKey>> = BTreeMap::new();
        let mut owner: BTreeMap<(&SystemId, &AccountKey), &IdentityId> = BTreeMap::new();
        for l in links {
            linked
                .entry((&l.system, &l.identity))
                .or_default()
                .push(&l.account);
            owner.insert((&l.system, &l.account), &l.identity);
        }
        // The plan must not depend on the order links were given in.
        for keys in linked.values_mut() {
            keys.sort();
            keys.dedup();
        }
        Differ {
            systems,
            actual,
            linked,
            owner,
            creating: BTreeMap::new(),
            operations: systems.keys().map(|s| (s, Vec::new())).collect(),
            findings: Vec::new(),
            known: std::collections::HashSet::new(),
        }
    }

    /// Plans for the identities of `desired` (a slice: after those of every
    /// earlier slice in identity order). `context` is where a leaver's
    /// manager's desired state is looked up when the manager is not in the
    /// slice (it may be `desired` itself, or hold the managers only).
    pub fn add(&mut self, desired: &DesiredState, context: &DesiredState) {
        self.known.extend(desired.identities.keys().cloned());
        self.known.extend(desired.skipped.iter().cloned());
        let empty = Default::default();
        for (system, info) in self.systems {
            let accounts = self.actual.systems.get(system).unwrap_or(&empty);
            let mut out = Diff {
                operations: self.operations.remove(system).unwrap_or_default(),
                findings: std::mem::take(&mut self.findings),
            };
            let creating = self.creating.entry(system).or_default();
            let lookup = Lookup {
                desired,
                context,
                linked: &self.linked,
            };
            for (identity, desired_identity) in &desired.identities {
                plan_identity(
                    &mut out,
                    &lookup,
                    &self.owner,
                    creating,
                    system,
                    info,
                    accounts,
                    identity,
                    desired_identity,
                );
            }
            self.operations.insert(system, out.operations);
            self.findings = out.findings;
        }
    }

    /// Adds each system's orphans (accounts linked to no identity seen) and
    /// returns the plan's operations and sorted findings.
    pub fn finish(self) -> Diff {
        let Differ {
            systems,
            actual,
            owner,
            mut operations,
            findings,
            known,
            ..
        } = self;
        let mut out = Diff {
            operations: Vec::with_capacity(operations.values().map(Vec::len).sum()),
            findings,
        };
        let empty = Default::default();
        for (system, info) in systems {
            out.operations
                .append(&mut operations.remove(system).unwrap_or_default());
            let accounts = actual.systems.get(system).unwrap_or(&empty);
            orphans(&mut out, &owner, &known, system, info, accounts);
        }
        out.findings.sort();
        out
    }
}

/// What [`archive`] looks up beyond the leaver's own account.
struct Lookup<'d, 'a> {
    desired: &'d DesiredState,
    context: &'d DesiredState,
    linked: &'d BTreeMap<(&'a SystemId, &'a IdentityId), Vec<&'a AccountKey>>,
}

impl Lookup<'_, '_> {
    fn desired(&self, id: &IdentityId) -> Option<&crate::state::DesiredIdentity> {
        self.desired
            .identities
            .get(id)
            .or_else(|| self.context.identities.get(id))
    }
}

/// The operations one identity's desired state on one system needs.
#[allow(clippy::too_many_arguments)]
fn plan_identity(
    out: &mut Diff,
    lookup: &Lookup<'_, '_>,
    owner: &BTreeMap<(&SystemId, &AccountKey), &IdentityId>,
    creating: &mut BTreeMap<AccountKey, IdentityId>,
    system: &SystemId,
    info: &SystemInfo,
    accounts: &crate::state::SystemAccounts,
    identity: &IdentityId,
    desired_identity: &crate::state::DesiredIdentity,
) {
    let caps = info.capabilities;
    let linked = lookup.linked;
    let keys = linked.get(&(system, identity)).cloned().unwrap_or_default();
    let desired = desired_identity.on(system);
    match desired.as_ref() {
        Desired::Account(d) => {
            let existing = keys.iter().find_map(|k| accounts.accounts.get(*k));
            match existing {
                None => {
                    if let Some(holder) = owner
                        .get(&(system, &d.key))
                        .copied()
                        .or_else(|| creating.get(&d.key))
                        && holder != identity
                    {
                        out.findings.push(Finding::KeyConflict {
                            system: system.clone(),
                            account: d.key.clone(),
                            wanted_by: identity.clone(),
                            held_by: holder.clone(),
                        });
                        return;
                    }
                    if accounts.accounts.contains_key(&d.key) {
                        // The key is taken by an account linked to nobody (correlation
                        // found it ambiguous): creating it would fail or take the
                        // account over, so it is left for an operator.
                        out.findings.push(Finding::Unsupported {
                            system: system.clone(),
                            message: format!(
                                "{identity} needs account {}, which exists but is linked to no identity; not created",
                                d.key
                            ),
                        });
                        return;
                    }
                    if !caps.create {
                        out.findings.push(Finding::Unsupported {
                            system: system.clone(),
                            message: format!(
                                "{identity} needs an account but the system cannot create accounts"
                            ),
                        });
                        return;
                    }
                    creating.insert(d.key.clone(), identity.clone());
                    push(
                        out,
                        system,
                        identity,
                        &d.key,
                        Action::CreateAccount {
                            attributes: d.attributes.clone(),
                        },
                        d.reasons.clone(),
                    );
                    if caps.memberships {
                        for (e, why) in &d.entitlements {
                            push(
                                out,
                                system,
                                identity,
                                &d.key,
                                Action::AddMembership {
                                    entitlement: e.clone(),
                                },
                                why.clone(),
                            );
                        }
                    }
                }
                Some(acct) => {
                    if caps.disable && !acct.enabled {
                        push(
                            out,
                            system,
                            identity,
                            &acct.key,
                            Action::EnableAccount,
                            d.reasons.clone(),
                        );
                    }
                    let changes: BTreeMap<String, AttributeChange> = d
                        .attributes
                        .iter()
                        .filter(|(k, v)| acct.attributes.get(*k) != Some(*v))
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                AttributeChange {
                                    before: acct.attributes.get(k).cloned(),
                                    after: v.clone(),
                                },
                            )
                        })
                        .collect();
                    if !changes.is_empty() && caps.update {
                        push(
                            out,
                            system,
                            identity,
                            &acct.key,
                            Action::UpdateAccount { changes },
                            vec![Reason::Mapping],
                        );
                    }
                    if caps.memberships {
                        for (e, why) in &d.entitlements {
                            if !acct.entitlements.contains(e) {
                                push(
                                    out,
                                    system,
                                    identity,
                                    &acct.key,
                                    Action::AddMembership {
                                        entitlement: e.clone(),
                                    },
                                    why.clone(),
                                );
                            }
                        }
                        for e in &acct.entitlements {
                            if info.entitlements.contains(e) && !d.entitlements.contains_key(e) {
                                push(
                                    out,
                                    system,
                                    identity,
                                    &acct.key,
                                    Action::RemoveMembership {
                                        entitlement: e.clone(),
                                    },
                                    vec![Reason::NotJustified],
                                );
                            }
                        }
                    }
                }
            }
        }
        Desired::Restricted {
            keep_entitlements,
            reasons,
        } => {
            for key in &keys {
                let Some(acct) = accounts.accounts.get(*key) else {
                    return;
                };
                // A system that cannot disable deletes instead: the
                // data is archived before the account goes.
                if !caps.disable {
                    archive(out, lookup, system, info, identity, acct);
                }
                restrict(
                    out,
                    system,
                    info,
                    identity,
                    acct,
                    *keep_entitlements,
                    reasons,
                );
                if caps.disable {
                    archive(out, lookup, system, info, identity, acct);
                }
            }
        }
        Desired::Absent { reasons } => {
            for key in &keys {
                let Some(acct) = accounts.accounts.get(*key) else {
                    return;
                };
                if caps.delete {
                    // Data is archived before the account that holds it goes.
                    archive(out, lookup, system, info, identity, acct);
                    push(
                        out,
                        system,
                        identity,
                        &acct.key,
                        Action::DeleteAccount,
                        reasons.clone(),
                    );
                } else {
                    out.findings.push(Finding::Unsupported {
                        system: system.clone(),
                        message: format!(
                            "cannot delete {}'s account {}; disabling and stripping it instead",
                            identity, acct.key
                        ),
                    });
                    restrict(out, system, info, identity, acct, false, reasons);
                    archive(out, lookup, system, info, identity, acct);
                }
            }
        }
    }
}

/// Accounts linked to no identity seen (removed from the store) or to nobody:
/// orphans, reported, and acted on as the system's orphan policy says.
fn orphans(
    out: &mut Diff,
    owner: &BTreeMap<(&SystemId, &AccountKey), &IdentityId>,
    known: &std::collections::HashSet<IdentityId>,
    system: &SystemId,
    info: &SystemInfo,
    accounts: &crate::state::SystemAccounts,
) {
    let caps = info.capabilities;
    // Linked accounts whose identity policy does not know (removed from the
    // store) and accounts linked to nobody are orphans.
    for (key, acct) in &accounts.accounts {
        if owner
            .get(&(system, key))
            .is_some_and(|id| known.contains(*id))
        {
            continue;
        }
        out.findings.push(Finding::Orphan {
            system: system.clone(),
            account: key.clone(),
        });
        match info.orphans {
            OrphanPolicy::Report => {}
            OrphanPolicy::Disable => {
                if caps.disable && acct.enabled {
                    out.operations.push(Operation {
                        system: system.clone(),
                        identity: None,
                        account: key.clone(),
                        action: Action::DisableAccount,
                        reasons: vec![Reason::Orphan],
                    });
                }
            }
            OrphanPolicy::Delete => {
                if caps.delete {
                    out.operations.push(Operation {
                        system: system.clone(),
                        identity: None,
                        account: key.clone(),
                        action: Action::DeleteAccount,
                        reasons: vec![Reason::Orphan],
                    });
                }
            }
        }
    }
}

/// Archives a leaver's data on one account when an archive is due there and
/// not done yet; says why when it cannot be.
fn archive(
    out: &mut Diff,
    lookup: &Lookup<'_, '_>,
    system: &SystemId,
    info: &SystemInfo,
    identity: &IdentityId,
    acct: &crate::state::Account,
) {
    let Some(request) = lookup.desired(identity).and_then(|d| d.archive.get(system)) else {
        return;
    };
    let caps = info.capabilities;
    if !caps.archive {
        out.findings.push(Finding::Unsupported {
            system: system.clone(),
            message: format!(
                "cannot archive {identity}'s data (account {}); the archive step is skipped on this system",
                acct.key
            ),
        });
        return;
    }
    if acct.archived {
        return;
    }
    let waiting = |out: &mut Diff, why: String| {
        out.findings.push(Finding::ArchiveWaiting {
            system: system.clone(),
            identity: identity.clone(),
            account: acct.key.clone(),
            why,
        });
    };
    if request.held {
        waiting(
            out,
            "a legal hold stops it until `tenure release`".to_owned(),
        );
        return;
    }
    let to = if caps.archive_to_manager {
        let Some(manager) = &request.manager else {
            waiting(
                out,
                "the data goes to the manager's account, and the leaver has no manager".to_owned(),
            );
            return;
        };
        // The manager's linked account on this system, else the account
        // policy gives them there.
        let linked_key = lookup
            .linked
            .get(&(system, manager))
            .and_then(|keys| keys.first().copied());
        let desired_key = || match lookup.desired(manager).map(|d| d.on(system)).as_deref() {
            Some(Desired::Account(d)) => Some(d.key.clone()),
            _ => None,
        };
        let Some(key) = linked_key.cloned().or_else(desired_key) else {
            waiting(
                out,
                format!(
                    "the data goes to the manager's account, and the manager {manager} has no account on this system"
                ),
            );
            return;
        };
        if key == acct.key {
            waiting(
                out,
                format!("the manager's account {key} is the leaver's own"),
            );
            return;
        }
        Some(key)
    } else {
        None
    };
    push(
        out,
        system,
        identity,
        &acct.key,
        Action::ArchiveAccount { to },
        request.reasons.clone(),
    );
}

fn restrict(
    out: &mut Diff,
    system: &SystemId,
    info: &SystemInfo,
    identity: &IdentityId,
    acct: &crate::state::Account,
    keep_entitlements: bool,
    reasons: &[Reason],
) {
    let caps = info.capabilities;
    if caps.disable {
        if acct.enabled {
            push(
                out,
                system,
                identity,
                &acct.key,
                Action::DisableAccount,
                reasons.to_vec(),
            );
        }
    } else if caps.delete {
        // A leaver must lose access: a system that cannot disable gets the account deleted.
        out.findings.push(Finding::Unsupported {
            system: system.clone(),
            message: format!(
                "cannot disable {identity}'s account {}; deleting it instead",
                acct.key
            ),
        });
        push(
            out,
            system,
            identity,
            &acct.key,
            Action::DeleteAccount,
            reasons.to_vec(),
        );
        return;
    }
    if !keep_entitlements && caps.memberships {
        for e in &acct.entitlements {
            if info.entitlements.contains(e) {
                push(
                    out,
                    system,
                    identity,
                    &acct.key,
                    Action::RemoveMembership {
                        entitlement: e.clone(),
                    },
                    reasons.to_vec(),
                );
            }
        }
    }
}

fn push(
    out: &mut Diff,
    system: &SystemId,
    identity: &IdentityId,
    account: &AccountKey,
    action: Action,
    reasons: Vec<Reason>,
) {
    out.operations.push(Operation {
        system: system.clone(),
        identity: Some(identity.clone()),
        account: account.clone(),
        action,
        reasons,
    });
}

/// Hashes any serialisable input into a hex fingerprint.
pub fn fingerprint<T: Serialize + ?Sized>(parts: &[(&str, &T)]) -> String {
    let mut f = Fingerprinter::default();
    for (name, part) in parts {
        f.part(name, part);
    }
    f.finish()
}

/// Builds a fingerprint from named parts, serialising each straight into the
/// hash: no intermediate JSON is built, however large the part.
#[derive(Default)]
pub struct Fingerprinter(Sha256);

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Fingerprinter {
    /// Adds a named part. Serialising Tenure's own types cannot fail; if a
    /// caller's type does, its error text is hashed instead, which still
    /// changes the fingerprint.
    pub fn part<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        self.0.update(name.as_bytes());
        self.0.update([0]);
        if let Err(e) = serde_json::to_writer(HashWriter(&mut self.0), value) {
            self.0.update(e.to_string().as_bytes());
        }
        self.0.update([0]);
    }

    /// The fingerprint, as hex.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}
