//! The LDAP and Active Directory connector (`kind = "ldap"`): provisions
//! people's entries and their group memberships in OpenLDAP (or another
//! standard directory) and in Active Directory, over `ldap://` (optionally
//! with StartTLS) or `ldaps://`.
//!
//! ```toml
//! [system.settings]
//! url = "ldaps://ldap.example.com"
//! bind_dn = "cn=tenure,ou=services,dc=example,dc=com"
//! password = { env = "LDAP_PASSWORD" }       # or { file = "secrets/ldap" }
//! people_base = "ou=people,dc=example,dc=com"
//! groups_base = "ou=groups,dc=example,dc=com" # entitlement "sales" = cn=sales,ou=groups,…
//! attributes = { display_name = "displayName", email = "mail" }
//! disable_method = "ppolicy"                  # or "move", "attribute"; "ad" on Active Directory
//! ```
//!
//! Every key is documented in `docs/configuration.md`. What it does:
//! - An account is the entry under `people_base` whose key attribute
//!   (`uid`, `sAMAccountName`) holds the account key. New entries are named
//!   by the RDN template (`uid={key}`) under `people_base` or the
//!   `container` template; an update that changes a value the templates use
//!   renames or moves the entry (modifyDN).
//! - [`Connector::apply`] runs operations on different accounts concurrently
//!   over a few persistent connections (LDAP multiplexes requests on one
//!   connection), and the operations of one account one after the other, in
//!   order. Each operation is one or two requests; `Ok` is reported only for a
//!   request the server answered with success. An operation that fails
//!   stops the later operations of the same account in the batch.
//! - Updates replace only the attributes that changed (an empty new value
//!   removes the attribute); memberships add or delete one value of the
//!   group's membership attribute, never rewriting the group.
//! - Idempotent: creating an entry that exists with the same key makes its
//!   attributes match; adding a member that is already there, removing one
//!   that is not, deleting an entry that is gone and disabling what is
//!   disabled all succeed.
//! - [`Connector::read_accounts`] reads people and groups with paged searches
//!   (RFC 2696); on Active Directory the memberships come from each person's
//!   `memberOf` (so large groups need no ranged retrieval).
//!   [`LdapConnector::read_changes_since`] reads only what changed since a
//!   marker (OpenLDAP's `entryCSN`, or Active Directory's `uSNChanged`).
//! - Every DN value and filter value built from data is escaped (RFC 4514,
//!   RFC 4515), and DNs the server returns are compared by their parsed,
//!   case-folded components.
//!
//! What it deliberately does not do: create containers or groups (a missing
//! parent or group is a permanent error naming it), delete entries that have
//! children, read or write passwords other than Active Directory's initial
//! password, or retry: failures are reported with
//! [`ConnectorError::is_transient`] and the engine's queue retries them.

mod dn;
mod pool;
mod settings;

use crate::Connector;
use crate::error::{ConnectorError, OpLabel};
use dn::{Dn, eq_filter, escape_value, normalize};
use futures::StreamExt;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Mod, ResultEntry, Scope, SearchEntry};
use pool::{ConnectFail, Fail, Password, Pool, rc};
use settings::{Directory, DisableMethod, InitialPassword, MemberValue, Settings};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use tenure_core::config::SystemConfig;
use tenure_core::plan::AttributeChange;
use tenure_core::state::{Account, SystemAccounts};
use tenure_core::{AccountKey, Action, Capabilities, EntitlementName, Operation, SystemId};

/// The connector kind this module implements.
pub const KIND: &str = "ldap";

/// `userAccountControl` of a normal, enabled account (NORMAL_ACCOUNT).
const UAC_NORMAL: u32 = 0x200;
/// `userAccountControl`'s ACCOUNTDISABLE bit.
const UAC_DISABLED: u32 = 0x2;
/// The ppolicy value that locks an account until an administrator unlocks it.
const PPOLICY_LOCKED: &str = "000001010000Z";
/// Entries in the DN cache before it is emptied (about 200 bytes each).
const MAX_CACHED_DNS: usize = 500_000;
/// Members per filter when reading the groups of changed accounts.
const FILTER_CHUNK: usize = 50;

/// Checks an `ldap` system's settings without connecting. Every problem is
/// returned, each naming its key (`settings.url`, `settings.rdn` …).
pub fn validate(system: &SystemConfig) -> Result<(), Vec<String>> {
    Settings::parse(system).map(|_| ())
}

/// Where [`LdapConnector::read_changes_since`] stopped: give it back to the
/// next call. Opaque; store it as text ([`ChangeMarker::as_str`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeMarker(String);

impl ChangeMarker {
    /// A marker stored earlier as text.
    pub fn new(text: impl Into<String>) -> ChangeMarker {
        ChangeMarker(text.into())
    }
    /// The marker as text, for storing.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What changed in a directory since a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Accounts whose entry changed (attributes, enabled state, name or
    /// place), each read in full, with all its entitlements.
    pub accounts: SystemAccounts,
    /// Groups whose entry changed (a member added or removed), with their
    /// current members: an account missing from a group's set has left it.
    pub entitlements: BTreeMap<EntitlementName, BTreeSet<AccountKey>>,
    /// Where to continue next time.
    pub marker: ChangeMarker,
}

/// The LDAP connector for one system.
pub struct LdapConnector {
    system: SystemId,
    settings: Settings,
    pool: Pool,
    initial_password: Option<Password>,
    /// Account key → DN, for entries the server confirmed (read, found,
    /// created or renamed by this connector).
    dns: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for LdapConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConnector")
            .field("system", &self.system)
            .field("pool", &self.pool)
            .field("people_base", &self.settings.people_base)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why one operation failed.
enum OpError {
    /// The server failed or refused a request about this entry.
    Ldap { dn: String, fail: Fail },
    /// No connection could be made (or bound).
    Connect(ConnectFail),
    /// The connector refused it without sending it, or the directory's
    /// contents make it impossible.
    Rejected(String),
}

/// State shared by the operations of one batch.
#[derive(Default)]
struct Batch {
    /// The first connection failure: later operations of the batch fail fast with it.
    connect_failed: Mutex<Option<ConnectFail>>,
}

/// One entry as read: its DN and attributes (lower-cased names).
#[derive(Debug, Clone)]
struct Entry {
    dn: String,
    attrs: HashMap<String, Vec<String>>,
}

impl Entry {
    fn from_search(e: SearchEntry) -> Entry {
        Entry {
            dn: e.dn,
            attrs: e
                .attrs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        }
    }
    fn values(&self, attr: &str) -> &[String] {
        self.attrs
            .get(&attr.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    fn first(&self, attr: &str) -> Option<&str> {
        self.values(attr).first().map(String::as_str)
    }
}

/// Parses a raw entry; `ldap3` panics on malformed BER, which a broken or
/// hostile server could send, so that is caught and reported.
fn parse_entry(re: ResultEntry) -> Result<Entry, Fail> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(re)))
        .map(Entry::from_search)
        .map_err(|_| Fail::local("the server sent a malformed search result entry", false))
}

fn values<I, V>(vals: I) -> HashSet<Vec<u8>>
where
    I: IntoIterator<Item = V>,
    V: Into<Vec<u8>>,
{
    vals.into_iter().map(Into::into).collect()
}

/// Active Directory's `unicodePwd` value: the password in double quotes, UTF-16LE.
fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// A random password that meets Active Directory's complexity rules.
fn random_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 24];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| "no random numbers for an initial password".to_owned())?;
    let body: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    Ok(format!("Tn{body}-7x"))
}

/// Whether two keys are the same for a directory: case-insensitive, with
/// insignificant spaces ignored (RFC 4518).
fn same_key(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    norm(a) == norm(b)
}

/// Windows FILETIME (100 ns since 1601) → UTC.
fn filetime(v: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    if v <= 0 || v == i64::MAX {
        return None;
    }
    let secs = v / 10_000_000 - 11_644_473_600;
    let nanos = u32::try_from((v % 10_000_000) * 100).ok()?;
    chrono::DateTime::from_timestamp(secs, nanos)
}

impl LdapConnector {
    /// Builds the connector: checks the settings, resolves the password (and
    /// the initial password and CA file; files relative to `config_dir`)
    /// and makes a pool that connects lazily. Needs a Tokio runtime.
    pub async fn new(system: &SystemConfig, config_dir: &Path) -> Result<Self, ConnectorError> {
        let id = system.id.clone();
        let settings = Settings::parse(system).map_err(|problems| ConnectorError::Settings {
            system: id.clone(),
            problems,
        })?;
        let secret_err = |reason: String| ConnectorError::Secret {
            system: id.clone(),
            reason,
        };
        let password =
            pool::resolve_secret(&settings.password, "password", config_dir).map_err(secret_err)?;
        let initial_password = match &settings.initial_password {
            InitialPassword::Secret(s) => {
                Some(pool::resolve_secret(s, "initial_password", config_dir).map_err(secret_err)?)
            }
            _ => None,
        };
        let conn_settings =
            pool::conn_settings(&settings, config_dir).map_err(|p| ConnectorError::Settings {
                system: id.clone(),
                problems: vec![p],
            })?;
        let pool = Pool::new(
            settings.url.clone(),
            conn_settings,
            settings.bind_dn.clone(),
            password,
            settings.operation_timeout,
            settings.pool_size,
        );
        Ok(LdapConnector {
            system: id,
            settings,
            pool,
            initial_password,
            dns: Mutex::new(HashMap::new()),
        })
    }

    /// Closes the pooled connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn ad(&self) -> bool {
        self.settings.directory == Directory::ActiveDirectory
    }

    // ---- errors ----

    fn directory_error(&self, what: String, fail: &Fail) -> ConnectorError {
        ConnectorError::Directory {
            system: self.system.clone(),
            what,
            message: fail.message.clone(),
            code: fail.code,
            transient: fail.transient,
        }
    }

    fn connect_error(&self, prefix: &str, f: &ConnectFail) -> ConnectorError {
        match f {
            ConnectFail::Connect(fail) => {
                self.directory_error(format!("{prefix}connecting to {}", self.pool.url()), fail)
            }
            ConnectFail::Bind(fail) => self.directory_error(
                format!(
                    "{prefix}binding as {} to {}",
                    self.pool.bind_dn(),
                    self.pool.url()
                ),
                fail,
            ),
        }
    }

    fn op_error(&self, op: &Operation, e: OpError) -> ConnectorError {
        let label = OpLabel::of(op);
        match e {
            OpError::Ldap { dn, fail } => self.directory_error(format!("{label} at {dn}"), &fail),
            OpError::Connect(f) => self.connect_error(&format!("{label}: "), &f),
            OpError::Rejected(reason) => ConnectorError::Rejected {
                system: self.system.clone(),
                op: label,
                reason,
            },
        }
    }

    fn read_error(&self, what: String, e: OpError) -> ConnectorError {
        match e {
            OpError::Ldap { dn, fail } => self.directory_error(format!("{what} (at {dn})"), &fail),
            OpError::Connect(f) => self.connect_error(&format!("{what}: "), &f),
            OpError::Rejected(reason) => self.directory_error(what, &Fail::local(reason, false)),
        }
    }

    // ---- requests ----

    async fn conn(&self, b: &Batch) -> Result<ldap3::Ldap, OpError> {
        if let Some(f) = lock(&b.connect_failed).clone() {
            return Err(OpError::Connect(f));
        }
        match self.pool.get().await {
            Ok(mut l) => {
                l.with_timeout(self.pool.op_timeout());
                Ok(l)
            }
            Err(f) => {
                lock(&b.connect_failed).get_or_insert_with(|| f.clone());
                Err(OpError::Connect(f))
            }
        }
    }

    async fn add(
        &self,
        b: &Batch,
        dn: &str,
        attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)>,
    ) -> Result<(), OpError> {
        let mut l = self.conn(b).await?;
        pool::check(l.add(dn, attrs).await).map_err(|fail| OpError::Ldap {
            dn: dn.to_owned(),
            fail,
        })
    }

    async fn modify(&self, b: &Batch, dn: &str, mods: Vec<Mod<Vec<u8>>>) -> Result<(), OpError> {
        let mut l = self.conn(b).await?;
        pool::check(l.modify(dn, mods).await).map_err(|fail| OpError::Ldap {
            dn: dn.to_owned(),
            fail,
        })
    }

    async fn delete_entry(&self, b: &Batch, dn: &str) -> Result<(), OpError> {
        let mut l = self.conn(b).await?;
        pool::check(l.delete(dn).await).map_err(|fail| OpError::Ldap {
            dn: dn.to_owned(),
            fail,
        })
    }

    async fn modify_dn(
        &self,
        b: &Batch,
        dn: &str,
        rdn: &str,
        parent: Option<&str>,
    ) -> Result<(), OpError> {
        let mut l = self.conn(b).await?;
        pool::check(l.modifydn(dn, rdn, true, parent).await).map_err(|fail| {
            let target = match parent {
                Some(p) => format!("{rdn},{p}"),
                None => format!(
                    "{rdn},{}",
                    dn.split_once(',').map(|(_, p)| p).unwrap_or_default()
                ),
            };
            OpError::Ldap {
                dn: format!("{dn} (renaming it to {target})"),
                fail,
            }
        })
    }

    /// Renames or moves an account's entry. Groups that hold its DN (when
    /// members are DNs and the directory does not keep them up to date
    /// itself, as Active Directory does) get the new DN before the rename
    /// and lose the old one after it, so that an interruption at any point
    /// loses no membership (at worst a stale value of a DN that no longer
    /// exists is left behind).
    async fn rename(
        &self,
        b: &Batch,
        key: &str,
        dn: &str,
        rdn: &str,
        parent: Option<&str>,
        new_dn: &str,
    ) -> Result<(), OpError> {
        let groups: Vec<String> = match &self.settings.groups {
            Some(g) if g.value == MemberValue::Dn && !self.ad() => {
                let filter = format!(
                    "(&(objectClass={}){})",
                    g.object_class,
                    eq_filter(&g.attribute, dn)
                );
                let found = self
                    .search(b, &g.base, Scope::OneLevel, &filter, &[])
                    .await?;
                let attr = g.attribute.as_bytes().to_vec();
                for group in &found {
                    match self
                        .modify(b, &group.dn, vec![Mod::Add(attr.clone(), values([new_dn]))])
                        .await
                    {
                        Err(OpError::Ldap { fail, .. })
                            if fail.is(rc::ATTRIBUTE_OR_VALUE_EXISTS) => {}
                        other => other?,
                    }
                }
                found.into_iter().map(|e| e.dn).collect()
            }
            _ => Vec::new(),
        };
        self.modify_dn(b, dn, rdn, parent).await?;
        self.remember(key, new_dn);
        if let Some(g) = &self.settings.groups {
            let attr = g.attribute.as_bytes().to_vec();
            for group in groups {
                match self
                    .modify(b, &group, vec![Mod::Delete(attr.clone(), values([dn]))])
                    .await
                {
                    Err(OpError::Ldap { fail, .. }) if fail.is(rc::NO_SUCH_ATTRIBUTE) => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }

    /// A search whose results fit in memory (no paging).
    async fn search(
        &self,
        b: &Batch,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
    ) -> Result<Vec<Entry>, OpError> {
        let mut l = self.conn(b).await?;
        let attrs: Vec<&str> = if attrs.is_empty() {
            vec!["1.1"]
        } else {
            attrs.iter().map(String::as_str).collect()
        };
        let err = |fail| OpError::Ldap {
            dn: base.to_owned(),
            fail,
        };
        let res = l
            .search(base, scope, filter, attrs)
            .await
            .map_err(|e| err(Fail::from(e)))?;
        if res.1.rc != 0 {
            return Err(err(Fail::from_code(res.1.rc, &res.1.text, &res.1.matched)));
        }
        res.0
            .into_iter()
            .map(|re| parse_entry(re).map_err(err))
            .collect()
    }

    /// A paged search (RFC 2696), handing each entry to `each`.
    async fn search_paged(
        &self,
        b: &Batch,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
        mut each: impl FnMut(Entry) + Send,
    ) -> Result<(), OpError> {
        let mut l = self.conn(b).await?;
        let err = |fail| OpError::Ldap {
            dn: base.to_owned(),
            fail,
        };
        let attrs: Vec<String> = if attrs.is_empty() {
            vec!["1.1".to_owned()]
        } else {
            attrs.to_vec()
        };
        let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.settings.page_size)),
        ];
        let mut stream = l
            .streaming_search_with(adapters, base, scope, filter, attrs)
            .await
            .map_err(|e| err(Fail::from(e)))?;
        loop {
            match stream.next().await {
                Ok(Some(re)) => each(parse_entry(re).map_err(err)?),
                Ok(None) => break,
                Err(e) => {
                    let _ = stream.finish().await;
                    return Err(err(Fail::from(e)));
                }
            }
        }
        let res = stream.finish().await;
        if res.rc != 0 {
            return Err(err(Fail::from_code(res.rc, &res.text, &res.matched)));
        }
        Ok(())
    }

    // ---- where accounts are ----

    fn remember(&self, key: &str, dn: &str) {
        let mut c = lock(&self.dns);
        if c.len() >= MAX_CACHED_DNS {
            c.clear();
        }
        c.insert(key.to_owned(), dn.to_owned());
    }

    fn forget(&self, key: &str) {
        lock(&self.dns).remove(key);
    }

    fn cached_dn(&self, key: &str) -> Option<String> {
        lock(&self.dns).get(key).cloned()
    }

    /// The DN an account has when it was created under `people_base` with an
    /// RDN of `{key}` alone, and nothing moved it.
    fn computed_dn(&self, key: &str) -> Option<String> {
        let s = &self.settings;
        if s.container.is_none() && s.rdn_template.single() == Some(&settings::Piece::Key) {
            Some(format!(
                "{}={},{}",
                s.rdn_attribute,
                escape_value(key),
                s.people_base
            ))
        } else {
            None
        }
    }

    /// The bases accounts are read from.
    fn account_bases(&self) -> Vec<String> {
        let mut bases = vec![self.settings.people_base.clone()];
        let outside =
            |c: &str| !Dn::parse(c).is_ok_and(|c| c.is_within(&self.settings.people_base_dn));
        if let DisableMethod::Move { container } = &self.settings.disable
            && outside(container)
        {
            bases.push(container.clone());
        }
        if let Some(container) = &self.settings.archive_container
            && outside(container)
        {
            bases.push(container.clone());
        }
        bases
    }

    /// Finds an account's entry by key (a search), with `attrs`.
    async fn find(&self, b: &Batch, key: &str, attrs: &[String]) -> Result<Option<Entry>, OpError> {
        let filter = format!(
            "(&{}{})",
            self.settings.account_filter,
            eq_filter(&self.settings.key_attribute, key)
        );
        let mut found = Vec::new();
        for base in self.account_bases() {
            found.extend(
                self.search(b, &base, Scope::Subtree, &filter, attrs)
                    .await?,
            );
        }
        match found.len() {
            0 => {
                self.forget(key);
                Ok(None)
            }
            1 => {
                let e = found.pop();
                if let Some(e) = &e {
                    self.remember(key, &e.dn);
                }
                Ok(e)
            }
            n => Err(OpError::Rejected(format!(
                "{n} entries have {}={key:?}: {}",
                self.settings.key_attribute,
                found
                    .iter()
                    .map(|e| e.dn.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }

    /// One entry by DN (a base search); `Ok(None)` when it does not exist.
    async fn probe(&self, b: &Batch, dn: &str, attrs: &[String]) -> Result<Option<Entry>, OpError> {
        match self
            .search(b, dn, Scope::Base, "(objectClass=*)", attrs)
            .await
        {
            Ok(mut v) => Ok(v.pop()),
            Err(OpError::Ldap { fail, .. }) if fail.is(rc::NO_SUCH_OBJECT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The account's DN (cached or found), and whether it is a guess that may be stale.
    async fn locate(&self, b: &Batch, key: &str) -> Result<Option<(String, bool)>, OpError> {
        if let Some(dn) = self.cached_dn(key).or_else(|| self.computed_dn(key)) {
            return Ok(Some((dn, true)));
        }
        Ok(self.find(b, key, &[]).await?.map(|e| (e.dn, false)))
    }

    /// Runs `act` on the account's entry; when a guessed DN turns out stale
    /// (noSuchObject), finds the entry and runs it again. `Ok(false)` when
    /// no entry has the key.
    async fn on_account(
        &self,
        b: &Batch,
        op: &Operation,
        act: &EntryAct<'_>,
    ) -> Result<bool, OpError> {
        let key = op.account.as_str();
        let Some((dn, guessed)) = self.locate(b, key).await? else {
            return Ok(false);
        };
        match self.act(b, op, act, &dn).await {
            Err(OpError::Ldap {
                dn: failed_dn,
                fail,
            }) if guessed && fail.is(rc::NO_SUCH_OBJECT) => {
                self.forget(key);
                match self.find(b, key, &[]).await? {
                    None => Ok(false),
                    Some(e) if normalize(&e.dn) != normalize(&dn) => {
                        self.act(b, op, act, &e.dn).await.map(|()| true)
                    }
                    Some(_) => Err(OpError::Ldap {
                        dn: failed_dn,
                        fail,
                    }),
                }
            }
            other => other.map(|()| true),
        }
    }

    // ---- operations ----

    async fn run_op(&self, b: &Batch, op: &Operation) -> Result<(), OpError> {
        if op.system != self.system {
            return Err(OpError::Rejected(format!(
                "the operation is for system {}, not {}",
                op.system, self.system
            )));
        }
        let not_found = || {
            OpError::Rejected(format!(
                "no entry has {}={:?} under {}",
                self.settings.key_attribute,
                op.account.as_str(),
                self.account_bases().join(" or ")
            ))
        };
        match &op.action {
            Action::CreateAccount { attributes } => self.create(b, op, attributes).await,
            Action::UpdateAccount { changes } => self.update(b, op, changes).await,
            Action::EnableAccount | Action::DisableAccount => {
                if self.settings.disable == DisableMethod::None {
                    return Err(OpError::Rejected(
                        "this system cannot disable accounts (set settings.disable_method)"
                            .to_owned(),
                    ));
                }
                let act = EntryAct::SetEnabled(matches!(op.action, Action::EnableAccount));
                if self.on_account(b, op, &act).await? {
                    Ok(())
                } else {
                    Err(not_found())
                }
            }
            Action::DeleteAccount => {
                // Gone already is done.
                self.on_account(b, op, &EntryAct::Delete).await.map(|_| ())
            }
            Action::ArchiveAccount { .. } => {
                if self.settings.archive_container.is_none() {
                    return Err(OpError::Rejected(
                        "this system cannot archive (set settings.archive_container)".to_owned(),
                    ));
                }
                if self.on_account(b, op, &EntryAct::Archive).await? {
                    Ok(())
                } else {
                    Err(not_found())
                }
            }
            Action::AddMembership { entitlement } => {
                self.membership(b, op, entitlement, true).await
            }
            Action::RemoveMembership { entitlement } => {
                self.membership(b, op, entitlement, false).await
            }
        }
    }

    /// Renders the RDN (escaped) and the parent DN of an account from its
    /// key and attribute values.
    fn name_of(
        &self,
        key: &str,
        value: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, String, String), OpError> {
        let s = &self.settings;
        let missing = |a: String| {
            OpError::Rejected(format!(
                "the entry's name needs attribute {a:?} (settings.rdn or settings.container), which has no value"
            ))
        };
        let rdn_value = s
            .rdn_template
            .render(key, value, &|v| v.to_owned())
            .map_err(missing)?;
        let rdn = format!("{}={}", s.rdn_attribute, escape_value(&rdn_value));
        let parent = match &s.container {
            Some(t) => t
                .render(key, value, &|v| escape_value(v).into_owned())
                .map_err(missing)?,
            None => s.people_base.clone(),
        };
        Ok((rdn, rdn_value, parent))
    }

    /// Whether the RDN attribute is also written as an account attribute (or is the key).
    fn rdn_is_mapped(&self) -> bool {
        let s = &self.settings;
        s.rdn_attribute.eq_ignore_ascii_case(&s.key_attribute)
            || s.attributes
                .values()
                .any(|a| a.eq_ignore_ascii_case(&s.rdn_attribute))
    }

    async fn create(
        &self,
        b: &Batch,
        op: &Operation,
        attrs: &BTreeMap<String, String>,
    ) -> Result<(), OpError> {
        let s = &self.settings;
        let key = op.account.as_str();
        let (rdn, rdn_value, parent) = self.name_of(key, &|a| attrs.get(a).cloned())?;
        let dn = format!("{rdn},{parent}");
        let mut entry: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
            (
                "objectClass".into(),
                values(s.object_classes.iter().map(|c| c.as_bytes().to_vec())),
            ),
            (s.key_attribute.clone().into_bytes(), values([key])),
        ];
        if !self.rdn_is_mapped() {
            entry.push((
                s.rdn_attribute.clone().into_bytes(),
                values([rdn_value.as_str()]),
            ));
        }
        for (attr, value) in attrs {
            let Some(target) = s.ldap_attribute(attr) else {
                return Err(OpError::Rejected(format!(
                    "attribute {attr:?} has no LDAP attribute (add it to [system.account.attributes])"
                )));
            };
            if !value.is_empty() {
                entry.push((target.as_bytes().to_vec(), values([value.as_str()])));
            }
        }
        if let DisableMethod::Attribute {
            attribute,
            enabled: Some(v),
            ..
        } = &s.disable
        {
            entry.push((attribute.clone().into_bytes(), values([v.as_str()])));
        }
        if self.ad() {
            // Created disabled with its password, then enabled: Active
            // Directory refuses an enabled account without a usable password.
            entry.push((
                "userAccountControl".into(),
                values([(UAC_NORMAL | UAC_DISABLED).to_string()]),
            ));
            let password = match (&s.initial_password, &self.initial_password) {
                (InitialPassword::Random, _) => Some(random_password().map_err(OpError::Rejected)?),
                (InitialPassword::Secret(_), Some(p)) => Some(p.expose().to_owned()),
                _ => None,
            };
            if let Some(p) = password {
                entry.push(("unicodePwd".into(), values([unicode_pwd(&p)])));
            }
        }
        match self.add(b, &dn, entry).await {
            Ok(()) => {}
            Err(OpError::Ldap { fail, .. }) if fail.is(rc::ENTRY_ALREADY_EXISTS) => {
                // Created by an earlier try? Then make it match.
                let key_attr = vec![s.key_attribute.clone()];
                match self.probe(b, &dn, &key_attr).await? {
                    Some(e) if e.values(&s.key_attribute).iter().any(|v| same_key(v, key)) => {
                        self.remember(key, &e.dn);
                        self.converge(b, &e.dn, attrs).await?;
                        return self.act(b, op, &EntryAct::SetEnabled(true), &e.dn).await;
                    }
                    Some(e) => {
                        return Err(OpError::Rejected(format!(
                            "the entry {dn} already exists and belongs to {}={:?}, not to this account",
                            s.key_attribute,
                            e.first(&s.key_attribute).unwrap_or("")
                        )));
                    }
                    None => return Err(OpError::Ldap { dn, fail }),
                }
            }
            Err(e) => return Err(e),
        }
        self.remember(key, &dn);
        if self.ad() {
            self.modify(
                b,
                &dn,
                vec![Mod::Replace(
                    "userAccountControl".into(),
                    values([UAC_NORMAL.to_string()]),
                )],
            )
            .await?;
        }
        Ok(())
    }

    /// Writes a create's attributes onto an existing entry.
    async fn converge(
        &self,
        b: &Batch,
        dn: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Result<(), OpError> {
        self.replace_values(b, dn, attrs.iter().map(|(a, v)| (a, v.as_str())))
            .await
    }

    /// Replaces these account attributes' LDAP attributes in one modify: an
    /// empty value removes the attribute (and does nothing when it is
    /// absent). The attribute that names the entry is left to renames.
    async fn replace_values<'v>(
        &self,
        b: &Batch,
        dn: &str,
        values_by_attribute: impl Iterator<Item = (&'v String, &'v str)>,
    ) -> Result<(), OpError> {
        let s = &self.settings;
        let mods: Vec<Mod<Vec<u8>>> = values_by_attribute
            .filter_map(|(attr, value)| {
                let target = s.ldap_attribute(attr)?;
                if target.eq_ignore_ascii_case(&s.rdn_attribute) {
                    return None;
                }
                Some(if value.is_empty() {
                    Mod::Replace(target.as_bytes().to_vec(), HashSet::new())
                } else {
                    Mod::Replace(target.as_bytes().to_vec(), values([value]))
                })
            })
            .collect();
        if mods.is_empty() {
            return Ok(());
        }
        self.modify(b, dn, mods).await
    }

    async fn update(
        &self,
        b: &Batch,
        op: &Operation,
        changes: &BTreeMap<String, AttributeChange>,
    ) -> Result<(), OpError> {
        let s = &self.settings;
        let key = op.account.as_str();
        for attr in changes.keys() {
            if s.ldap_attribute(attr).is_none() {
                return Err(OpError::Rejected(format!(
                    "attribute {attr:?} has no LDAP attribute (add it to [system.account.attributes])"
                )));
            }
        }
        let renames = s
            .rdn_template
            .attributes()
            .chain(s.container.iter().flat_map(|c| c.attributes()))
            .any(|a| changes.contains_key(a));
        if !renames {
            let act = EntryAct::Update(changes);
            return if self.on_account(b, op, &act).await? {
                Ok(())
            } else {
                Err(OpError::Rejected(format!(
                    "no entry has {}={key:?} under {}",
                    s.key_attribute,
                    self.account_bases().join(" or ")
                )))
            };
        }
        // The new name needs the values the templates use: the changed ones
        // from the operation, the others from the entry.
        let want: Vec<String> = s.template_attributes().into_iter().collect();
        let Some(entry) = self.find(b, key, &want).await? else {
            return Err(OpError::Rejected(format!(
                "no entry has {}={key:?} under {}",
                s.key_attribute,
                self.account_bases().join(" or ")
            )));
        };
        let value = |a: &str| match changes.get(a) {
            Some(c) => Some(c.after.clone()),
            None => s
                .ldap_attribute(a)
                .and_then(|l| entry.first(l))
                .map(str::to_owned),
        };
        let (rdn, rdn_value, parent) = self.name_of(key, &value)?;
        let current = Dn::parse(&entry.dn)
            .map_err(|e| OpError::Rejected(format!("the server returned an unusable DN: {e}")))?;
        let current_parent = current.parent();
        // A disabled account stays in the disabled container.
        let keep_parent = s.in_disabled_container(&current);
        let new_parent = if keep_parent || normalize(&parent) == current_parent.normalized() {
            None
        } else {
            Some(parent.as_str())
        };
        let same_rdn = current.rdn_value(&s.rdn_attribute) == Some(rdn_value.as_str());
        let mut dn = entry.dn.clone();
        if !same_rdn || new_parent.is_some() {
            let parent_text = match new_parent {
                Some(p) => p.to_owned(),
                None => entry
                    .dn
                    .split_once(',')
                    .map(|(_, p)| p.to_owned())
                    .unwrap_or_default(),
            };
            let new_dn = format!("{rdn},{parent_text}");
            self.rename(b, key, &dn, &rdn, new_parent, &new_dn).await?;
            dn = new_dn;
        }
        self.write_changes(b, &dn, changes).await
    }

    /// Replaces the changed attributes (those that name the entry were set by the rename).
    async fn write_changes(
        &self,
        b: &Batch,
        dn: &str,
        changes: &BTreeMap<String, AttributeChange>,
    ) -> Result<(), OpError> {
        self.replace_values(b, dn, changes.iter().map(|(a, c)| (a, c.after.as_str())))
            .await
    }

    /// One action on the entry at `dn`.
    async fn act(
        &self,
        b: &Batch,
        op: &Operation,
        act: &EntryAct<'_>,
        dn: &str,
    ) -> Result<(), OpError> {
        let s = &self.settings;
        match act {
            EntryAct::Delete => match self.delete_entry(b, dn).await {
                Ok(()) => {
                    self.forget(op.account.as_str());
                    Ok(())
                }
                Err(e) => Err(e),
            },
            EntryAct::Update(changes) => {
                // The RDN attribute cannot change here (that is a rename), so
                // a change of it that did not come through the templates is refused.
                self.write_changes(b, dn, changes).await
            }
            EntryAct::Archive => {
                let current =
                    Dn::parse(dn).map_err(|e| OpError::Rejected(format!("unusable DN: {e}")))?;
                let Some(container) = &s.archive_container else {
                    return Err(OpError::Rejected(
                        "this system cannot archive (set settings.archive_container)".to_owned(),
                    ));
                };
                if s.in_archive_container(&current) {
                    // Archived already (checking it exists, so that a stale
                    // DN is found again).
                    return self.exists(b, dn).await;
                }
                self.move_to(b, op, dn, container).await.map(|_| ())
            }
            EntryAct::SetEnabled(enable) => {
                // A rehired person's archived entry goes back where accounts
                // live before it is enabled (the move method does both at once).
                let moved;
                let dn = if *enable
                    && !matches!(s.disable, DisableMethod::Move { .. })
                    && Dn::parse(dn).is_ok_and(|d| s.in_archive_container(&d))
                {
                    let home = self.home_parent(b, op, dn).await?;
                    moved = self.move_to(b, op, dn, &home).await?;
                    moved.as_str()
                } else {
                    dn
                };
                self.set_enabled(b, op, dn, *enable).await
            }
        }
    }

    /// Whether the entry at `dn` exists: `Ok` if so, noSuchObject if not.
    async fn exists(&self, b: &Batch, dn: &str) -> Result<(), OpError> {
        match self.probe(b, dn, &[]).await? {
            Some(_) => Ok(()),
            None => Err(OpError::Ldap {
                dn: dn.to_owned(),
                fail: Fail::from_code(rc::NO_SUCH_OBJECT, "", ""),
            }),
        }
    }

    /// The parent an account's entry has while in use: `people_base`, or
    /// the `container` template's value for the entry.
    async fn home_parent(&self, b: &Batch, op: &Operation, dn: &str) -> Result<String, OpError> {
        let s = &self.settings;
        match &s.container {
            None => Ok(s.people_base.clone()),
            Some(_) => {
                let want: Vec<String> = s.template_attributes().into_iter().collect();
                let Some(e) = self.probe(b, dn, &want).await? else {
                    return Err(OpError::Ldap {
                        dn: dn.to_owned(),
                        fail: Fail::from_code(rc::NO_SUCH_OBJECT, "", ""),
                    });
                };
                let value = |a: &str| {
                    s.ldap_attribute(a)
                        .and_then(|l| e.first(l))
                        .map(str::to_owned)
                };
                Ok(self.name_of(op.account.as_str(), &value)?.2)
            }
        }
    }

    /// Moves the entry at `dn` under `parent`, keeping its RDN; its new DN.
    async fn move_to(
        &self,
        b: &Batch,
        op: &Operation,
        dn: &str,
        parent: &str,
    ) -> Result<String, OpError> {
        let current = Dn::parse(dn).map_err(|e| OpError::Rejected(format!("unusable DN: {e}")))?;
        let Some(first) = current.rdns.first().and_then(|r| r.first()) else {
            return Err(OpError::Rejected(format!("{dn} has no RDN")));
        };
        let rdn = format!("{}={}", first.attr, escape_value(&first.value));
        let new_dn = format!("{rdn},{parent}");
        self.rename(b, op.account.as_str(), dn, &rdn, Some(parent), &new_dn)
            .await?;
        Ok(new_dn)
    }

    /// Enables or disables the entry at `dn` by the system's method.
    async fn set_enabled(
        &self,
        b: &Batch,
        op: &Operation,
        dn: &str,
        enable: bool,
    ) -> Result<(), OpError> {
        let s = &self.settings;
        let enable = &enable;
        {
            match &s.disable {
                DisableMethod::None => Err(OpError::Rejected(
                    "this system cannot disable accounts".to_owned(),
                )),
                DisableMethod::Ad => {
                    let attr = vec!["userAccountControl".to_owned()];
                    let e = self
                        .search(b, dn, Scope::Base, "(objectClass=*)", &attr)
                        .await?;
                    let current = e
                        .first()
                        .and_then(|e| e.first("userAccountControl"))
                        .and_then(|v| v.trim().parse::<u32>().ok())
                        .unwrap_or(UAC_NORMAL);
                    let wanted = if *enable {
                        current & !UAC_DISABLED
                    } else {
                        current | UAC_DISABLED
                    };
                    if wanted == current {
                        return Ok(());
                    }
                    self.modify(
                        b,
                        dn,
                        vec![Mod::Replace(
                            "userAccountControl".into(),
                            values([wanted.to_string()]),
                        )],
                    )
                    .await
                }
                DisableMethod::Ppolicy => {
                    let v = if *enable {
                        HashSet::new()
                    } else {
                        values([PPOLICY_LOCKED])
                    };
                    self.modify(b, dn, vec![Mod::Replace("pwdAccountLockedTime".into(), v)])
                        .await
                }
                DisableMethod::Attribute {
                    attribute,
                    disabled,
                    enabled,
                } => {
                    let v = match (enable, enabled) {
                        (false, _) => values([disabled.as_str()]),
                        (true, Some(e)) => values([e.as_str()]),
                        (true, None) => HashSet::new(),
                    };
                    self.modify(b, dn, vec![Mod::Replace(attribute.clone().into_bytes(), v)])
                        .await
                }
                DisableMethod::Move { container } => {
                    let current = Dn::parse(dn)
                        .map_err(|e| OpError::Rejected(format!("unusable DN: {e}")))?;
                    // An archived entry is out of use as a disabled one is.
                    let inside =
                        s.in_disabled_container(&current) || s.in_archive_container(&current);
                    if inside != *enable {
                        // Already where it should be (checking it exists, so
                        // that a stale DN is found again).
                        return self.exists(b, dn).await;
                    }
                    let target = if *enable {
                        self.home_parent(b, op, dn).await?
                    } else {
                        container.clone()
                    };
                    self.move_to(b, op, dn, &target).await.map(|_| ())
                }
            }
        }
    }

    async fn membership(
        &self,
        b: &Batch,
        op: &Operation,
        entitlement: &EntitlementName,
        add: bool,
    ) -> Result<(), OpError> {
        let Some(g) = &self.settings.groups else {
            return Err(OpError::Rejected(
                "this system has no groups (set settings.groups_base)".to_owned(),
            ));
        };
        let key = op.account.as_str();
        let group_dn = format!(
            "{}={},{}",
            g.rdn_attribute,
            escape_value(entitlement.as_str()),
            g.base
        );
        let attr = g.attribute.as_bytes().to_vec();
        // The value: the key, or the member's DN as the server confirmed it.
        let mut from_cache = false;
        let value = match g.value {
            MemberValue::Key => key.to_owned(),
            MemberValue::Dn => match self.cached_dn(key) {
                Some(dn) => {
                    from_cache = true;
                    dn
                }
                None => match self.find(b, key, &[]).await? {
                    Some(e) => e.dn,
                    // Nothing to remove for an account that is gone.
                    None if !add => return Ok(()),
                    None => {
                        return Err(OpError::Rejected(format!(
                            "no entry has {}={key:?} under {}, so it cannot join {group_dn}",
                            self.settings.key_attribute,
                            self.account_bases().join(" or ")
                        )));
                    }
                },
            },
        };
        let run = |value: String| {
            let mods = if add {
                vec![Mod::Add(attr.clone(), values([value]))]
            } else {
                vec![Mod::Delete(attr.clone(), values([value]))]
            };
            self.modify(b, &group_dn, mods)
        };
        let benign = |fail: &Fail| {
            if add {
                // Active Directory answers entryAlreadyExists for a member already there.
                fail.is(rc::ATTRIBUTE_OR_VALUE_EXISTS)
                    || (self.ad() && fail.is(rc::ENTRY_ALREADY_EXISTS))
            } else {
                // Active Directory answers unwillingToPerform for a member not there.
                fail.is(rc::NO_SUCH_ATTRIBUTE) || (self.ad() && fail.is(rc::UNWILLING_TO_PERFORM))
            }
        };
        match run(value.clone()).await {
            Ok(()) => Ok(()),
            Err(OpError::Ldap { fail, .. }) if benign(&fail) => Ok(()),
            Err(OpError::Ldap { fail, .. })
                if !add && fail.is(rc::OBJECT_CLASS_VIOLATION) && g.placeholder.is_some() =>
            {
                // The last member of a group that must have one: leave the placeholder in its place.
                let placeholder = g.placeholder.clone().unwrap_or_default();
                let mods = vec![
                    Mod::Add(attr.clone(), values([placeholder])),
                    Mod::Delete(attr.clone(), values([value])),
                ];
                match self.modify(b, &group_dn, mods).await {
                    Err(OpError::Ldap { fail, .. }) if benign(&fail) => Ok(()),
                    other => other,
                }
            }
            Err(OpError::Ldap { dn, fail }) if from_cache && fail.is(rc::NO_SUCH_OBJECT) => {
                // The group is missing, or (Active Directory) the member's DN is stale.
                self.forget(key);
                match self.find(b, key, &[]).await? {
                    Some(e) if normalize(&e.dn) != normalize(&value) => match run(e.dn).await {
                        Err(OpError::Ldap { fail, .. }) if benign(&fail) => Ok(()),
                        other => other,
                    },
                    _ => Err(OpError::Ldap { dn, fail }),
                }
            }
            Err(e) => Err(e),
        }
    }

    // ---- reading ----

    /// The LDAP attributes a full read asks for.
    fn read_attributes(&self) -> Vec<String> {
        let s = &self.settings;
        let mut attrs: BTreeSet<String> = BTreeSet::new();
        attrs.insert(s.key_attribute.clone());
        attrs.extend(s.attributes.values().cloned());
        match &s.disable {
            DisableMethod::Ad => {
                attrs.insert("userAccountControl".to_owned());
            }
            DisableMethod::Ppolicy => {
                attrs.insert("pwdAccountLockedTime".to_owned());
            }
            DisableMethod::Attribute { attribute, .. } => {
                attrs.insert(attribute.clone());
            }
            DisableMethod::None | DisableMethod::Move { .. } => {}
        }
        if self.ad() && s.groups.is_some() {
            attrs.insert("memberOf".to_owned());
        }
        attrs.into_iter().collect()
    }

    /// An account from its entry; `None` when it has no usable key.
    fn account_of(&self, e: &Entry) -> Option<(Account, Dn)> {
        let s = &self.settings;
        let dn = Dn::parse(&e.dn).ok()?;
        let key = if s.rdn_attribute.eq_ignore_ascii_case(&s.key_attribute) {
            dn.rdn_value(&s.key_attribute).map(str::to_owned)
        } else {
            match e.values(&s.key_attribute) {
                [one] => Some(one.clone()),
                _ => None,
            }
        };
        let key = AccountKey::new(key?).ok()?;
        let mut attributes = BTreeMap::new();
        for (attr, target) in &s.attributes {
            let v = if target.eq_ignore_ascii_case(&s.rdn_attribute) {
                dn.rdn_value(target).map(str::to_owned)
            } else {
                e.first(target).map(str::to_owned)
            };
            if let Some(v) = v {
                attributes.insert(attr.clone(), v);
            }
        }
        let enabled = match &s.disable {
            DisableMethod::None => true,
            DisableMethod::Ad => e
                .first("userAccountControl")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .is_none_or(|v| v & UAC_DISABLED == 0),
            // Only the administrative lock counts; a temporary lockout after
            // failed logins is the directory's own business.
            DisableMethod::Ppolicy => !e
                .values("pwdAccountLockedTime")
                .iter()
                .any(|v| v == PPOLICY_LOCKED),
            DisableMethod::Move { .. } => {
                !s.in_disabled_container(&dn) && !s.in_archive_container(&dn)
            }
            DisableMethod::Attribute {
                attribute,
                disabled,
                ..
            } => !e
                .values(attribute)
                .iter()
                .any(|v| v.eq_ignore_ascii_case(disabled)),
        };
        let mut entitlements = BTreeSet::new();
        if self.ad()
            && let Some(g) = &s.groups
        {
            for group in e.values("memberOf") {
                if let Some(name) = self.entitlement_of(group, g) {
                    entitlements.insert(name);
                }
            }
        }
        Some((
            Account {
                key,
                attributes,
                enabled,
                entitlements,
                archived: s.in_archive_container(&dn),
            },
            dn,
        ))
    }

    /// The entitlement a group DN stands for: a group directly under the groups base.
    fn entitlement_of(&self, group_dn: &str, g: &settings::Groups) -> Option<EntitlementName> {
        let d = Dn::parse(group_dn).ok()?;
        if d.parent().normalized() != g.base_dn.normalized() {
            return None;
        }
        EntitlementName::new(d.rdn_value(&g.rdn_attribute)?).ok()
    }

    /// Reads accounts matching `extra` (a filter added to the account
    /// filter), with the normalised DN of each.
    async fn read_people(
        &self,
        b: &Batch,
        extra: &str,
        more_attrs: &[String],
        mut each: impl FnMut(&Entry) + Send,
    ) -> Result<People, ConnectorError> {
        let filter = format!("(&{}{extra})", self.settings.account_filter);
        let mut attrs = self.read_attributes();
        attrs.extend(more_attrs.iter().cloned());
        let mut out = SystemAccounts::default();
        let mut by_dn: HashMap<String, AccountKey> = HashMap::new();
        let mut dns: HashMap<String, String> = HashMap::new();
        let (mut unusable, mut duplicates) = (0usize, 0usize);
        for base in self.account_bases() {
            self.search_paged(b, &base, Scope::Subtree, &filter, &attrs, |e| {
                each(&e);
                match self.account_of(&e) {
                    Some((acct, dn)) => {
                        if out.accounts.contains_key(&acct.key) {
                            duplicates += 1;
                            return;
                        }
                        by_dn.insert(dn.normalized(), acct.key.clone());
                        dns.insert(acct.key.as_str().to_owned(), e.dn.clone());
                        out.accounts.insert(acct.key.clone(), acct);
                    }
                    None => unusable += 1,
                }
            })
            .await
            .map_err(|e| self.read_error(format!("reading accounts under {base}"), e))?;
        }
        if unusable + duplicates > 0 {
            tracing::warn!(
                system = %self.system,
                unusable_keys = unusable,
                duplicate_keys = duplicates,
                "some entries were skipped: no single usable {} value, or a key held by another entry too (the first is used)",
                self.settings.key_attribute
            );
        }
        Ok(People {
            accounts: out,
            by_dn,
            dns,
        })
    }

    /// Reads groups under the groups base matching `extra`, calling `each`
    /// with each group's entitlement and the member keys found.
    async fn read_groups(
        &self,
        b: &Batch,
        extra: &str,
        more_attrs: &[String],
        by_dn: &HashMap<String, AccountKey>,
        mut each: impl FnMut(&Entry, EntitlementName, Vec<AccountKey>) + Send,
    ) -> Result<(), ConnectorError> {
        let Some(g) = &self.settings.groups else {
            return Ok(());
        };
        let filter = format!("(&(objectClass={}){extra})", g.object_class);
        let mut attrs = vec![g.attribute.clone()];
        attrs.extend(more_attrs.iter().cloned());
        self.search_paged(b, &g.base, Scope::OneLevel, &filter, &attrs, |e| {
            let Some(name) = self.entitlement_of(&e.dn, g) else {
                return;
            };
            let members = e
                .values(&g.attribute)
                .iter()
                .filter_map(|v| match g.value {
                    MemberValue::Key => AccountKey::new(v.clone()).ok(),
                    MemberValue::Dn => by_dn.get(&normalize(v)).cloned(),
                })
                .collect();
            each(&e, name, members);
        })
        .await
        .map_err(|e| self.read_error(format!("reading groups under {}", g.base), e))
    }

    /// Reads what changed since `since` (everything when `None`): the
    /// accounts whose entries changed, in full, and the groups whose
    /// membership changed, with their current members. Uses the change
    /// sequence number `entryCSN` on OpenLDAP (microseconds and a counter:
    /// `modifyTimestamp` only counts seconds, too coarse to tell what came
    /// after a marker) and `uSNChanged` on Active Directory (per domain
    /// controller: always read from the same one). Deleted entries are not
    /// seen: the next full [`Connector::read_accounts`] finds them gone.
    pub async fn read_changes_since(
        &self,
        since: Option<&ChangeMarker>,
    ) -> Result<Changes, ConnectorError> {
        let b = Batch::default();
        let ad = self.ad();
        let marker_attr = if ad { "uSNChanged" } else { "entryCSN" };
        let since_value = since.map(|m| m.0.clone()).filter(|m| !m.is_empty());
        let extra = match &since_value {
            None => String::new(),
            Some(m) if ad => {
                let n: u64 = m.parse().map_err(|_| ConnectorError::Directory {
                    system: self.system.clone(),
                    what: "reading changes".to_owned(),
                    message: format!(
                        "{m:?} is not an Active Directory change marker (a uSNChanged number)"
                    ),
                    code: None,
                    transient: false,
                })?;
                format!("({marker_attr}>={})", n.saturating_add(1))
            }
            Some(m) => {
                if !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '#'))
                {
                    return Err(ConnectorError::Directory {
                        system: self.system.clone(),
                        what: "reading changes".to_owned(),
                        message: format!("{m:?} is not an OpenLDAP change marker (an entryCSN)"),
                        code: None,
                        transient: false,
                    });
                }
                // Strictly after: at least the marker, and not the marker itself.
                let m = dn::escape_filter(m);
                format!("({marker_attr}>={m})(!({marker_attr}={m}))")
            }
        };
        let newer = |a: &str, b: &str| -> bool {
            if ad {
                a.parse::<u64>().unwrap_or(0) > b.parse::<u64>().unwrap_or(0)
            } else {
                a > b
            }
        };
        let mut highest = since_value.clone().unwrap_or_default();
        let marker_attrs = vec![marker_attr.to_owned()];
        let mut seen: Vec<String> = Vec::new();
        let People {
            mut accounts,
            by_dn,
            ..
        } = self
            .read_people(&b, &extra, &marker_attrs, |e| {
                if let Some(v) = e.first(marker_attr) {
                    seen.push(v.to_owned());
                }
            })
            .await?;
        for v in seen.drain(..) {
            if newer(&v, &highest) {
                highest = v;
            }
        }
        let mut entitlements: BTreeMap<EntitlementName, BTreeSet<AccountKey>> = BTreeMap::new();
        if let Some(g) = &self.settings.groups {
            // The changed accounts' own memberships (Active Directory: already from memberOf).
            if !ad && !accounts.accounts.is_empty() {
                let members: Vec<(String, AccountKey)> = match g.value {
                    MemberValue::Dn => by_dn
                        .iter()
                        .map(|(dn, k)| (dn.clone(), k.clone()))
                        .collect(),
                    MemberValue::Key => accounts
                        .accounts
                        .keys()
                        .map(|k| (k.as_str().to_owned(), k.clone()))
                        .collect(),
                };
                for chunk in members.chunks(FILTER_CHUNK) {
                    let filter: String = chunk
                        .iter()
                        .map(|(v, _)| eq_filter(&g.attribute, v))
                        .collect();
                    let mut found: Vec<(EntitlementName, Vec<AccountKey>)> = Vec::new();
                    let lookup: HashMap<String, AccountKey> = chunk
                        .iter()
                        .map(|(v, k)| {
                            (
                                if g.value == MemberValue::Dn {
                                    v.clone()
                                } else {
                                    v.to_lowercase()
                                },
                                k.clone(),
                            )
                        })
                        .collect();
                    let by_value = &lookup;
                    self.search_paged(
                        &b,
                        &g.base,
                        Scope::OneLevel,
                        &format!("(&(objectClass={})(|{filter}))", g.object_class),
                        std::slice::from_ref(&g.attribute),
                        |e| {
                            let Some(name) = self.entitlement_of(&e.dn, g) else {
                                return;
                            };
                            let keys = e
                                .values(&g.attribute)
                                .iter()
                                .filter_map(|v| match g.value {
                                    MemberValue::Dn => by_value.get(&normalize(v)).cloned(),
                                    MemberValue::Key => by_value.get(&v.to_lowercase()).cloned(),
                                })
                                .collect();
                            found.push((name, keys));
                        },
                    )
                    .await
                    .map_err(|e| self.read_error(format!("reading groups under {}", g.base), e))?;
                    for (name, keys) in found {
                        for k in keys {
                            if let Some(a) = accounts.accounts.get_mut(&k) {
                                a.entitlements.insert(name.clone());
                            }
                        }
                    }
                }
            }
            // Changed groups, with their current members.
            let mut changed_groups: Vec<(EntitlementName, Vec<String>)> = Vec::new();
            let mut group_markers: Vec<String> = Vec::new();
            let filter = format!("(&(objectClass={}){extra})", g.object_class);
            let mut attrs = vec![g.attribute.clone(), marker_attr.to_owned()];
            if ad {
                attrs[0] = format!("{};range=0-*", g.attribute);
            }
            self.search_paged(&b, &g.base, Scope::OneLevel, &filter, &attrs, |e| {
                if let Some(v) = e.first(marker_attr) {
                    group_markers.push(v.to_owned());
                }
                let Some(name) = self.entitlement_of(&e.dn, g) else {
                    return;
                };
                // Active Directory returns large member lists in ranges (`member;range=0-1499`).
                let mut vals: Vec<String> = Vec::new();
                let mut ranged = false;
                for (attr, v) in &e.attrs {
                    let lower = g.attribute.to_ascii_lowercase();
                    if attr == &lower {
                        vals.extend(v.iter().cloned());
                    } else if attr.starts_with(&format!("{lower};range=")) {
                        vals.extend(v.iter().cloned());
                        ranged = !attr.ends_with('*');
                    }
                }
                if ranged {
                    vals.push(format!("\0ranged:{}", e.dn));
                }
                changed_groups.push((name, vals));
            })
            .await
            .map_err(|e| self.read_error(format!("reading groups under {}", g.base), e))?;
            for v in group_markers {
                if newer(&v, &highest) {
                    highest = v;
                }
            }
            for (name, vals) in changed_groups {
                let mut members = BTreeSet::new();
                let mut all_vals: Vec<String> = Vec::new();
                for v in vals {
                    if let Some(group_dn) = v.strip_prefix("\0ranged:") {
                        all_vals.extend(self.ranged_values(&b, group_dn, &g.attribute).await?);
                    } else {
                        all_vals.push(v);
                    }
                }
                all_vals.sort();
                all_vals.dedup();
                for v in all_vals {
                    let key = match g.value {
                        MemberValue::Key => AccountKey::new(v).ok(),
                        MemberValue::Dn => self.key_of_dn(&b, &v, &by_dn).await?,
                    };
                    if let Some(k) = key {
                        members.insert(k);
                    }
                }
                entitlements.insert(name, members);
            }
        }
        Ok(Changes {
            accounts,
            entitlements,
            marker: ChangeMarker(highest),
        })
    }

    /// Every value of a multi-valued attribute Active Directory returns in ranges.
    async fn ranged_values(
        &self,
        b: &Batch,
        dn: &str,
        attr: &str,
    ) -> Result<Vec<String>, ConnectorError> {
        let mut out = Vec::new();
        let mut start = 0usize;
        loop {
            let want = vec![format!("{attr};range={start}-*")];
            let entries = self
                .search(b, dn, Scope::Base, "(objectClass=*)", &want)
                .await
                .map_err(|e| self.read_error(format!("reading the members of {dn}"), e))?;
            let Some(e) = entries.into_iter().next() else {
                return Ok(out);
            };
            let prefix = format!("{};range=", attr.to_ascii_lowercase());
            let mut next = None;
            for (name, vals) in &e.attrs {
                if let Some(range) = name.strip_prefix(&prefix) {
                    out.extend(vals.iter().cloned());
                    if let Some((_, end)) = range.split_once('-')
                        && end != "*"
                    {
                        next = end.parse::<usize>().ok().map(|n| n + 1);
                    }
                } else if name == &attr.to_ascii_lowercase() {
                    out.extend(vals.iter().cloned());
                }
            }
            match next {
                Some(n) if n > start => start = n,
                _ => return Ok(out),
            }
        }
    }

    /// The account key of a member DN: from the accounts just read, the DN
    /// itself (when the RDN is the key), or the entry.
    async fn key_of_dn(
        &self,
        b: &Batch,
        dn: &str,
        by_dn: &HashMap<String, AccountKey>,
    ) -> Result<Option<AccountKey>, ConnectorError> {
        let s = &self.settings;
        let n = normalize(dn);
        if let Some(k) = by_dn.get(&n) {
            return Ok(Some(k.clone()));
        }
        let Ok(parsed) = Dn::parse(dn) else {
            return Ok(None);
        };
        let within = self
            .account_bases()
            .iter()
            .any(|base| Dn::parse(base).is_ok_and(|base| parsed.is_within(&base)));
        if !within {
            return Ok(None);
        }
        if s.rdn_attribute.eq_ignore_ascii_case(&s.key_attribute) {
            return Ok(parsed
                .rdn_value(&s.key_attribute)
                .and_then(|v| AccountKey::new(v).ok()));
        }
        let want = vec![s.key_attribute.clone()];
        let e = self
            .probe(b, dn, &want)
            .await
            .map_err(|e| self.read_error(format!("reading member {dn}"), e))?;
        Ok(e.and_then(|e| match e.values(&s.key_attribute) {
            [one] => AccountKey::new(one.clone()).ok(),
            _ => None,
        }))
    }

    /// When each account last logged on, from Active Directory's
    /// `lastLogonTimestamp` (replicated, accurate to about two weeks);
    /// `None` for accounts that never logged on. Empty on other directories.
    pub async fn read_last_logins(
        &self,
    ) -> Result<BTreeMap<AccountKey, Option<chrono::DateTime<chrono::Utc>>>, ConnectorError> {
        let mut out = BTreeMap::new();
        if !self.ad() {
            return Ok(out);
        }
        let b = Batch::default();
        let more = vec!["lastLogonTimestamp".to_owned()];
        let mut stamps: Vec<(String, Option<i64>)> = Vec::new();
        let People { by_dn, .. } = self
            .read_people(&b, "", &more, |e| {
                stamps.push((
                    normalize(&e.dn),
                    e.first("lastLogonTimestamp").and_then(|v| v.parse().ok()),
                ));
            })
            .await?;
        for (dn, stamp) in stamps {
            if let Some(k) = by_dn.get(&dn) {
                out.insert(k.clone(), stamp.and_then(filetime));
            }
        }
        Ok(out)
    }
}

/// Accounts as read, with the way back from a member DN to its account.
struct People {
    accounts: SystemAccounts,
    /// Normalised DN → key.
    by_dn: HashMap<String, AccountKey>,
    /// Key → DN as the server wrote it.
    dns: HashMap<String, String>,
}

/// What to do to an account's entry.
enum EntryAct<'a> {
    Update(&'a BTreeMap<String, AttributeChange>),
    SetEnabled(bool),
    /// Move into the archive container.
    Archive,
    Delete,
}

#[async_trait::async_trait]
impl Connector for LdapConnector {
    fn system(&self) -> &SystemId {
        &self.system
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read: true,
            create: true,
            update: true,
            disable: self.settings.disable != DisableMethod::None,
            delete: true,
            memberships: self.settings.groups.is_some(),
            // Active Directory's lastLogonTimestamp (read_last_logins).
            last_login: self.ad(),
            archive: self.settings.archive_container.is_some(),
            archive_to_manager: false,
        }
    }

    async fn check(&self) -> Result<(), ConnectorError> {
        let mut l = self
            .pool
            .connect()
            .await
            .map_err(|f| self.connect_error("", &f))?;
        let _ = l.unbind().await;
        let b = Batch::default();
        let s = &self.settings;
        let mut problems = Vec::new();
        let mut bases = vec![("people_base", s.people_base.clone())];
        if let Some(g) = &s.groups {
            bases.push(("groups_base", g.base.clone()));
        }
        if let DisableMethod::Move { container } = &s.disable {
            bases.push(("disabled_container", container.clone()));
        }
        if let Some(container) = &s.archive_container {
            bases.push(("archive_container", container.clone()));
        }
        for (key, base) in bases {
            match self.probe(&b, &base, &[]).await {
                Ok(Some(_)) => {}
                Ok(None) => problems.push(format!("settings.{key}: {base} does not exist")),
                Err(e) => return Err(self.read_error(format!("checking settings.{key} {base}"), e)),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::Schema {
                system: self.system.clone(),
                problems,
            })
        }
    }

    async fn read_accounts(&self) -> Result<SystemAccounts, ConnectorError> {
        let b = Batch::default();
        let People {
            accounts: mut out,
            by_dn,
            dns: mut cache,
        } = self.read_people(&b, "", &[], |_| {}).await?;
        if self.settings.groups.is_some() && !self.ad() {
            let mut held: Vec<(EntitlementName, Vec<AccountKey>)> = Vec::new();
            self.read_groups(&b, "", &[], &by_dn, |_, name, members| {
                held.push((name, members))
            })
            .await?;
            for (name, members) in held {
                for k in members {
                    if let Some(a) = out.accounts.get_mut(&k) {
                        a.entitlements.insert(name.clone());
                    }
                }
            }
        }
        // What was just read is what the server holds: the DN cache starts afresh.
        let mut dns = lock(&self.dns);
        std::mem::swap(&mut *dns, &mut cache);
        drop(dns);
        Ok(out)
    }

    async fn apply(&self, ops: &[Operation]) -> Vec<Result<(), ConnectorError>> {
        if ops.is_empty() {
            return Vec::new();
        }
        let b = Batch::default();
        // The operations of one account, in order; accounts side by side.
        let mut order: Vec<Vec<usize>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            let n = *index.entry(op.account.as_str()).or_insert_with(|| {
                order.push(Vec::new());
                order.len() - 1
            });
            if let Some(v) = order.get_mut(n) {
                v.push(i);
            }
        }
        let b = &b;
        let runs = futures::stream::iter(order.into_iter().map(|idxs| async move {
            let mut out: Vec<(usize, Result<(), ConnectorError>)> = Vec::with_capacity(idxs.len());
            let mut earlier_failed = false;
            for i in idxs {
                let Some(op) = ops.get(i) else { continue };
                if earlier_failed {
                    out.push((
                        i,
                        Err(self.directory_error(OpLabel::of(op).to_string(),
                            &Fail::local("not attempted: an earlier operation on the same account in this batch failed", true),
                        )),
                    ));
                    continue;
                }
                let r = self.run_op(b, op).await.map_err(|e| self.op_error(op, e));
                earlier_failed = r.is_err();
                out.push((i, r));
            }
            out
        }))
        .buffer_unordered(self.settings.max_in_flight)
        .collect::<Vec<_>>()
        .await;
        let mut results: Vec<Option<Result<(), ConnectorError>>> =
            (0..ops.len()).map(|_| None).collect();
        for (i, r) in runs.into_iter().flatten() {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(r);
            }
        }
        let failed = results.iter().filter(|r| matches!(r, Some(Err(_)))).count();
        tracing::debug!(system = %self.system, ops = ops.len(), failed, "batch applied");
        results
            .into_iter()
            .zip(ops)
            .map(|(r, op)| {
                r.unwrap_or_else(|| {
                    Err(self.directory_error(
                        OpLabel::of(op).to_string(),
                        &Fail::local("not attempted", true),
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(unicode_pwd("ab"), vec![0x22, 0, b'a', 0, b'b', 0, 0x22, 0]);
        assert_eq!(unicode_pwd("é"), vec![0x22, 0, 0xe9, 0, 0x22, 0]);
    }

    #[test]
    fn random_passwords_are_complex_and_differ() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_ne!(a, b);
        assert!(a.len() >= 24);
        assert!(a.chars().any(|c| c.is_ascii_uppercase()));
        assert!(a.chars().any(|c| c.is_ascii_lowercase()));
        assert!(a.chars().any(|c| c.is_ascii_digit()));
        assert!(a.chars().any(|c| !c.is_ascii_alphanumeric()));
    }

    #[test]
    fn keys_compare_like_a_directory() {
        assert!(same_key("Alice", "alice"));
        assert!(same_key(" a  b ", "a b"));
        assert!(!same_key("a", "b"));
    }

    #[test]
    fn filetimes() {
        // 2026-01-01T00:00:00Z
        let t = filetime(134_116_992_000_000_000).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(filetime(0), None);
        assert_eq!(filetime(i64::MAX), None);
    }
}
