//! The test configuration, people, fixed times, and a connector simulator.

#![allow(dead_code)]

use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet};
use tenure_core::config::{Config, ConfigError, ConfigErrors};
use tenure_core::plan::{Diff, DiffInput, SystemInfo, diff};
use tenure_core::policy::{Grant, Policy};
use tenure_core::state::{Account, ActualState, DesiredState, SystemAccounts};
use tenure_core::{
    AccountKey, Action, EmploymentType, EntitlementName, Identity, IdentityId, IdentityRecord,
    LifecycleStatus, Link, Operation, SourceId, SystemId,
};

pub const SOURCES: &str = r#"
[guard]
max_deprovision_percent = 20
min_count = 3

[[source]]
id = "hr"
format = "csv"
path = "hr.csv"
missing = "leaver"
required = ["email"]

[source.columns]
id = "employee_id"
employment_type = "type"
manager = "manager_id"
start_date = "start_date"
end_date = "end_date"

[source.attributes]
given_name = "first_name"
family_name = "last_name"
email = "work_email"
department = "department"
title = "job_title"
location = "office"

[source.employment_types]
FTE = "employee"
CTR = "contractor"
"#;

pub const SYSTEMS: &str = r#"
[[system]]
id = "crm"
name = "Sales CRM"
kind = "sql"
entitlements = ["sales-rep", "sales-manager", "reports"]

[system.account]
key = "identity.email.split('@')[0]"

[system.account.attributes]
email = "identity.email"
display_name = "identity.given_name + ' ' + identity.family_name"
department = "identity.department"

[system.correlation]
account = "email"
identity = "email"

[system.settings]
url = "sqlite://crm.db"
table = "users"

[[system]]
id = "wiki"
name = "Wiki"
kind = "sql"
entitlements = ["readers", "editors", "sales-space"]

[system.account]
key = "identity.email.split('@')[0]"

[system.account.attributes]
email = "identity.email"
title = "identity.title"

[system.correlation]
account = "email"
identity = "email"
"#;

pub const ROLES: &str = r#"
[[role]]
id = "staff"
description = "Everyone who works here"
accounts = ["wiki"]
entitlements = ["wiki:readers"]

[[role]]
id = "sales-rep"
entitlements = ["crm:sales-rep", "wiki:sales-space"]
roles = ["staff"]

[[role]]
id = "sales-manager"
entitlements = ["crm:sales-manager", "crm:reports"]
roles = ["sales-rep"]

[[role]]
id = "engineer"
entitlements = ["wiki:editors"]
roles = ["staff"]
"#;

pub const RULES: &str = r#"
[[rule]]
id = "everyone"
description = "Every active person"
when = "true"
roles = ["staff"]

[[rule]]
id = "sales"
when = 'identity.department == "Sales"'
roles = ["sales-rep"]

[[rule]]
id = "sales-managers"
when = 'identity.department == "Sales" && identity.title.contains("Manager")'
roles = ["sales-manager"]

[[rule]]
id = "engineering"
when = 'identity.department == "Engineering"'
roles = ["engineer"]
"#;

pub const DEPROVISIONING: &str = r#"
[[deprovisioning]]
id = "contractors"
when = 'identity.employment_type == "contractor"'
mode = "immediate"

[[deprovisioning]]
id = "staged"
when = "true"
mode = "staged"

[[deprovisioning.step]]
after = "0d"
action = "disable"

[[deprovisioning.step]]
after = "1d"
action = "remove_memberships"

[[deprovisioning.step]]
after = "30d"
action = "delete"
"#;

/// The configuration directory, as (file name, text).
pub fn files() -> Vec<(String, String)> {
    [
        ("sources.toml", SOURCES),
        ("systems.toml", SYSTEMS),
        ("roles.toml", ROLES),
        ("rules.toml", RULES),
        ("deprovisioning.toml", DEPROVISIONING),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_owned(), t.to_owned()))
    .collect()
}

/// The base files plus extra ones.
pub fn files_with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut f = files();
    f.extend(
        extra
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned())),
    );
    f
}

/// Parses and compiles, with no connector settings check.
pub fn compile(files: Vec<(String, String)>) -> Result<Policy, ConfigErrors> {
    let config = Config::parse(files)?;
    Policy::compile(config, &|_| vec![])
}

/// The valid test policy.
pub fn policy() -> Policy {
    compile(files()).unwrap_or_else(|e| panic!("the test configuration must compile:\n{e}"))
}

/// The problems `tenure check` reports for these files (they must be invalid).
pub fn problems(files: Vec<(String, String)>) -> Vec<ConfigError> {
    match compile(files) {
        Ok(_) => panic!("the configuration must be rejected"),
        Err(ConfigErrors(e)) => e,
    }
}

/// The 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|n| n + 1)
        .unwrap_or_else(|| panic!("{needle:?} is not in the text"))
}

/// The 1-based line of the `nth` (from 0) line containing `needle`.
pub fn nth_line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(n, _)| n + 1)
        .unwrap_or_else(|| panic!("{needle:?} is not in the text {nth} times"))
}

pub fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The fixed "now" of the tests: a Monday morning.
pub fn now() -> DateTime<Utc> {
    at("2026-03-02T09:00:00Z")
}

pub fn today() -> NaiveDate {
    now().date_naive()
}

pub fn sys(s: &str) -> SystemId {
    SystemId::new(s).unwrap()
}
pub fn iid(s: &str) -> IdentityId {
    IdentityId::new(s).unwrap()
}
pub fn key(s: &str) -> AccountKey {
    AccountKey::new(s).unwrap()
}
pub fn ent(s: &str) -> EntitlementName {
    EntitlementName::new(s).unwrap()
}
pub fn hr() -> SourceId {
    SourceId::new("hr").unwrap()
}

/// A person, built up step by step.
#[derive(Clone)]
pub struct Person {
    pub record: IdentityRecord,
    pub suspended: bool,
    pub deleted: bool,
}

/// A permanent employee who started long ago, with a work email from the given name.
pub fn person(id: &str, given: &str, family: &str, department: &str, title: &str) -> Person {
    let attributes = [
        ("given_name", given.to_owned()),
        ("family_name", family.to_owned()),
        ("email", format!("{}@example.com", given.to_lowercase())),
        ("department", department.to_owned()),
        ("title", title.to_owned()),
        ("location", "London".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Person {
        record: IdentityRecord {
            id: iid(id),
            employment_type: EmploymentType::Employee,
            manager: None,
            start_date: Some(day("2020-01-06")),
            end_date: None,
            attributes,
            groups: BTreeSet::new(),
        },
        suspended: false,
        deleted: false,
    }
}

impl Person {
    pub fn attr(mut self, k: &str, v: &str) -> Self {
        self.record.attributes.insert(k.to_owned(), v.to_owned());
        self
    }
    pub fn starts(mut self, d: &str) -> Self {
        self.record.start_date = Some(day(d));
        self
    }
    pub fn ends(mut self, d: &str) -> Self {
        self.record.end_date = Some(day(d));
        self
    }
    pub fn contractor(mut self) -> Self {
        self.record.employment_type = EmploymentType::Contractor;
        self
    }
    pub fn suspended(mut self) -> Self {
        self.suspended = true;
        self
    }
    pub fn deleted(mut self) -> Self {
        self.deleted = true;
        self
    }
    pub fn group(mut self, g: &str) -> Self {
        self.record.groups.insert(g.to_owned());
        self
    }
    pub fn manager(mut self, m: &str) -> Self {
        self.record.manager = Some(iid(m));
        self
    }
    /// The identity as stored, its status evaluated for the tests' `today`.
    pub fn build(self) -> Identity {
        let status = if self.deleted {
            LifecycleStatus::Deleted
        } else {
            self.record.status_on(today())
        };
        Identity {
            record: self.record,
            source: hr(),
            status,
            suspended: self.suspended,
        }
    }
}

pub fn ada() -> Person {
    person("E1001", "Ada", "Lovelace", "Sales", "Account Executive")
}
pub fn grace() -> Person {
    person("E1002", "Grace", "Hopper", "Engineering", "Rear Admiral")
}
pub fn linus() -> Person {
    person(
        "E1003",
        "Linus",
        "Torvalds",
        "Engineering",
        "Kernel Engineer",
    )
}
pub fn margaret() -> Person {
    person("E1004", "Margaret", "Hamilton", "Sales", "Sales Manager")
}
pub fn ken() -> Person {
    person("C2001", "Ken", "Thompson", "Engineering", "Consultant").contractor()
}

pub fn grant(
    identity: &str,
    role: &str,
    reason: &str,
    from: Option<&str>,
    until: Option<&str>,
) -> Grant {
    Grant {
        identity: iid(identity),
        role: tenure_core::RoleId::new(role).unwrap(),
        reason: reason.to_owned(),
        valid_from: from.map(at),
        valid_until: until.map(at),
    }
}

pub fn account(k: &str, attrs: &[(&str, &str)], enabled: bool, ents: &[&str]) -> Account {
    Account {
        key: key(k),
        attributes: attrs
            .iter()
            .map(|(a, v)| ((*a).to_owned(), (*v).to_owned()))
            .collect(),
        enabled,
        entitlements: ents.iter().map(|e| ent(e)).collect(),
        archived: false,
    }
}

/// Actual state from (system, accounts).
pub fn actual_of(systems: &[(&str, Vec<Account>)]) -> ActualState {
    ActualState {
        systems: systems
            .iter()
            .map(|(s, accts)| {
                (
                    sys(s),
                    SystemAccounts {
                        accounts: accts.iter().map(|a| (a.key.clone(), a.clone())).collect(),
                    },
                )
            })
            .collect(),
    }
}

pub fn link(system: &str, account: &str, identity: &str) -> Link {
    Link {
        system: sys(system),
        account: key(account),
        identity: iid(identity),
    }
}

/// What the planner knows about each system of the test policy (full capabilities).
pub fn infos(policy: &Policy) -> BTreeMap<SystemId, SystemInfo> {
    policy.system_infos(&BTreeMap::new())
}

/// Evaluates and diffs: a plan body for these people at `now`.
pub struct World {
    pub policy: Policy,
    pub infos: BTreeMap<SystemId, SystemInfo>,
    pub actual: ActualState,
    pub links: Vec<Link>,
}

impl World {
    pub fn new() -> World {
        let policy = policy();
        let infos = infos(&policy);
        World {
            policy,
            infos,
            actual: ActualState::default(),
            links: Vec::new(),
        }
    }

    pub fn desired(
        &self,
        people: &[Identity],
        grants: &[Grant],
        now: DateTime<Utc>,
    ) -> DesiredState {
        let (desired, errors) = self.policy.evaluate_all(people, grants, now);
        assert!(errors.is_empty(), "{errors:?}");
        desired
    }

    /// The diff for these people at `now` against the world's actual state and links.
    pub fn plan(&self, people: &[Identity], now: DateTime<Utc>) -> Diff {
        let desired = self.desired(people, &[], now);
        diff(&DiffInput {
            systems: &self.infos,
            desired: &desired,
            actual: &self.actual,
            links: &self.links,
        })
    }

    /// Plans and applies with the simulated connectors; returns the operations applied.
    pub fn apply(&mut self, people: &[Identity], now: DateTime<Utc>) -> Vec<Operation> {
        let d = self.plan(people, now);
        let (actual, links) = simulate(&self.actual, &self.links, &d.operations);
        self.actual = actual;
        self.links = links;
        d.operations
    }
}

/// Applies operations to actual state the way connectors do, and stores a link
/// for each account Tenure creates (as the engine does). Strict: an operation on
/// an account that does not exist, or a create of one that does, panics.
pub fn simulate(
    actual: &ActualState,
    links: &[Link],
    ops: &[Operation],
) -> (ActualState, Vec<Link>) {
    let mut actual = actual.clone();
    let mut links = links.to_vec();
    for op in ops {
        let accounts = &mut actual
            .systems
            .entry(op.system.clone())
            .or_default()
            .accounts;
        if let Action::CreateAccount { attributes } = &op.action {
            assert!(
                !accounts.contains_key(&op.account),
                "create of an existing account: {op:?}"
            );
            accounts.insert(
                op.account.clone(),
                Account {
                    key: op.account.clone(),
                    attributes: attributes.clone(),
                    enabled: true,
                    entitlements: BTreeSet::new(),
                    archived: false,
                },
            );
            if let Some(id) = &op.identity {
                links.push(Link {
                    system: op.system.clone(),
                    account: op.account.clone(),
                    identity: id.clone(),
                });
            }
            continue;
        }
        if let Action::DeleteAccount = &op.action {
            assert!(
                accounts.remove(&op.account).is_some(),
                "delete of a missing account: {op:?}"
            );
            links.retain(|l| !(l.system == op.system && l.account == op.account));
            continue;
        }
        let acct = accounts
            .get_mut(&op.account)
            .unwrap_or_else(|| panic!("operation on a missing account: {op:?}"));
        match &op.action {
            Action::EnableAccount => acct.enabled = true,
            Action::DisableAccount => acct.enabled = false,
            Action::UpdateAccount { changes } => {
                for (k, c) in changes {
                    acct.attributes.insert(k.clone(), c.after.clone());
                }
            }
            Action::AddMembership { entitlement } => {
                acct.entitlements.insert(entitlement.clone());
            }
            Action::RemoveMembership { entitlement } => {
                acct.entitlements.remove(entitlement);
            }
            Action::ArchiveAccount { .. } => acct.archived = true,
            Action::CreateAccount { .. } | Action::DeleteAccount => unreachable!(),
        }
    }
    links.sort();
    (actual, links)
}

/// An operation as a short line, for compact assertions:
/// `crm ada create`, `wiki ada add_membership readers`.
pub fn brief(op: &Operation) -> String {
    let mut s = format!("{} {} {}", op.system, op.account, op.action.name());
    match &op.action {
        Action::AddMembership { entitlement } | Action::RemoveMembership { entitlement } => {
            s.push(' ');
            s.push_str(entitlement.as_str());
        }
        Action::UpdateAccount { changes } => {
            let ks: Vec<&str> = changes.keys().map(String::as_str).collect();
            s.push(' ');
            s.push_str(&ks.join(","));
        }
        Action::ArchiveAccount { to: Some(to) } => {
            s.push_str(" to ");
            s.push_str(to.as_str());
        }
        _ => {}
    }
    s
}

pub fn briefs(ops: &[Operation]) -> Vec<String> {
    ops.iter().map(brief).collect()
}
