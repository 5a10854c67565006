//! Helpers of the LDAP tests: system configurations, operations, and a
//! direct LDAP connection (ldap3, not the connector) to look at what the
//! directory really holds.

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use std::collections::BTreeMap;
use std::path::Path;
use tenure_connectors::ldap::LdapConnector;
use tenure_connectors::{Connector, ConnectorError};
use tenure_core::config::{Config, SystemConfig};
use tenure_core::{AccountKey, EntitlementName, Operation, SystemId};

pub const SYSTEM: &str = "dir";

/// The account attributes of the test systems: account attribute → CEL.
pub const ACCOUNT_ATTRIBUTES: &[(&str, &str)] = &[
    ("cn", "identity.name"),
    ("sn", "identity.family_name"),
    ("email", "identity.email"),
    ("display_name", "identity.display_name"),
    ("department", "identity.department"),
];

/// A system `dir` of kind `ldap` with the test account mapping and these settings.
pub fn system(settings: toml::Table) -> SystemConfig {
    system_with(settings, ACCOUNT_ATTRIBUTES)
}

/// A system `dir` of kind `ldap` with this account mapping.
pub fn system_with(settings: toml::Table, attributes: &[(&str, &str)]) -> SystemConfig {
    let mut attrs = toml::Table::new();
    for (a, e) in attributes {
        attrs.insert((*a).into(), (*e).into());
    }
    let mut account = toml::Table::new();
    account.insert("key".into(), "identity.username".into());
    account.insert("attributes".into(), attrs.into());
    let mut sys = toml::Table::new();
    sys.insert("id".into(), SYSTEM.into());
    sys.insert("kind".into(), "ldap".into());
    sys.insert("account".into(), account.into());
    sys.insert("settings".into(), settings.into());
    let mut root = toml::Table::new();
    root.insert(
        "system".into(),
        toml::Value::Array(vec![toml::Value::Table(sys)]),
    );
    let text = toml::to_string(&root).expect("serialise config");
    let cfg = Config::parse(vec![("dir.toml".to_owned(), text)]).expect("parse config");
    cfg.systems[0].item.clone()
}

/// `{ file = NAME }`, after writing `secret` into `dir/NAME`.
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> toml::Value {
    std::fs::write(dir.join(name), format!("{secret}\n")).expect("write secret");
    let mut t = toml::Table::new();
    t.insert("file".into(), name.into());
    t.into()
}

pub async fn connector(system: &SystemConfig, dir: &Path) -> LdapConnector {
    match LdapConnector::new(system, dir).await {
        Ok(c) => c,
        Err(e) => panic!("build: {e}"),
    }
}

/// Builds through the registry, as the engine does.
pub async fn boxed(system: &SystemConfig, dir: &Path) -> Box<dyn Connector> {
    match tenure_connectors::build(system, dir).await {
        Ok(c) => c,
        Err(e) => panic!("build: {e}"),
    }
}

pub fn key(s: &str) -> AccountKey {
    AccountKey::new(s).expect("account key")
}

pub fn ent(s: &str) -> EntitlementName {
    EntitlementName::new(s).expect("entitlement")
}

/// The operation builders of the SQL connector's tests, on this system.
fn here(mut op: Operation) -> Operation {
    op.system = SystemId::new(SYSTEM).expect("system id");
    op
}

pub fn create(account: &str, attrs: &[(&str, &str)]) -> Operation {
    here(crate::support::create(account, attrs))
}

/// A person's attributes for `name`.
pub fn person(name: &str) -> Vec<(String, String)> {
    vec![
        ("cn".into(), format!("{name} Example")),
        ("sn".into(), "Example".into()),
        ("email".into(), format!("{name}@example.com")),
        ("display_name".into(), format!("{name} E.")),
        ("department".into(), "Sales".into()),
    ]
}

pub fn create_person(account: &str) -> Operation {
    let a = person(account);
    let refs: Vec<(&str, &str)> = a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    create(account, &refs)
}

pub fn update(account: &str, attrs: &[(&str, &str)]) -> Operation {
    here(crate::support::update(account, attrs))
}

pub fn enable(account: &str) -> Operation {
    here(crate::support::enable(account))
}

pub fn disable(account: &str) -> Operation {
    here(crate::support::disable(account))
}

pub fn add(account: &str, e: &str) -> Operation {
    here(crate::support::add(account, e))
}

pub fn remove(account: &str, e: &str) -> Operation {
    here(crate::support::remove(account, e))
}

pub fn delete(account: &str) -> Operation {
    here(crate::support::delete(account))
}

pub fn archive(account: &str) -> Operation {
    here(crate::support::op(
        account,
        tenure_core::Action::ArchiveAccount { to: None },
    ))
}

/// Asserts every result is Ok.
#[track_caller]
pub fn all_ok(results: &[Result<(), ConnectorError>]) {
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            panic!("operation {i} failed: {e}");
        }
    }
}

/// An entry as read directly: attribute names lower-cased, values sorted.
pub type Attrs = BTreeMap<String, Vec<String>>;

/// A direct, administrative LDAP connection for assertions.
pub struct Inspector {
    ldap: ldap3::Ldap,
}

impl Inspector {
    pub async fn connect(url: &str, bind_dn: &str, password: &str) -> Inspector {
        let settings = LdapConnSettings::new().set_no_tls_verify(true);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .expect("inspector connection");
        ldap3::drive!(conn);
        ldap.simple_bind(bind_dn, password)
            .await
            .expect("inspector bind")
            .success()
            .expect("inspector bind result");
        Inspector { ldap }
    }

    /// Every entry matching `filter` under `base`: DN → attributes (all user
    /// attributes plus the operational ones asked for in `extra`).
    pub async fn search(
        &mut self,
        base: &str,
        filter: &str,
        extra: &[&str],
    ) -> BTreeMap<String, Attrs> {
        let mut attrs = vec!["*"];
        attrs.extend_from_slice(extra);
        let (entries, res) = self
            .ldap
            .search(base, Scope::Subtree, filter, attrs)
            .await
            .expect("inspector search")
            .success()
            .unwrap_or_else(|e| panic!("search {base} {filter}: {e}"));
        let _ = res;
        entries
            .into_iter()
            .map(|e| {
                let e = SearchEntry::construct(e);
                let mut a: Attrs = BTreeMap::new();
                for (k, mut v) in e.attrs {
                    v.sort();
                    a.insert(k.to_ascii_lowercase(), v);
                }
                for (k, v) in e.bin_attrs {
                    a.insert(
                        k.to_ascii_lowercase(),
                        v.iter().map(|b| format!("<{} bytes>", b.len())).collect(),
                    );
                }
                (e.dn, a)
            })
            .collect()
    }

    /// One entry by DN, or None.
    pub async fn entry(&mut self, dn: &str, extra: &[&str]) -> Option<Attrs> {
        let mut attrs = vec!["*"];
        attrs.extend_from_slice(extra);
        let r = self
            .ldap
            .search(dn, Scope::Base, "(objectClass=*)", attrs)
            .await
            .expect("inspector search");
        if r.1.rc == 32 {
            return None;
        }
        let (mut entries, _) = r.success().unwrap_or_else(|e| panic!("read {dn}: {e}"));
        let e = SearchEntry::construct(entries.pop()?);
        let mut a: Attrs = BTreeMap::new();
        for (k, mut v) in e.attrs {
            v.sort();
            a.insert(k.to_ascii_lowercase(), v);
        }
        Some(a)
    }

    /// The values of one attribute of an entry (empty when absent).
    pub async fn values(&mut self, dn: &str, attr: &str) -> Vec<String> {
        self.entry(dn, &[attr])
            .await
            .and_then(|mut a| a.remove(&attr.to_ascii_lowercase()))
            .unwrap_or_default()
    }

    /// The DNs of the entries under `base` matching `filter`.
    pub async fn dns(&mut self, base: &str, filter: &str) -> Vec<String> {
        let (entries, _) = self
            .ldap
            .search(base, Scope::Subtree, filter, vec!["1.1"])
            .await
            .expect("inspector search")
            .success()
            .unwrap_or_else(|e| panic!("search {base} {filter}: {e}"));
        let mut v: Vec<String> = entries
            .into_iter()
            .map(|e| SearchEntry::construct(e).dn)
            .collect();
        v.sort();
        v
    }

    pub async fn add(&mut self, dn: &str, attrs: &[(&str, &[&str])]) {
        let attrs: Vec<(&str, std::collections::HashSet<&str>)> = attrs
            .iter()
            .map(|(a, v)| (*a, v.iter().copied().collect()))
            .collect();
        self.ldap
            .add(dn, attrs)
            .await
            .expect("inspector add")
            .success()
            .unwrap_or_else(|e| panic!("add {dn}: {e}"));
    }

    pub async fn modify(&mut self, dn: &str, mods: Vec<ldap3::Mod<&str>>) {
        self.ldap
            .modify(dn, mods)
            .await
            .expect("inspector modify")
            .success()
            .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
    }
}
