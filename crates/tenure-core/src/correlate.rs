//! Correlation: which existing account belongs to which identity.
//!
//! Links already stored are kept while their account exists. An unlinked
//! account is linked when exactly one identity matches it — by the system's
//! correlation rule (an account attribute equal to an identity attribute,
//! compared without case or surrounding space) or because it has the very key
//! that identity's account would get — and that identity has no other match.
//! Anything else is reported as ambiguous, never guessed.

use crate::config::CorrelationConfig;
use crate::identity::Identity;
use crate::ids::{AccountKey, IdentityId, SystemId};
use crate::plan::Finding;
use crate::state::{Desired, DesiredState, Link, SystemAccounts};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What correlation decided for one system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Correlation {
    /// New links to store.
    pub add: Vec<Link>,
    /// Stored links whose account no longer exists.
    pub remove: Vec<(SystemId, AccountKey)>,
    /// Every link in force after correlation (kept and new).
    pub links: Vec<Link>,
    /// Ambiguous matches.
    pub findings: Vec<Finding>,
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Correlates one system's accounts with the identities.
pub fn correlate(
    system: &SystemId,
    accounts: &SystemAccounts,
    stored_links: &[Link],
    identities: &[Identity],
    desired: &DesiredState,
    rule: Option<&CorrelationConfig>,
) -> Correlation {
    let keys: Vec<(&IdentityId, &AccountKey)> = desired
        .identities
        .iter()
        .filter_map(|(id, d)| match d.systems.get(system) {
            Some(Desired::Account(a)) => Some((id, &a.key)),
            _ => None,
        })
        .collect();
    correlate_keys(system, accounts, stored_links, identities, &keys, rule)
}

/// Whether correlating this system's accounts needs the keys identities'
/// accounts would get: only when an account is not linked yet.
pub fn needs_keys(system: &SystemId, accounts: &SystemAccounts, stored_links: &[Link]) -> bool {
    let linked: BTreeSet<&AccountKey> = stored_links
        .iter()
        .filter(|l| &l.system == system)
        .map(|l| &l.account)
        .collect();
    accounts.accounts.keys().any(|k| !linked.contains(k))
}

/// [`correlate`], given only what correlation needs of desired state: the
/// key of each identity's desired account on this system.
pub fn correlate_keys(
    system: &SystemId,
    accounts: &SystemAccounts,
    stored_links: &[Link],
    identities: &[Identity],
    keys: &[(&IdentityId, &AccountKey)],
    rule: Option<&CorrelationConfig>,
) -> Correlation {
    let mut out = Correlation::default();
    let mut linked_accounts: BTreeSet<&AccountKey> = BTreeSet::new();
    let mut linked_identities: BTreeSet<&IdentityId> = BTreeSet::new();
    for l in stored_links.iter().filter(|l| &l.system == system) {
        if accounts.accounts.contains_key(&l.account) {
            linked_accounts.insert(&l.account);
            linked_identities.insert(&l.identity);
            out.links.push(l.clone());
        } else {
            out.remove.push((l.system.clone(), l.account.clone()));
        }
    }

    // Index identities by their correlation value and by the key their account would get.
    let mut by_value: HashMap<String, Vec<&IdentityId>> = HashMap::new();
    if let Some(rule) = rule {
        for i in identities {
            let v = if rule.identity == "id" {
                i.id().as_str()
            } else {
                i.record.attribute(&rule.identity)
            };
            if !v.trim().is_empty() {
                by_value.entry(norm(v)).or_default().push(i.id());
            }
        }
    }
    let mut by_key: HashMap<String, Vec<&IdentityId>> = HashMap::new();
    for (id, key) in keys {
        by_key.entry(norm(key.as_str())).or_default().push(id);
    }

    let mut candidates: BTreeMap<&AccountKey, BTreeSet<&IdentityId>> = BTreeMap::new();
    for (key, acct) in &accounts.accounts {
        if linked_accounts.contains(key) {
            continue;
        }
        let mut c: BTreeSet<&IdentityId> = BTreeSet::new();
        if let Some(rule) = rule {
            let v = if rule.account == "key" {
                Some(key.as_str())
            } else {
                acct.attributes.get(&rule.account).map(String::as_str)
            };
            if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                c.extend(by_value.get(&norm(v)).into_iter().flatten().copied());
            }
        }
        c.extend(
            by_key
                .get(&norm(key.as_str()))
                .into_iter()
                .flatten()
                .copied(),
        );
        c.retain(|i| !linked_identities.contains(i));
        if !c.is_empty() {
            candidates.insert(key, c);
        }
    }
    // How many accounts each identity matched.
    let mut per_identity: HashMap<&IdentityId, usize> = HashMap::new();
    for ids in candidates.values() {
        for i in ids {
            *per_identity.entry(i).or_insert(0) += 1;
        }
    }
    for (key, ids) in candidates {
        let mut it = ids.iter();
        match (it.next(), it.next()) {
            (Some(only), None) if per_identity.get(only) == Some(&1) => {
                let link = Link {
                    system: system.clone(),
                    account: key.clone(),
                    identity: (*only).clone(),
                };
                out.add.push(link.clone());
                out.links.push(link);
            }
            _ => out.findings.push(Finding::Ambiguous {
                system: system.clone(),
                account: key.clone(),
                identities: ids.into_iter().cloned().collect(),
            }),
        }
    }
    out.links.sort();
    out
}
