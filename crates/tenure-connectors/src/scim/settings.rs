//! The SCIM connector's settings: parsed from the system's `settings` table
//! and checked without connecting.
//!
//! Checked here: unknown and missing keys, the base URL (https, or http to
//! a loopback address only, so that a token never crosses a network in
//! clear), the shape of the authentication and its secret references,
//! every attribute path of the mapping, that every account attribute has a
//! path and no path is written twice, the profile names and the numeric
//! limits. Not checked here: whether the service knows the mapped
//! attributes (that needs its `/Schemas`, see `Connector::check`) and the
//! secrets themselves (read when the connector is built).

use super::path::AttrPath;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tenure_core::config::{SecretRef, SystemConfig};

/// Where a secret comes from (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file, relative to the configuration directory.
    File(String),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "environment variable {v}"),
            SecretSource::File(p) => write!(f, "file {p}"),
        }
    }
}

/// How an OAuth 2.0 client proves who it is to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1, the default).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// How requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthSetting {
    /// `Authorization: Bearer <token>`.
    Bearer { token: SecretSource },
    /// HTTP Basic.
    Basic {
        user: String,
        password: SecretSource,
    },
    /// OAuth 2.0 client credentials: a token fetched from `token_url`,
    /// cached, and fetched again before it expires or when refused.
    OAuth2 {
        token_url: reqwest::Url,
        client_id: String,
        client_secret: SecretSource,
        scope: Option<String>,
        client_auth: ClientAuth,
    },
}

/// How attribute changes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateMethod {
    /// PATCH when the service announces it, PUT otherwise.
    Auto,
    /// Always PATCH.
    Patch,
    /// Always GET, then PUT the merged resource.
    Put,
}

/// Behaviour that vendor profiles change (see [`PROFILES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quirks {
    pub(crate) update: UpdateMethod,
    /// Groups list their members; otherwise memberships are checked one
    /// by one with a filter on the group (`id eq … and members eq …`).
    pub(crate) members_readable: bool,
    /// The service honours `active`; otherwise the system cannot disable.
    pub(crate) active_supported: bool,
    /// User names are compared without case.
    pub(crate) case_insensitive_username: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            update: UpdateMethod::Auto,
            members_readable: true,
            active_supported: true,
            case_insensitive_username: false,
        }
    }
}

/// The vendor profiles, with what each changes (also in docs/configuration.md).
pub(crate) const PROFILES: &[(&str, &str)] = &[
    (
        "standard",
        "what the service announces in /ServiceProviderConfig",
    ),
    (
        "aws_identity_center",
        "groups never list their members, so each managed group's membership is checked per user with the filter id eq … and members eq …; updates always by PATCH",
    ),
    (
        "put_only",
        "updates by GET then PUT of the merged user, even where PATCH is announced",
    ),
    (
        "delete_required",
        "the service ignores active: the system cannot disable, so leavers' accounts are deleted",
    ),
    (
        "case_insensitive_username",
        "user names are compared without case: keys are read in lower case, and an existing user differing only in case is the same account",
    ),
];

fn apply_profile(q: &mut Quirks, name: &str) -> bool {
    match name {
        "standard" => {}
        "aws_identity_center" => {
            q.members_readable = false;
            q.update = UpdateMethod::Patch;
        }
        "put_only" => q.update = UpdateMethod::Put,
        "delete_required" => q.active_supported = false,
        "case_insensitive_username" => q.case_insensitive_username = true,
        _ => return false,
    }
    true
}

/// Which attribute holds the account key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyAttribute {
    UserName,
    ExternalId,
}

impl KeyAttribute {
    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyAttribute::UserName => "userName",
            KeyAttribute::ExternalId => "externalId",
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The SCIM root, without a trailing slash.
    pub(crate) base_url: reqwest::Url,
    pub(crate) auth: AuthSetting,
    pub(crate) key: KeyAttribute,
    /// Account attribute → SCIM path.
    pub(crate) attributes: BTreeMap<String, AttrPath>,
    pub(crate) groups: bool,
    pub(crate) quirks: Quirks,
    pub(crate) profiles: Vec<String>,
    pub(crate) requests_per_second: Option<f64>,
    pub(crate) max_concurrency: usize,
    pub(crate) timeout: Duration,
    pub(crate) page_size: u32,
    pub(crate) max_retry_wait: Duration,
    pub(crate) ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    base_url: String,
    auth: toml::Table,
    #[serde(default)]
    key_attribute: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    resource_types: Option<Vec<String>>,
    #[serde(default)]
    profile: Option<toml::Value>,
    #[serde(default)]
    requests_per_second: Option<toml::Value>,
    #[serde(default)]
    max_concurrency: Option<i64>,
    #[serde(default)]
    timeout_seconds: Option<i64>,
    #[serde(default)]
    page_size: Option<i64>,
    #[serde(default)]
    max_retry_wait_seconds: Option<i64>,
    #[serde(default)]
    ca_file: Option<String>,
}

const DEFAULT_RPS: f64 = 10.0;
const DEFAULT_CONCURRENCY: usize = 4;
const DEFAULT_TIMEOUT: u64 = 30;
const DEFAULT_PAGE: u32 = 100;
const DEFAULT_RETRY_WAIT: u64 = 60;

fn in_range(
    problems: &mut Vec<String>,
    key: &str,
    v: Option<i64>,
    lo: i64,
    hi: i64,
    d: i64,
) -> i64 {
    match v {
        None => d,
        Some(n) if (lo..=hi).contains(&n) => n,
        Some(n) => {
            problems.push(format!(
                "settings.{key}: {n} is out of range ({lo} to {hi})"
            ));
            d
        }
    }
}

/// Whether a URL's host is a loopback address (where plain http is allowed).
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Parses an http(s) URL; plain http only to loopback.
fn parse_url(problems: &mut Vec<String>, key: &str, s: &str) -> Option<reqwest::Url> {
    let url = match reqwest::Url::parse(s.trim()) {
        Ok(u) => u,
        Err(e) => {
            problems.push(format!("settings.{key}: {s:?} is not a URL ({e})"));
            return None;
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        problems.push(format!(
            "settings.{key}: the URL must not hold credentials; use settings.auth"
        ));
        return None;
    }
    match url.scheme() {
        "https" => Some(url),
        "http" if is_loopback(&url) => Some(url),
        "http" => {
            problems.push(format!("settings.{key}: plain http would send credentials in clear; use https (http is accepted only for localhost and loopback addresses)"));
            None
        }
        other => {
            problems.push(format!(
                "settings.{key}: unsupported scheme {other:?} (expected https)"
            ));
            None
        }
    }
}

fn secret(problems: &mut Vec<String>, key: &str, v: Option<&toml::Value>) -> Option<SecretSource> {
    let how =
        format!("write {key} = {{ env = \"VARIABLE\" }} or {key} = {{ file = \"path/to/file\" }}");
    match v {
        None => {
            problems.push(format!("settings.auth.{key}: missing; {how}"));
            None
        }
        Some(toml::Value::String(_)) => {
            problems.push(format!(
                "settings.auth.{key}: a secret must not be written in the configuration; {how}"
            ));
            None
        }
        Some(toml::Value::Table(t)) => {
            let r: SecretRef = match toml::Value::Table(t.clone()).try_into() {
                Ok(r) => r,
                Err(e) => {
                    let e: toml::de::Error = e;
                    problems.push(format!("settings.auth.{key}: {}", e.message().trim()));
                    return None;
                }
            };
            match (r.env, r.file) {
                (Some(env), None) if !env.trim().is_empty() => Some(SecretSource::Env(env)),
                (None, Some(file)) if !file.trim().is_empty() => Some(SecretSource::File(file)),
                (Some(_), Some(_)) => {
                    problems.push(format!(
                        "settings.auth.{key}: give either env or file, not both"
                    ));
                    None
                }
                _ => {
                    problems.push(format!("settings.auth.{key}: {how} with a non-empty name"));
                    None
                }
            }
        }
        Some(_) => {
            problems.push(format!("settings.auth.{key}: {how}"));
            None
        }
    }
}

fn string(
    problems: &mut Vec<String>,
    t: &toml::Table,
    key: &str,
    required: bool,
) -> Option<String> {
    match t.get(key) {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        None if !required => None,
        None => {
            problems.push(format!("settings.auth.{key}: missing"));
            None
        }
        Some(_) => {
            problems.push(format!("settings.auth.{key}: must be a non-empty string"));
            None
        }
    }
}

fn parse_auth(problems: &mut Vec<String>, t: &toml::Table) -> Option<AuthSetting> {
    let kind = match t.get("type") {
        Some(toml::Value::String(s)) => s.as_str(),
        _ => {
            problems.push(
                "settings.auth.type: missing; one of \"bearer\", \"basic\", \"oauth2\"".to_owned(),
            );
            return None;
        }
    };
    let allowed: &[&str] = match kind {
        "bearer" => &["type", "token"],
        "basic" => &["type", "user", "password"],
        "oauth2" => &[
            "type",
            "token_url",
            "client_id",
            "client_secret",
            "scope",
            "client_auth",
        ],
        other => {
            problems.push(format!(
                "settings.auth.type: unknown authentication {other:?} (one of \"bearer\", \"basic\", \"oauth2\")"
            ));
            return None;
        }
    };
    for k in t.keys() {
        if !allowed.contains(&k.as_str()) {
            problems.push(format!(
                "settings.auth.{k}: unknown key for type = {kind:?} (expected {})",
                allowed[1..].join(", ")
            ));
        }
    }
    match kind {
        "bearer" => {
            secret(problems, "token", t.get("token")).map(|token| AuthSetting::Bearer { token })
        }
        "basic" => {
            let user = string(problems, t, "user", true);
            let password = secret(problems, "password", t.get("password"));
            Some(AuthSetting::Basic {
                user: user?,
                password: password?,
            })
        }
        _ => {
            let token_url = string(problems, t, "token_url", true)
                .and_then(|u| parse_url(problems, "auth.token_url", &u));
            let client_id = string(problems, t, "client_id", true);
            let client_secret = secret(problems, "client_secret", t.get("client_secret"));
            let scope = string(problems, t, "scope", false);
            let client_auth = match string(problems, t, "client_auth", false).as_deref() {
                None | Some("basic") => ClientAuth::Basic,
                Some("post") => ClientAuth::Post,
                Some(other) => {
                    problems.push(format!(
                        "settings.auth.client_auth: {other:?} is not \"basic\" or \"post\""
                    ));
                    ClientAuth::Basic
                }
            };
            Some(AuthSetting::OAuth2 {
                token_url: token_url?,
                client_id: client_id?,
                client_secret: client_secret?,
                scope,
                client_auth,
            })
        }
    }
}

impl Settings {
    /// Parses and checks a system's settings; every problem at once.
    pub(crate) fn parse(system: &SystemConfig) -> Result<Settings, Vec<String>> {
        let Some(table) = &system.settings else {
            return Err(vec![
                "settings: missing; the scim connector needs [system.settings] with base_url and auth".to_owned(),
            ]);
        };
        let raw: RawSettings = toml::Value::Table(table.get_ref().clone())
            .try_into()
            .map_err(|e: toml::de::Error| vec![format!("settings: {}", e.message().trim())])?;
        let mut problems = Vec::new();

        let base_url = parse_url(&mut problems, "base_url", &raw.base_url).map(|mut u| {
            let path = u.path().trim_end_matches('/').to_owned();
            u.set_path(&path);
            u.set_query(None);
            u.set_fragment(None);
            u
        });
        let auth = parse_auth(&mut problems, &raw.auth);

        let key = match raw.key_attribute.as_deref() {
            None | Some("userName") => KeyAttribute::UserName,
            Some("externalId") => KeyAttribute::ExternalId,
            Some(other) => {
                problems.push(format!(
                    "settings.key_attribute: {other:?} is not \"userName\" or \"externalId\""
                ));
                KeyAttribute::UserName
            }
        };

        // Every account attribute needs a path; an attribute not listed is
        // written to the attribute of its own name.
        let mut attributes = BTreeMap::new();
        for attr in system.account.attributes.keys() {
            let path = raw.attributes.get(attr).map(String::as_str).unwrap_or(attr);
            match AttrPath::parse(path) {
                Ok(p) => {
                    attributes.insert(attr.clone(), p);
                }
                Err(e) if raw.attributes.contains_key(attr) => {
                    problems.push(format!("settings.attributes.{attr}: {path:?}: {e}"))
                }
                Err(e) => problems.push(format!(
                    "settings.attributes: account attribute {attr:?} has no SCIM path, and its name is not one ({e}); add {attr} = \"displayName\" (or another path)"
                )),
            }
        }
        for (attr, path) in &raw.attributes {
            if !system.account.attributes.contains_key(attr) {
                problems.push(format!(
                    "settings.attributes.{attr}: the account mapping computes no attribute {attr:?} (add it to [system.account.attributes] or remove it here)"
                ));
                let _ = path;
            }
        }
        let mut used: BTreeMap<String, String> = BTreeMap::new();
        used.insert(
            key.name().to_ascii_lowercase(),
            "the key attribute".to_owned(),
        );
        for (attr, path) in &attributes {
            let text = path.to_string().to_ascii_lowercase();
            let whole = path.attr_path().to_ascii_lowercase();
            if let Some(other) = used.get(&text).or_else(|| {
                // A whole complex attribute clashes with its sub-attributes.
                if path.sub.is_none() {
                    None
                } else {
                    used.get(&whole)
                }
            }) {
                problems.push(format!(
                    "settings.attributes.{attr}: {path} is already written by {other}"
                ));
            } else {
                used.insert(text, format!("attribute {attr:?}"));
            }
        }
        if key == KeyAttribute::ExternalId
            && !attributes.values().any(|p| {
                p.urn.is_none() && p.sub.is_none() && p.attr.eq_ignore_ascii_case("userName")
            })
        {
            problems.push("settings.key_attribute: with \"externalId\" as the key, an account attribute must be mapped to userName, which SCIM requires (settings.attributes)".to_owned());
        }

        let groups = match &raw.resource_types {
            None => true,
            Some(list) => {
                for t in list {
                    if t != "User" && t != "Group" {
                        problems.push(format!(
                            "settings.resource_types: unknown resource type {t:?} (\"User\" and \"Group\" are managed)"
                        ));
                    }
                }
                if !list.iter().any(|t| t == "User") {
                    problems.push("settings.resource_types: must include \"User\"".to_owned());
                }
                list.iter().any(|t| t == "Group")
            }
        };
        if !groups && !system.entitlements.is_empty() {
            problems.push("settings.resource_types: the system declares entitlements, which are SCIM groups: add \"Group\"".to_owned());
        }

        let mut quirks = Quirks::default();
        let names: Vec<String> = match &raw.profile {
            None => vec!["standard".to_owned()],
            Some(toml::Value::String(s)) => vec![s.clone()],
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect(),
            Some(_) => {
                problems.push("settings.profile: a profile name or a list of names".to_owned());
                Vec::new()
            }
        };
        for n in &names {
            if !apply_profile(&mut quirks, n) {
                problems.push(format!(
                    "settings.profile: unknown profile {n:?} (known: {})",
                    PROFILES
                        .iter()
                        .map(|(p, _)| *p)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if !quirks.members_readable && groups && system.entitlements.is_empty() {
            problems.push("settings.profile: the service cannot list group members, so memberships are read for the groups in [system] entitlements only; declare them there".to_owned());
        }

        let requests_per_second = match &raw.requests_per_second {
            None => Some(DEFAULT_RPS),
            Some(toml::Value::Integer(0)) => None,
            Some(toml::Value::Integer(n)) if *n > 0 && *n <= 100_000 => Some(*n as f64),
            Some(toml::Value::Float(f)) if *f > 0.0 && *f <= 100_000.0 => Some(*f),
            Some(v) => {
                problems.push(format!(
                    "settings.requests_per_second: {v} is out of range (0 for no limit, or a number above 0 up to 100000)"
                ));
                None
            }
        };
        let max_concurrency = in_range(
            &mut problems,
            "max_concurrency",
            raw.max_concurrency,
            1,
            64,
            DEFAULT_CONCURRENCY as i64,
        ) as usize;
        let timeout = in_range(
            &mut problems,
            "timeout_seconds",
            raw.timeout_seconds,
            1,
            600,
            DEFAULT_TIMEOUT as i64,
        );
        let page_size = in_range(
            &mut problems,
            "page_size",
            raw.page_size,
            1,
            1000,
            i64::from(DEFAULT_PAGE),
        );
        let retry_wait = in_range(
            &mut problems,
            "max_retry_wait_seconds",
            raw.max_retry_wait_seconds,
            0,
            3600,
            DEFAULT_RETRY_WAIT as i64,
        );
        if raw.ca_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
            problems.push("settings.ca_file: must name a PEM file".to_owned());
        }

        match (base_url, auth) {
            (Some(base_url), Some(auth)) if problems.is_empty() => Ok(Settings {
                base_url,
                auth,
                key,
                attributes,
                groups,
                quirks,
                profiles: names,
                requests_per_second,
                max_concurrency,
                timeout: Duration::from_secs(timeout.unsigned_abs()),
                page_size: u32::try_from(page_size).unwrap_or(DEFAULT_PAGE),
                max_retry_wait: Duration::from_secs(retry_wait.unsigned_abs()),
                ca_file: raw.ca_file,
            }),
            _ => Err(problems),
        }
    }
}
