//! The SCIM 2.0 client connector (`kind = "scim"`): provisions users and
//! group memberships in an application that serves SCIM (RFC 7643/7644),
//! such as Slack, Zoom, GitHub, Atlassian, AWS IAM Identity Center or
//! Salesforce.
//!
//! ```toml
//! [system.settings]
//! base_url = "https://api.example.com/scim/v2"
//! auth = { type = "bearer", token = { env = "APP_SCIM_TOKEN" } }
//! # or { type = "basic", user = "tenure", password = { file = "secrets/app" } }
//! # or { type = "oauth2", token_url = "https://…/token", client_id = "tenure",
//! #      client_secret = { env = "APP_CLIENT_SECRET" }, scope = "scim" }
//! key_attribute = "userName"             # or "externalId"
//! resource_types = ["User", "Group"]     # without "Group": no memberships
//! profile = "standard"                   # or a vendor profile, or a list of them
//! requests_per_second = 10               # 0: no limit
//! max_concurrency = 4                    # accounts worked on at once
//! timeout_seconds = 30
//! page_size = 100
//! max_retry_wait_seconds = 60            # how long one request may wait out 429s
//! [system.settings.attributes]           # account attribute → SCIM path
//! display_name = "displayName"
//! email = 'emails[type eq "work"].value'
//! department = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
//! ```
//!
//! What it does:
//! - Discovery: reads `/ServiceProviderConfig`, `/ResourceTypes` and
//!   `/Schemas` once (on `check` or first use) and adapts: PATCH when the
//!   service supports it, otherwise GET then PUT of the merged user (with
//!   `If-Match` when it supports ETags); filters when supported, otherwise
//!   listing; RFC 9865 cursors when offered, otherwise `startIndex`/`count`;
//!   values typed as its schemas say.
//! - Operations: create (POST; a `409` whose user is found by a filter on
//!   the key and holds exactly the attributes asked for is a replay and
//!   succeeds, any other is refused, never taken over); update by a PATCH
//!   of the changed paths only (`remove` for values that became empty);
//!   disable and enable by `active`; delete (a missing user is success);
//!   memberships by a PATCH of the group that adds or removes one member
//!   (`members[value eq "…"]`), never by rewriting the member list.
//! - The account key is mapped to the SCIM id by a filter on `userName` (or
//!   `externalId`), every value quoted and escaped, with a cache filled by
//!   reads, lookups and creates; a stale id (404) is looked up again once.
//! - Operations on different accounts run concurrently (`max_concurrency`),
//!   each account's in the order given; after an operation fails, the
//!   account's later ones are not attempted, and once the service stops
//!   answering the rest of the batch is not attempted either; both are
//!   reported as transient. `Ok` only after a 2xx answer.
//! - Errors name the system, the operation and the service's answer
//!   (status, `scimType`, `detail`). No answer, timeouts, 429 and 5xx are
//!   transient; other statuses are permanent. A 429 is waited out (its
//!   `Retry-After`, up to `max_retry_wait_seconds` per request, pausing every
//!   request of the system); past that it is a transient error carrying the
//!   delay.
//!
//! What it deliberately does not do: create or delete groups (entitlements
//! are groups that exist), set passwords, retry (the engine's queue does),
//! or use `/Bulk` (one request per change already; a bulk request's partial
//! failures would have to be mapped back to operations).

mod client;
mod discovery;
mod path;
mod settings;

use crate::Connector;
use crate::error::{ConnectorError, OpLabel};
use client::{Failure, Http, Reply};
use discovery::{Discovered, USER_SCHEMA};
use futures::StreamExt;
use path::{AttrPath, get_ci, quote};
use reqwest::Method;
use serde_json::{Value, json};
use settings::{KeyAttribute, Settings, UpdateMethod};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use tenure_core::config::SystemConfig;
use tenure_core::plan::AttributeChange;
use tenure_core::state::{Account, SystemAccounts};
use tenure_core::{
    AccountKey, Action, Capabilities, EntitlementName, IdentityId, Operation, SystemId,
};

/// The connector kind this module implements.
pub const KIND: &str = "scim";

/// The vendor profiles (`settings.profile`) and what each changes.
pub const PROFILES: &[(&str, &str)] = settings::PROFILES;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most pages one listing reads before it gives up (a service that never ends).
const MAX_PAGES: usize = 100_000;

/// Checks a `scim` system's settings without connecting. Every problem is
/// returned, each naming its key (`settings.base_url`, `settings.auth.token` …).
pub fn validate(system: &SystemConfig) -> Result<(), Vec<String>> {
    Settings::parse(system).map(|_| ())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The SCIM connector for one system.
pub struct ScimConnector {
    system: SystemId,
    settings: Settings,
    /// The entitlements Tenure manages (groups whose membership is read
    /// one by one when the service cannot list members).
    managed: Vec<EntitlementName>,
    http: Http,
    discovered: Mutex<Option<Arc<Discovered>>>,
    discovering: tokio::sync::Mutex<()>,
    /// Account key (lower case with `case_insensitive_username`) → SCIM id.
    users: Mutex<HashMap<String, String>>,
    /// Group displayName → SCIM id.
    groups: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for ScimConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScimConnector")
            .field("system", &self.system)
            .field("base_url", &self.settings.base_url.as_str())
            .field("profiles", &self.settings.profiles)
            .finish_non_exhaustive()
    }
}

/// Why one operation failed.
enum Fail {
    /// The service's answer, or no answer.
    Http(Failure),
    /// Refused by the connector after what the service said (no such
    /// account or group, a key taken by someone else) or by the settings.
    Rejected(String),
}

impl From<Failure> for Fail {
    fn from(f: Failure) -> Self {
        Fail::Http(f)
    }
}

/// State of one `apply` call.
struct Batch {
    d: Arc<Discovered>,
    /// Set when the service stopped answering: the rest is not attempted.
    down: Mutex<Option<String>>,
    /// Without filter support: every user and group, listed once per batch
    /// (a miss after the listing is final).
    users_list: tokio::sync::Mutex<Option<Arc<Vec<Value>>>>,
    groups_list: tokio::sync::Mutex<Option<Arc<Vec<Value>>>>,
}

impl Batch {
    fn new(d: Arc<Discovered>) -> Batch {
        Batch {
            d,
            down: Mutex::new(None),
            users_list: tokio::sync::Mutex::new(None),
            groups_list: tokio::sync::Mutex::new(None),
        }
    }
}

/// A page of a listing.
struct Page {
    resources: Vec<Value>,
    total: Option<u64>,
    next_cursor: Option<String>,
}

fn page_of(reply: &Reply) -> Option<Page> {
    let o = reply.body.as_object()?;
    let resources = match get_ci(o, "Resources") {
        Some(Value::Array(a)) => a.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return None,
    };
    Some(Page {
        resources,
        total: get_ci(o, "totalResults").and_then(Value::as_u64),
        next_cursor: get_ci(o, "nextCursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
    })
}

fn malformed(what: &str, reply: &Reply) -> Failure {
    let mut message = format!("HTTP {}, but the answer is not a SCIM {what}", reply.status);
    if !reply.text.is_empty() {
        message.push_str(": ");
        message.push_str(&reply.text);
    }
    Failure {
        message,
        status: Some(reply.status),
        // Perhaps a proxy's page or a half-deployed service: worth another try.
        transient: true,
        retry_after: None,
    }
}

fn id_of(v: &Value) -> Option<String> {
    v.as_object()
        .and_then(|o| get_ci(o, "id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `active` as the service wrote it (absent means enabled: an unknown state
/// is treated as access held, so that a leaver is always disabled explicitly).
fn active_of(v: &Value) -> bool {
    match v.as_object().and_then(|o| get_ci(o, "active")) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    }
}

fn patch_body(ops: Vec<Value>) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

impl ScimConnector {
    /// Builds the connector: checks the settings and reads the secrets (an
    /// environment variable or a file relative to `config_dir`). Nothing is
    /// sent yet; discovery happens on [`Connector::check`] or first use.
    pub async fn new(system: &SystemConfig, config_dir: &Path) -> Result<Self, ConnectorError> {
        let id = system.id.clone();
        let settings = Settings::parse(system).map_err(|problems| ConnectorError::Settings {
            system: id.clone(),
            problems,
        })?;
        let http = Http::new(&settings, config_dir).map_err(|reason| ConnectorError::Secret {
            system: id.clone(),
            reason,
        })?;
        Ok(ScimConnector {
            system: id,
            settings,
            managed: system.entitlements.clone(),
            http,
            discovered: Mutex::new(None),
            discovering: tokio::sync::Mutex::new(()),
            users: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// SCIM requests this connector has sent (discovery, reads, lookups and
    /// changes; OAuth 2.0 token requests are counted apart).
    pub fn requests(&self) -> u64 {
        self.http.requests()
    }

    /// OAuth 2.0 token requests this connector has sent.
    pub fn token_requests(&self) -> u64 {
        self.http.token_requests()
    }

    fn key_attr(&self) -> &'static str {
        self.settings.key.name()
    }

    fn norm(&self, key: &str) -> String {
        if self.settings.quirks.case_insensitive_username {
            key.to_lowercase()
        } else {
            key.to_owned()
        }
    }

    fn same_key(&self, a: &str, b: &str) -> bool {
        self.norm(a) == self.norm(b)
    }

    fn patch_users(&self, d: &Discovered) -> bool {
        match self.settings.quirks.update {
            UpdateMethod::Patch => true,
            UpdateMethod::Put => false,
            UpdateMethod::Auto => d.patch,
        }
    }

    fn patch_groups(&self, d: &Discovered) -> bool {
        self.settings.quirks.update == UpdateMethod::Patch || d.patch
    }

    fn http_error(&self, what: String, f: Failure) -> ConnectorError {
        ConnectorError::Http {
            system: self.system.clone(),
            what,
            message: f.message,
            status: f.status,
            transient: f.transient,
            retry_after: f.retry_after,
        }
    }

    fn op_error(&self, op: &Operation, fail: Fail) -> ConnectorError {
        let label = OpLabel::of(op);
        match fail {
            Fail::Http(f) => self.http_error(format!("{label} failed"), f),
            Fail::Rejected(reason) => ConnectorError::Rejected {
                system: self.system.clone(),
                op: label,
                reason,
            },
        }
    }

    // ---- discovery -------------------------------------------------------

    async fn get_optional(&self, endpoint: &str) -> Result<Option<Value>, Failure> {
        let reply = self
            .http
            .send(Method::GET, self.http.url(endpoint, None), &[], None, None)
            .await?;
        match reply.status {
            s if (200..300).contains(&s) && reply.body.is_object() || reply.body.is_array() => {
                Ok(Some(reply.body))
            }
            401 | 403 | 429 => Err(reply.failure()),
            s if s >= 500 && s != 501 => Err(reply.failure()),
            // Not published (404, 501 …): the RFC's defaults apply.
            _ => Ok(None),
        }
    }

    async fn discover(&self) -> Result<Arc<Discovered>, Failure> {
        let mut d = Discovered::default();
        if let Some(spc) = self.get_optional("/ServiceProviderConfig").await? {
            d.apply_config(&spc);
        }
        if let Some(rt) = self.get_optional("/ResourceTypes").await? {
            d.apply_resource_types(&rt);
        }
        if let Some(s) = self.get_optional("/Schemas").await? {
            d.apply_schemas(&s);
        }
        tracing::debug!(system = %self.system, patch = d.patch, filter = d.filter, cursor = d.cursor, etag = d.etag, "SCIM discovery");
        Ok(Arc::new(d))
    }

    async fn discovered(&self, fresh: bool) -> Result<Arc<Discovered>, Failure> {
        if !fresh && let Some(d) = lock(&self.discovered).clone() {
            return Ok(d);
        }
        let _gate = self.discovering.lock().await;
        if !fresh && let Some(d) = lock(&self.discovered).clone() {
            return Ok(d);
        }
        let d = self.discover().await?;
        *lock(&self.discovered) = Some(Arc::clone(&d));
        Ok(d)
    }

    // ---- listing ---------------------------------------------------------

    /// Every resource of an endpoint, page by page (cursor when offered).
    async fn list(
        &self,
        d: &Discovered,
        endpoint: &str,
        extra: &[(&str, String)],
    ) -> Result<Vec<Value>, Failure> {
        let count = d
            .max_page_size
            .map_or(self.settings.page_size, |m| m.min(self.settings.page_size));
        let url = self.http.url(endpoint, None);
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut start: u64 = 1;
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let mut q: Vec<(&str, String)> = extra.to_vec();
            q.push(("count", count.to_string()));
            if d.cursor {
                q.push(("cursor", cursor.clone()));
            } else {
                q.push(("startIndex", start.to_string()));
            }
            let reply = self
                .http
                .send(Method::GET, url.clone(), &q, None, None)
                .await?;
            if !reply.ok() {
                return Err(reply.failure());
            }
            let Some(page) = page_of(&reply) else {
                return Err(malformed("ListResponse", &reply));
            };
            let got = page.resources.len() as u64;
            for r in page.resources {
                // A resource seen on an earlier page (the list changed while
                // it was read) is kept once.
                let fresh = id_of(&r).is_none_or(|id| seen.insert(id));
                if fresh {
                    out.push(r);
                }
            }
            if d.cursor {
                match page.next_cursor {
                    Some(next) if got > 0 && next != cursor => cursor = next,
                    _ => return Ok(out),
                }
            } else {
                start += got;
                let done = got == 0 || page.total.is_none_or(|t| start > t);
                if done {
                    return Ok(out);
                }
            }
        }
        Err(Failure {
            message: format!("{endpoint}: more than {MAX_PAGES} pages; giving up"),
            status: None,
            transient: false,
            retry_after: None,
        })
    }

    /// Resources of an endpoint matching a filter (the first page).
    async fn search(
        &self,
        endpoint: &str,
        filter: String,
        extra: &[(&str, String)],
    ) -> Result<Vec<Value>, Failure> {
        let mut q = vec![("filter", filter)];
        q.extend_from_slice(extra);
        let reply = self
            .http
            .send(Method::GET, self.http.url(endpoint, None), &q, None, None)
            .await?;
        if !reply.ok() {
            return Err(reply.failure());
        }
        page_of(&reply)
            .map(|p| p.resources)
            .ok_or_else(|| malformed("ListResponse", &reply))
    }

    // ---- ids -------------------------------------------------------------

    fn key_of(&self, user: &Value) -> Option<String> {
        AttrPath::simple(self.key_attr()).get(user)
    }

    fn remember_user(&self, key: &str, id: String) {
        lock(&self.users).insert(self.norm(key), id);
    }

    fn forget_user(&self, key: &str) {
        lock(&self.users).remove(&self.norm(key));
    }

    /// Finds a user by its key on the service (never from the cache). With
    /// `loose`, a user whose key differs only in case is found too (to say
    /// what a 409 is about).
    async fn lookup_user(
        &self,
        b: &Batch,
        key: &str,
        loose: bool,
    ) -> Result<Option<(String, Value)>, Failure> {
        let candidates = if b.d.filter {
            let filter = format!("{} eq {}", self.key_attr(), quote(key));
            self.search(&b.d.users, filter, &[]).await?
        } else {
            let mut listed = b.users_list.lock().await;
            match listed.as_ref() {
                Some(all) => all.to_vec(),
                None => {
                    let all = Arc::new(self.list(&b.d, &b.d.users, &[]).await?);
                    for u in all.iter() {
                        if let (Some(k), Some(id)) = (self.key_of(u), id_of(u)) {
                            self.remember_user(&k, id);
                        }
                    }
                    *listed = Some(Arc::clone(&all));
                    all.to_vec()
                }
            }
        };
        // The service may compare without case; the key decides.
        let exact = candidates
            .iter()
            .find(|u| self.key_of(u).as_deref() == Some(key));
        let found = exact.or_else(|| {
            candidates.iter().find(|u| {
                self.key_of(u).is_some_and(|k| {
                    self.same_key(&k, key) || (loose && k.to_lowercase() == key.to_lowercase())
                })
            })
        });
        Ok(found.and_then(|u| id_of(u).map(|id| (id, u.clone()))))
    }

    async fn resolve_user(&self, b: &Batch, key: &str) -> Result<Option<String>, Failure> {
        if let Some(id) = lock(&self.users).get(&self.norm(key)).cloned() {
            return Ok(Some(id));
        }
        let found = self.lookup_user(b, key, false).await?;
        if let Some((id, _)) = &found {
            self.remember_user(key, id.clone());
        }
        Ok(found.map(|(id, _)| id))
    }

    async fn resolve_group(&self, b: &Batch, name: &str) -> Result<Option<String>, Failure> {
        if let Some(id) = lock(&self.groups).get(name).cloned() {
            return Ok(Some(id));
        }
        let candidates = if b.d.filter {
            let extra = [("excludedAttributes", "members".to_owned())];
            self.search(
                &b.d.groups,
                format!("displayName eq {}", quote(name)),
                &extra,
            )
            .await?
        } else {
            let mut listed = b.groups_list.lock().await;
            match listed.as_ref() {
                Some(all) => all.to_vec(),
                None => {
                    let extra = [("excludedAttributes", "members".to_owned())];
                    let all = Arc::new(self.list(&b.d, &b.d.groups, &extra).await?);
                    let mut cache = lock(&self.groups);
                    for g in all.iter() {
                        if let (Some(n), Some(id)) = (display_name(g), id_of(g)) {
                            cache.insert(n, id);
                        }
                    }
                    *listed = Some(Arc::clone(&all));
                    all.to_vec()
                }
            }
        };
        let exact = candidates
            .iter()
            .find(|g| display_name(g).as_deref() == Some(name));
        let found = exact.or_else(|| {
            let ci: Vec<&Value> = candidates
                .iter()
                .filter(|g| {
                    display_name(g).is_some_and(|n| n.to_lowercase() == name.to_lowercase())
                })
                .collect();
            if ci.len() == 1 {
                ci.first().copied()
            } else {
                None
            }
        });
        let id = found.and_then(id_of);
        if let Some(id) = &id {
            lock(&self.groups).insert(name.to_owned(), id.clone());
        }
        Ok(id)
    }

    // ---- operations ------------------------------------------------------

    fn path_for(&self, attr: &str) -> Result<&AttrPath, Fail> {
        self.settings.attributes.get(attr).ok_or_else(|| {
            Fail::Rejected(format!(
                "attribute {attr:?} has no SCIM path (the account mapping does not compute it; see settings.attributes)"
            ))
        })
    }

    /// Whether Tenure writes the identity's id as `externalId` (RFC 7643
    /// §3.1: the provisioning client's identifier): when the key is the
    /// userName and no attribute is mapped to externalId.
    fn writes_external_id(&self) -> bool {
        self.settings.key == KeyAttribute::UserName
            && !self
                .settings
                .attributes
                .values()
                .any(|p| p.urn.is_none() && p.attr.eq_ignore_ascii_case("externalId"))
    }

    fn user_body(
        &self,
        d: &Discovered,
        key: &str,
        identity: Option<&IdentityId>,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Value, Fail> {
        let mut body = json!({"schemas": [USER_SCHEMA]});
        AttrPath::simple(self.key_attr()).set(&mut body, Value::String(key.to_owned()));
        if let Some(identity) = identity.filter(|_| self.writes_external_id()) {
            AttrPath::simple("externalId").set(&mut body, Value::String(identity.to_string()));
        }
        if self.settings.quirks.active_supported
            && let Some(o) = body.as_object_mut()
        {
            o.insert("active".to_owned(), Value::Bool(true));
        }
        for (attr, value) in attributes {
            let path = self.path_for(attr)?;
            if !value.is_empty() {
                path.set(&mut body, d.typed(path, value));
            }
        }
        Ok(body)
    }

    /// Whether an existing user is the one a create asked for: its
    /// `externalId` is the identity's id (Tenure wrote it, and the create is
    /// a replay, perhaps followed by changes), or, when it has none, it
    /// holds exactly the attributes asked for.
    fn is_ours(
        &self,
        user: &Value,
        identity: Option<&IdentityId>,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        if self.writes_external_id()
            && let Some(ext) = AttrPath::simple("externalId").get(user)
        {
            return match identity {
                Some(i) if i.as_str() == ext => Ok(()),
                _ => Err(format!("its externalId is {ext:?}, not this identity's id")),
            };
        }
        let mut differ = Vec::new();
        for (attr, want) in attributes {
            let Some(path) = self.settings.attributes.get(attr) else {
                continue;
            };
            let have = path.get(user).unwrap_or_default();
            if &have != want {
                differ.push(format!("{attr} is {have:?}, not {want:?}"));
            }
        }
        if self.settings.quirks.active_supported && !active_of(user) {
            differ.push("it is disabled".to_owned());
        }
        if differ.is_empty() {
            Ok(())
        } else {
            Err(differ.join(", "))
        }
    }

    async fn create(
        &self,
        b: &Batch,
        key: &str,
        identity: Option<&IdentityId>,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), Fail> {
        let body = self.user_body(&b.d, key, identity, attributes)?;
        let reply = self
            .http
            .send(
                Method::POST,
                self.http.url(&b.d.users, None),
                &[],
                Some(&body),
                None,
            )
            .await?;
        if reply.ok() {
            let id = id_of(&reply.body).or_else(|| {
                reply
                    .location
                    .as_deref()
                    .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            });
            match id {
                Some(id) => self.remember_user(key, id),
                None => self.forget_user(key),
            }
            return Ok(());
        }
        if reply.status != 409 {
            return Err(reply.failure().into());
        }
        // Taken: a replay of this very create, or someone else's account.
        let Some((id, user)) = self.lookup_user(b, key, true).await? else {
            // Another attribute is what is taken (an e-mail, say).
            return Err(reply.failure().into());
        };
        let found_key = self.key_of(&user).unwrap_or_default();
        if found_key != key && !self.settings.quirks.case_insensitive_username {
            return Err(Fail::Rejected(format!(
                "the service answered 409 (taken): it holds user {found_key:?}, which it does not tell apart from {key:?}; it is another account and is not taken over (if the service compares user names without case, use profile \"case_insensitive_username\")"
            )));
        }
        match self.is_ours(&user, identity, attributes) {
            Ok(()) => {
                self.remember_user(key, id);
                Ok(())
            }
            Err(why) => Err(Fail::Rejected(format!(
                "the service answered 409 (taken): {} {found_key:?} already exists and is not the account this create asked for ({why}); it is not taken over — correlate it to its identity, or delete it",
                self.key_attr()
            ))),
        }
    }

    /// The user's id, or a refusal naming the account.
    async fn need_user(&self, b: &Batch, key: &str, doing: &str) -> Result<String, Fail> {
        self.resolve_user(b, key).await?.ok_or_else(|| {
            Fail::Rejected(format!(
                "no user with {} {key:?} on the service ({doing})",
                self.key_attr()
            ))
        })
    }

    /// Sends a PATCH to a user; a 404 with a cached id looks the user up
    /// again once. Returns the final answer.
    async fn patch_user(
        &self,
        b: &Batch,
        key: &str,
        doing: &str,
        ops: Vec<Value>,
    ) -> Result<Reply, Fail> {
        let body = patch_body(ops);
        let mut id = self.need_user(b, key, doing).await?;
        for attempt in 0..2 {
            let reply = self
                .http
                .send(
                    Method::PATCH,
                    self.http.url(&b.d.users, Some(&id)),
                    &[],
                    Some(&body),
                    None,
                )
                .await?;
            if reply.status == 404 && attempt == 0 {
                self.forget_user(key);
                id = self.need_user(b, key, doing).await?;
                continue;
            }
            return Ok(reply);
        }
        Err(Fail::Rejected(format!("user {key:?} keeps disappearing")))
    }

    /// GET the user, change it, PUT it back (with If-Match when the service
    /// supports ETags; a 412 starts over once).
    async fn put_user(
        &self,
        b: &Batch,
        key: &str,
        doing: &str,
        edit: &(dyn Fn(&mut Value) + Sync),
    ) -> Result<(), Fail> {
        let mut id = self.need_user(b, key, doing).await?;
        for attempt in 0..3 {
            let url = self.http.url(&b.d.users, Some(&id));
            let got = self
                .http
                .send(Method::GET, url.clone(), &[], None, None)
                .await?;
            if got.status == 404 && attempt == 0 {
                self.forget_user(key);
                id = self.need_user(b, key, doing).await?;
                continue;
            }
            if !got.ok() {
                return Err(got.failure().into());
            }
            if !got.body.is_object() {
                return Err(malformed("User", &got).into());
            }
            let version = got.etag.clone().or_else(|| {
                got.body
                    .pointer("/meta/version")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            let mut user = got.body;
            if let Some(o) = user.as_object_mut() {
                o.retain(|k, _| !k.eq_ignore_ascii_case("meta"));
            }
            edit(&mut user);
            let if_match = if b.d.etag { version.as_deref() } else { None };
            let reply = self
                .http
                .send(Method::PUT, url, &[], Some(&user), if_match)
                .await?;
            if reply.status == 412 && attempt < 2 {
                continue; // changed between our read and our write: read again
            }
            if reply.ok() {
                return Ok(());
            }
            return Err(reply.failure().into());
        }
        Err(Failure {
            message: "the user kept changing between reading and writing it (HTTP 412)".to_owned(),
            status: Some(412),
            transient: true,
            retry_after: None,
        }
        .into())
    }

    async fn update(
        &self,
        b: &Batch,
        key: &str,
        changes: &BTreeMap<String, AttributeChange>,
    ) -> Result<(), Fail> {
        let mut paths = Vec::new();
        for (attr, change) in changes {
            let path = self.path_for(attr)?;
            let present = change.before.as_deref().is_some_and(|v| !v.is_empty());
            if change.after.is_empty() && change.before.as_deref() == Some("") {
                continue; // already absent
            }
            paths.push((path, change, present));
        }
        if paths.is_empty() {
            return Ok(());
        }
        if !self.patch_users(&b.d) {
            let d = Arc::clone(&b.d);
            let edit = move |user: &mut Value| {
                for (path, change, _) in &paths {
                    if change.after.is_empty() {
                        path.remove(user);
                    } else {
                        path.set(user, d.typed(path, &change.after));
                    }
                }
            };
            return self.put_user(b, key, "nothing to update", &edit).await;
        }
        let ops = |force_add: bool| -> Vec<Value> {
            paths
                .iter()
                .map(|(path, change, present)| {
                    if change.after.is_empty() {
                        path.patch_remove()
                    } else {
                        let present = *present && !(force_add && path.is_filtered());
                        path.patch_set(b.d.typed(path, &change.after), present)
                    }
                })
                .collect()
        };
        let reply = self
            .patch_user(b, key, "nothing to update", ops(false))
            .await?;
        if reply.ok() {
            return Ok(());
        }
        // A value the plan saw is gone: a filtered replace selects nothing.
        // The PATCH was refused whole (RFC 7644 §3.5.2), so add it instead.
        if reply.status == 400
            && reply.scim_type() == Some("noTarget")
            && paths
                .iter()
                .any(|(p, c, present)| p.is_filtered() && *present && !c.after.is_empty())
        {
            let again = self
                .patch_user(b, key, "nothing to update", ops(true))
                .await?;
            if again.ok() {
                return Ok(());
            }
            return Err(again.failure().into());
        }
        Err(reply.failure().into())
    }

    async fn set_active(&self, b: &Batch, key: &str, active: bool) -> Result<(), Fail> {
        let doing = if active {
            "nothing to enable"
        } else {
            "nothing to disable"
        };
        if !self.settings.quirks.active_supported {
            return Err(Fail::Rejected(
                "the service ignores active (profile delete_required), so this system cannot enable or disable accounts".to_owned(),
            ));
        }
        if !self.patch_users(&b.d) {
            let edit = move |user: &mut Value| {
                if let Some(o) = user.as_object_mut() {
                    o.retain(|k, _| !k.eq_ignore_ascii_case("active"));
                    o.insert("active".to_owned(), Value::Bool(active));
                }
            };
            return self.put_user(b, key, doing, &edit).await;
        }
        let reply = self
            .patch_user(
                b,
                key,
                doing,
                vec![json!({"op": "replace", "path": "active", "value": active})],
            )
            .await?;
        if reply.ok() {
            Ok(())
        } else {
            Err(reply.failure().into())
        }
    }

    async fn delete(&self, b: &Batch, key: &str) -> Result<(), Fail> {
        for attempt in 0..2 {
            let Some(id) = self.resolve_user(b, key).await? else {
                return Ok(()); // already gone
            };
            let reply = self
                .http
                .send(
                    Method::DELETE,
                    self.http.url(&b.d.users, Some(&id)),
                    &[],
                    None,
                    None,
                )
                .await?;
            if reply.ok() {
                self.forget_user(key);
                return Ok(());
            }
            if reply.status == 404 {
                // Gone, or the cached id was stale: look it up once more.
                self.forget_user(key);
                if attempt == 0 {
                    continue;
                }
                return Ok(());
            }
            return Err(reply.failure().into());
        }
        Ok(())
    }

    async fn membership(
        &self,
        b: &Batch,
        key: &str,
        group: &EntitlementName,
        add: bool,
    ) -> Result<(), Fail> {
        if !self.settings.groups {
            return Err(Fail::Rejected(
                "settings.resource_types does not include \"Group\", so this system has no memberships".to_owned(),
            ));
        }
        if !self.patch_groups(&b.d) {
            return Err(Fail::Rejected(
                "the service does not support PATCH, and Tenure never rewrites a group's whole member list".to_owned(),
            ));
        }
        let name = group.as_str();
        for attempt in 0..2 {
            let Some(gid) = self.resolve_group(b, name).await? else {
                if add {
                    return Err(Fail::Rejected(format!(
                        "no group with displayName {name:?} on the service (Tenure does not create groups)"
                    )));
                }
                return Ok(()); // no group, no membership
            };
            let uid = match self.resolve_user(b, key).await? {
                Some(id) => id,
                None if add => {
                    return Err(Fail::Rejected(format!(
                        "no user with {} {key:?} on the service (a membership needs an account)",
                        self.key_attr()
                    )));
                }
                None => return Ok(()),
            };
            let op = if add {
                json!({"op": "add", "path": "members", "value": [{"value": uid}]})
            } else {
                json!({"op": "remove", "path": format!("members[value eq {}]", quote(&uid))})
            };
            let reply = self
                .http
                .send(
                    Method::PATCH,
                    self.http.url(&b.d.groups, Some(&gid)),
                    &[],
                    Some(&patch_body(vec![op])),
                    None,
                )
                .await?;
            if reply.ok() {
                return Ok(());
            }
            match (reply.status, reply.scim_type()) {
                // Held already / not held: the change is there.
                (409, _) if add => return Ok(()),
                (400, Some("noTarget")) if !add => return Ok(()),
                (404, _) if attempt == 0 => {
                    // The group's cached id is stale (or the user's, which
                    // the service reports the same way).
                    lock(&self.groups).remove(name);
                    self.forget_user(key);
                }
                _ => return Err(reply.failure().into()),
            }
        }
        Err(Fail::Rejected(format!(
            "group {name:?} or user {key:?} disappeared while the membership was changed"
        )))
    }

    async fn run(&self, b: &Batch, op: &Operation) -> Result<(), Fail> {
        if op.system != self.system {
            return Err(Fail::Rejected(format!(
                "the operation is for system {}, not {}",
                op.system, self.system
            )));
        }
        let key = op.account.as_str();
        match &op.action {
            Action::CreateAccount { attributes } => {
                self.create(b, key, op.identity.as_ref(), attributes).await
            }
            Action::UpdateAccount { changes } => self.update(b, key, changes).await,
            Action::EnableAccount => self.set_active(b, key, true).await,
            Action::DisableAccount => self.set_active(b, key, false).await,
            Action::DeleteAccount => self.delete(b, key).await,
            Action::ArchiveAccount { .. } => Err(Fail::Rejected(
                "a SCIM application cannot archive data itself; set archive_webhook on the system"
                    .to_owned(),
            )),
            Action::AddMembership { entitlement } => {
                self.membership(b, key, entitlement, true).await
            }
            Action::RemoveMembership { entitlement } => {
                self.membership(b, key, entitlement, false).await
            }
        }
    }

    /// Runs one account's operations in order.
    async fn run_chain(
        &self,
        b: &Batch,
        ops: &[Operation],
        chain: Vec<usize>,
    ) -> Vec<(usize, Result<(), ConnectorError>)> {
        let mut out = Vec::with_capacity(chain.len());
        let mut earlier: Option<String> = None;
        for i in chain {
            let Some(op) = ops.get(i) else { continue };
            let skip = earlier
                .clone()
                .map(|e| {
                    format!("not attempted: an earlier operation on this account failed ({e})")
                })
                .or_else(|| {
                    lock(&b.down).clone().map(|e| {
                        format!(
                            "not attempted: the service stopped answering during this batch ({e})"
                        )
                    })
                });
            if let Some(message) = skip {
                let label = OpLabel::of(op);
                out.push((
                    i,
                    Err(ConnectorError::Http {
                        system: self.system.clone(),
                        what: format!("{label} failed"),
                        message,
                        status: None,
                        transient: true,
                        retry_after: None,
                    }),
                ));
                continue;
            }
            match self.run(b, op).await {
                Ok(()) => out.push((i, Ok(()))),
                Err(fail) => {
                    if let Fail::Http(f) = &fail
                        && f.status.is_none()
                        && f.transient
                    {
                        lock(&b.down).get_or_insert_with(|| f.message.clone());
                    }
                    let e = self.op_error(op, fail);
                    earlier = Some(e.to_string());
                    out.push((i, Err(e)));
                }
            }
        }
        out
    }

    async fn read_memberships_by_filter(
        &self,
        d: &Arc<Discovered>,
        accounts: &mut BTreeMap<AccountKey, Account>,
        ids: &HashMap<AccountKey, String>,
    ) -> Result<(), Failure> {
        let b = Batch::new(Arc::clone(d));
        let mut checks = Vec::new();
        for ent in &self.managed {
            let Some(gid) = self.resolve_group(&b, ent.as_str()).await? else {
                continue;
            };
            for (key, uid) in ids {
                checks.push((ent.clone(), gid.clone(), key.clone(), uid.clone()));
            }
        }
        let extra = [("excludedAttributes", "members".to_owned())];
        let results: Vec<Result<Option<(AccountKey, EntitlementName)>, Failure>> =
            futures::stream::iter(checks.into_iter().map(|(ent, gid, key, uid)| {
                let extra = &extra;
                let groups = &d.groups;
                async move {
                    let filter = format!("id eq {} and members eq {}", quote(&gid), quote(&uid));
                    let found = self.search(groups, filter, extra).await?;
                    Ok((!found.is_empty()).then_some((key, ent)))
                }
            }))
            .buffer_unordered(self.settings.max_concurrency)
            .collect()
            .await;
        for r in results {
            if let Some((key, ent)) = r?
                && let Some(a) = accounts.get_mut(&key)
            {
                a.entitlements.insert(ent);
            }
        }
        Ok(())
    }

    async fn read(&self) -> Result<SystemAccounts, Failure> {
        let d = self.discovered(false).await?;
        let users = self.list(&d, &d.users, &[]).await?;
        let mut accounts = BTreeMap::new();
        let mut ids: HashMap<String, AccountKey> = HashMap::new();
        let mut by_key: HashMap<AccountKey, String> = HashMap::new();
        let mut cache = HashMap::new();
        let mut unusable = 0usize;
        for u in &users {
            let (Some(id), Some(k)) = (id_of(u), self.key_of(u)) else {
                unusable += 1;
                continue;
            };
            let Ok(key) = AccountKey::new(self.norm(&k)) else {
                unusable += 1;
                continue;
            };
            if accounts.contains_key(&key) {
                unusable += 1;
                continue;
            }
            let attributes = self
                .settings
                .attributes
                .iter()
                .map(|(name, path)| (name.clone(), path.get(u).unwrap_or_default()))
                .collect();
            let enabled = !self.settings.quirks.active_supported || active_of(u);
            cache.insert(self.norm(&k), id.clone());
            ids.insert(id.clone(), key.clone());
            by_key.insert(key.clone(), id);
            accounts.insert(
                key.clone(),
                Account {
                    key,
                    attributes,
                    enabled,
                    entitlements: BTreeSet::new(),
                    archived: false,
                },
            );
        }
        *lock(&self.users) = cache;
        if self.settings.groups {
            if self.settings.quirks.members_readable {
                let groups = self.list(&d, &d.groups, &[]).await?;
                let mut gcache = HashMap::new();
                for g in &groups {
                    let (Some(name), Some(gid)) = (display_name(g), id_of(g)) else {
                        continue;
                    };
                    gcache.insert(name.clone(), gid);
                    let Ok(ent) = EntitlementName::new(name) else {
                        continue;
                    };
                    let members = g
                        .as_object()
                        .and_then(|o| get_ci(o, "members"))
                        .and_then(Value::as_array);
                    for m in members.into_iter().flatten() {
                        let Some(mo) = m.as_object() else { continue };
                        let is_group = get_ci(mo, "type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.eq_ignore_ascii_case("Group"));
                        let member = get_ci(mo, "value").and_then(Value::as_str);
                        if let (false, Some(key)) = (is_group, member.and_then(|v| ids.get(v)))
                            && let Some(a) = accounts.get_mut(key)
                        {
                            a.entitlements.insert(ent.clone());
                        }
                    }
                }
                *lock(&self.groups) = gcache;
            } else {
                lock(&self.groups).clear();
                self.read_memberships_by_filter(&d, &mut accounts, &by_key)
                    .await?;
            }
        }
        if unusable > 0 {
            tracing::warn!(
                system = %self.system,
                skipped = unusable,
                "some users were skipped: no id, no {} (or one Tenure cannot use as a key: empty, over 256 bytes, control characters), or a repeated one",
                self.key_attr()
            );
        }
        Ok(SystemAccounts { accounts })
    }
}

fn display_name(g: &Value) -> Option<String> {
    g.as_object()
        .and_then(|o| get_ci(o, "displayName"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[async_trait::async_trait]
impl Connector for ScimConnector {
    fn system(&self) -> &SystemId {
        &self.system
    }

    fn capabilities(&self) -> Capabilities {
        let d = lock(&self.discovered).clone();
        let patch_groups = d.as_deref().is_none_or(|d| self.patch_groups(d));
        Capabilities {
            read: true,
            create: true,
            update: true,
            disable: self.settings.quirks.active_supported,
            delete: true,
            memberships: self.settings.groups && patch_groups,
            last_login: false,
            archive: false,
            archive_to_manager: false,
        }
    }

    async fn check(&self) -> Result<(), ConnectorError> {
        let d = self.discovered(true).await.map_err(|f| {
            self.http_error(
                "discovery (/ServiceProviderConfig, /ResourceTypes, /Schemas) failed".into(),
                f,
            )
        })?;
        // Discovery documents are often public: this one needs the credentials.
        let q = [("startIndex", "1".to_owned()), ("count", "1".to_owned())];
        let reply = self
            .http
            .send(Method::GET, self.http.url(&d.users, None), &q, None, None)
            .await
            .map_err(|f| {
                self.http_error(format!("listing users at {} failed", self.http.base()), f)
            })?;
        if !reply.ok() {
            return Err(self.http_error(
                format!("listing users at {} failed", self.http.base()),
                reply.failure(),
            ));
        }
        let mut problems = d.mapping_problems(self.settings.attributes.iter());
        if self.settings.groups && !self.patch_groups(&d) {
            problems.push("settings.resource_types: the service does not support PATCH, so group memberships cannot be changed one by one; remove \"Group\"".to_owned());
        }
        if self.settings.groups {
            let b = Batch::new(Arc::clone(&d));
            for ent in &self.managed {
                match self.resolve_group(&b, ent.as_str()).await {
                    Ok(Some(_)) => {}
                    Ok(None) => problems.push(format!(
                        "entitlements: no group with displayName {:?} on the service (Tenure does not create groups)",
                        ent.as_str()
                    )),
                    Err(f) => return Err(self.http_error("looking up groups failed".into(), f)),
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::Settings {
                system: self.system.clone(),
                problems,
            })
        }
    }

    async fn read_accounts(&self) -> Result<SystemAccounts, ConnectorError> {
        self.read()
            .await
            .map_err(|f| self.http_error("reading accounts failed".into(), f))
    }

    async fn apply(&self, ops: &[Operation]) -> Vec<Result<(), ConnectorError>> {
        if ops.is_empty() {
            return Vec::new();
        }
        let d = match self.discovered(false).await {
            Ok(d) => d,
            Err(f) => {
                return ops
                    .iter()
                    .map(|op| {
                        let label = OpLabel::of(op);
                        Err(self.http_error(
                            format!("{label} not attempted: discovery failed"),
                            f.clone(),
                        ))
                    })
                    .collect();
            }
        };
        let batch = Batch::new(d);
        // One chain per account, in the order given.
        let mut chains: Vec<Vec<usize>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            let k = self.norm(op.account.as_str());
            match index.get(&k) {
                Some(&c) => {
                    if let Some(chain) = chains.get_mut(c) {
                        chain.push(i);
                    }
                }
                None => {
                    index.insert(k, chains.len());
                    chains.push(vec![i]);
                }
            }
        }
        let done: Vec<Vec<(usize, Result<(), ConnectorError>)>> = futures::stream::iter(
            chains
                .into_iter()
                .map(|chain| self.run_chain(&batch, ops, chain)),
        )
        .buffer_unordered(self.settings.max_concurrency)
        .collect()
        .await;
        let mut results: Vec<Option<Result<(), ConnectorError>>> =
            (0..ops.len()).map(|_| None).collect();
        for (i, r) in done.into_iter().flatten() {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(r);
            }
        }
        let failed = results
            .iter()
            .filter(|r| !matches!(r, Some(Ok(()))))
            .count();
        tracing::debug!(system = %self.system, ops = ops.len(), failed, "SCIM batch applied");
        results
            .into_iter()
            .zip(ops)
            .map(|(r, op)| {
                r.unwrap_or_else(|| {
                    Err(self.op_error(
                        op,
                        Fail::Http(Failure {
                            message: "not attempted".into(),
                            status: None,
                            transient: true,
                            retry_after: None,
                        }),
                    ))
                })
            })
            .collect()
    }
}
