//! Actual state (what connectors read from systems), desired state (what policy
//! says each identity must have) and the links between accounts and identities.

use crate::ids::{AccountKey, EntitlementName, IdentityId, SystemId};
use crate::plan::Reason;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a kind of system can do. Connectors declare it; the planner uses only
/// what a system can do (a system that cannot disable gets its leavers deleted,
/// a system without memberships gets no membership operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Accounts can be listed (needed for reconciliation and correlation).
    pub read: bool,
    /// Accounts can be created.
    pub create: bool,
    /// Account attributes can be changed in place.
    pub update: bool,
    /// Accounts can be disabled and enabled without deleting them.
    pub disable: bool,
    /// Accounts can be deleted.
    pub delete: bool,
    /// Accounts hold entitlements (groups, roles, licences) that can be added and removed one at a time.
    pub memberships: bool,
    /// The system reports when each account last logged in.
    pub last_login: bool,
    /// A leaver's data can be transferred or archived (the `archive`
    /// deprovisioning step), and whether it is is read back
    /// ([`Account::archived`]).
    #[serde(default)]
    pub archive: bool,
    /// The archive transfers the data to the leaver's manager's account on
    /// the same system, which the planner must name.
    #[serde(default)]
    pub archive_to_manager: bool,
}

impl Capabilities {
    /// A system that can do everything except report last logins.
    pub const FULL: Capabilities = Capabilities {
        read: true,
        create: true,
        update: true,
        disable: true,
        delete: true,
        memberships: true,
        last_login: false,
        archive: false,
        archive_to_manager: false,
    };
}

/// One account as read from a system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account's key on its system.
    pub key: AccountKey,
    /// Managed attributes, as the system holds them.
    pub attributes: BTreeMap<String, String>,
    /// Whether the account can be used (always true on systems that cannot disable).
    pub enabled: bool,
    /// Entitlements the account holds.
    pub entitlements: BTreeSet<EntitlementName>,
    /// The person's data is archived (nothing of theirs is left to transfer,
    /// or the entry is in the archive container), as read back from a system
    /// that can archive; always false on others.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
}

/// Every account of one system, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemAccounts {
    /// Accounts by key.
    pub accounts: BTreeMap<AccountKey, Account>,
}

/// What the connectors read from every system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualState {
    /// Per system.
    pub systems: BTreeMap<SystemId, SystemAccounts>,
}

/// Which accounts of one system to read when planning for some identities
/// only: the accounts with these keys, and those whose correlation attribute
/// holds one of these values. Both compare ignoring case and surrounding
/// spaces, as correlation does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountQuery {
    /// Account keys (linked accounts, and the keys desired accounts would get).
    pub keys: BTreeSet<AccountKey>,
    /// The correlation attribute and the values wanted, if the system correlates by one.
    pub attribute: Option<(String, BTreeSet<String>)>,
}

impl AccountQuery {
    fn norm(s: &str) -> String {
        s.trim().to_lowercase()
    }

    /// The keys, normalised as they are compared.
    pub fn normalised_keys(&self) -> BTreeSet<String> {
        self.keys.iter().map(|k| Self::norm(k.as_str())).collect()
    }

    /// The attribute values, normalised as they are compared.
    pub fn normalised_values(&self) -> BTreeSet<String> {
        self.attribute
            .iter()
            .flat_map(|(_, v)| v.iter().map(|v| Self::norm(v)))
            .collect()
    }

    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.attribute.as_ref().is_none_or(|(_, v)| v.is_empty())
    }

    /// Keeps, of all the accounts of a system, those this query asks for.
    /// Connectors that cannot search use this on a full read.
    pub fn filter(&self, all: SystemAccounts) -> SystemAccounts {
        let keys = self.normalised_keys();
        let values = self.normalised_values();
        let attribute = self.attribute.as_ref().map(|(a, _)| a.as_str());
        SystemAccounts {
            accounts: all
                .accounts
                .into_iter()
                .filter(|(k, a)| {
                    keys.contains(&Self::norm(k.as_str()))
                        || attribute.is_some_and(|attr| {
                            a.attributes
                                .get(attr)
                                .is_some_and(|v| values.contains(&Self::norm(v)))
                        })
                })
                .collect(),
        }
    }
}

/// A persisted link between an account and the identity it belongs to: made
/// when Tenure creates the account or when correlation finds exactly one match.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Link {
    /// The system.
    pub system: SystemId,
    /// The account on it.
    pub account: AccountKey,
    /// Whose account it is.
    pub identity: IdentityId,
}

/// An account one identity must have on one system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredAccount {
    /// The account's key, from the system's key mapping.
    pub key: AccountKey,
    /// Managed attributes, from the system's attribute mapping.
    pub attributes: BTreeMap<String, String>,
    /// Entitlements, each with why.
    pub entitlements: BTreeMap<EntitlementName, Vec<Reason>>,
    /// Why the account exists at all.
    pub reasons: Vec<Reason>,
}

/// What must be true of one identity's account on one system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Desired {
    /// The account must exist, be enabled and hold exactly these entitlements.
    Account(DesiredAccount),
    /// If an account exists, it must be disabled; its entitlements are removed
    /// unless `keep_entitlements`. Nothing is created. Leavers in the first
    /// stages of deprovisioning, suspended people, and accounts that no rule
    /// justifies any more are here.
    Restricted {
        /// Keep the entitlements (a first, reversible stage).
        keep_entitlements: bool,
        /// Why.
        reasons: Vec<Reason>,
    },
    /// No account may exist: any account is deleted.
    Absent {
        /// Why.
        reasons: Vec<Reason>,
    },
}

impl Desired {
    /// Under a legal hold, an account policy would delete stays, disabled
    /// and stripped of its entitlements.
    pub fn hold(&mut self) {
        if let Desired::Absent { reasons } = self {
            let mut reasons = std::mem::take(reasons);
            reasons.push(Reason::LegalHold);
            *self = Desired::Restricted {
                keep_entitlements: false,
                reasons,
            };
        }
    }
}

/// A leaver's data to be transferred or archived on one system (the
/// `archive` deprovisioning step is due there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRequest {
    /// The leaver's manager, whose account receives the data on systems that
    /// transfer to the manager.
    pub manager: Option<IdentityId>,
    /// Why.
    pub reasons: Vec<Reason>,
    /// A legal hold stops the archive (data removal) until it is released.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// What one identity must have everywhere. A system the identity has no entry
/// for means: nothing justifies an account there (see [`DesiredIdentity::on`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredIdentity {
    /// Per system.
    pub systems: BTreeMap<SystemId, Desired>,
    /// Systems where the leaver's data must be archived.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub archive: BTreeMap<SystemId, ArchiveRequest>,
}

impl DesiredIdentity {
    /// What must be true on `system`: an account nothing justifies is restricted
    /// (disabled and stripped), never created.
    pub fn on(&self, system: &SystemId) -> std::borrow::Cow<'_, Desired> {
        match self.systems.get(system) {
            Some(d) => std::borrow::Cow::Borrowed(d),
            None => std::borrow::Cow::Owned(Desired::Restricted {
                keep_entitlements: false,
                reasons: vec![Reason::NotJustified],
            }),
        }
    }
}

/// What policy says every identity must have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Per identity.
    pub identities: BTreeMap<IdentityId, DesiredIdentity>,
    /// Identities whose evaluation failed: their accounts are left exactly as they are.
    pub skipped: BTreeSet<IdentityId>,
}

impl DesiredState {
    /// Applies legal holds: a held identity's accounts are never deleted and
    /// their data is never archived. Where policy says an account must be
    /// absent, it stays, disabled and stripped of its entitlements, until the
    /// hold is released; a due archive waits (and the plan says so).
    pub fn hold(&mut self, held: &BTreeSet<IdentityId>) {
        for (id, d) in &mut self.identities {
            if !held.contains(id) {
                continue;
            }
            for want in d.systems.values_mut() {
                want.hold();
            }
            for request in d.archive.values_mut() {
                request.held = true;
            }
        }
    }
}
