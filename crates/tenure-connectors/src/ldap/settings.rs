//! The LDAP connector's settings: parsed from the system's `settings` table
//! and checked without connecting.
//!
//! Checked here: unknown and missing keys, the URL's scheme and shape (no
//! credentials in it), TLS options that contradict each other, DN syntax of
//! every base and container, attribute name syntax, the RDN and container
//! templates and their placeholders, that no two account attributes write the
//! same LDAP attribute, that no account attribute writes one the connector
//! manages itself (the key, the object classes, the disable attribute), and
//! the shape of secret references. Not checked here: whether the bases and
//! groups exist and the bind works (that needs a connection, see
//! `Connector::check`).

use super::dn::Dn;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;
use tenure_core::config::{SecretRef, SystemConfig};

const DEFAULT_POOL_SIZE: usize = 4;
const DEFAULT_PAGE_SIZE: i32 = 500;
const DEFAULT_CONNECT_TIMEOUT_SECONDS: u64 = 10;
const DEFAULT_OPERATION_TIMEOUT_SECONDS: u64 = 60;
const DEFAULT_MAX_IN_FLIGHT: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    url: String,
    #[serde(default)]
    starttls: Option<bool>,
    #[serde(default)]
    directory: Option<String>,
    bind_dn: String,
    password: toml::Value,
    people_base: String,
    #[serde(default)]
    groups_base: Option<String>,
    #[serde(default)]
    object_classes: Option<Vec<String>>,
    #[serde(default)]
    account_filter: Option<String>,
    #[serde(default)]
    key_attribute: Option<String>,
    #[serde(default)]
    rdn: Option<String>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    membership_attribute: Option<String>,
    #[serde(default)]
    group_object_class: Option<String>,
    #[serde(default)]
    group_rdn_attribute: Option<String>,
    #[serde(default)]
    group_placeholder_member: Option<String>,
    #[serde(default)]
    disable_method: Option<String>,
    #[serde(default)]
    disabled_container: Option<String>,
    #[serde(default)]
    archive_container: Option<String>,
    #[serde(default)]
    disabled_attribute: Option<String>,
    #[serde(default)]
    disabled_value: Option<String>,
    #[serde(default)]
    enabled_value: Option<String>,
    #[serde(default)]
    initial_password: Option<toml::Value>,
    #[serde(default)]
    pool_size: Option<i64>,
    #[serde(default)]
    max_in_flight: Option<i64>,
    #[serde(default)]
    page_size: Option<i64>,
    #[serde(default)]
    connect_timeout_seconds: Option<i64>,
    #[serde(default)]
    operation_timeout_seconds: Option<i64>,
    #[serde(default)]
    tls_ca_file: Option<String>,
    #[serde(default)]
    tls_insecure_skip_verify: Option<bool>,
}

/// Which directory server the system is: it chooses defaults and quirks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Directory {
    /// OpenLDAP and other standard LDAP servers.
    OpenLdap,
    /// Microsoft Active Directory (and Samba's AD domain controller).
    ActiveDirectory,
}

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Secret {
    /// An environment variable.
    Env(String),
    /// A file, relative to the configuration directory.
    File(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(v) => write!(f, "Env({v:?})"),
            Secret::File(p) => write!(f, "File({p:?})"),
        }
    }
}

/// How an account is disabled and enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DisableMethod {
    /// The system cannot disable: leavers are deleted.
    None,
    /// Active Directory's `userAccountControl` ACCOUNTDISABLE bit (0x2).
    Ad,
    /// The ppolicy overlay's `pwdAccountLockedTime` set to `000001010000Z`
    /// (locked until an administrator unlocks).
    Ppolicy,
    /// A move to a container of disabled accounts, and back.
    Move {
        /// The container (its DN as configured).
        container: String,
    },
    /// An attribute set to a value.
    Attribute {
        /// The attribute.
        attribute: String,
        /// The value that means disabled.
        disabled: String,
        /// The value that means enabled; absent: enabling removes the attribute.
        enabled: Option<String>,
    },
}

/// What a group's membership attribute holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberValue {
    /// The member's DN (`member`, `uniqueMember`).
    Dn,
    /// The member's key (`memberUid`).
    Key,
}

/// Memberships: groups under one base.
#[derive(Debug, Clone)]
pub(crate) struct Groups {
    pub(crate) base: String,
    pub(crate) base_dn: Dn,
    pub(crate) attribute: String,
    pub(crate) value: MemberValue,
    pub(crate) object_class: String,
    pub(crate) rdn_attribute: String,
    pub(crate) placeholder: Option<String>,
}

/// The initial password of accounts created on Active Directory.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum InitialPassword {
    /// None is set (the account is created disabled if the server requires one).
    None,
    /// A random password nobody knows (the person gets theirs through the
    /// organisation's own reset process).
    Random,
    /// One password for every new account, from a secret reference.
    Secret(Secret),
}

impl fmt::Debug for InitialPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitialPassword::None => f.write_str("None"),
            InitialPassword::Random => f.write_str("Random"),
            InitialPassword::Secret(s) => write!(f, "Secret({s:?})"),
        }
    }
}

/// One piece of a template: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text.
    Text(String),
    /// `{key}`: the account key.
    Key,
    /// `{name}`: an account attribute.
    Attr(String),
}

/// A template: `{key}`, `{attribute}` placeholders between literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) pieces: Vec<Piece>,
}

impl Template {
    fn parse(s: &str, key: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!("settings.{key}: an unclosed '{{' in {s:?}"));
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    if name == "key" {
                        pieces.push(Piece::Key);
                    } else if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        pieces.push(Piece::Attr(name));
                    } else {
                        return Err(format!(
                            "settings.{key}: {{{name}}} is not a placeholder (write {{key}} or {{attribute_name}})"
                        ));
                    }
                }
                '}' => return Err(format!("settings.{key}: a '}}' without '{{' in {s:?}")),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }

    /// The account attributes the template uses.
    pub(crate) fn attributes(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Attr(a) => Some(a.as_str()),
            _ => None,
        })
    }

    /// Whether the template is exactly one placeholder.
    pub(crate) fn single(&self) -> Option<&Piece> {
        match self.pieces.as_slice() {
            [p @ (Piece::Key | Piece::Attr(_))] => Some(p),
            _ => None,
        }
    }

    /// Renders the template; `escape` is applied to each placeholder's value.
    /// `None` when a placeholder has no (or an empty) value.
    pub(crate) fn render(
        &self,
        key: &str,
        value: &dyn Fn(&str) -> Option<String>,
        escape: &dyn Fn(&str) -> String,
    ) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Key => out.push_str(&escape(key)),
                Piece::Attr(a) => match value(a) {
                    Some(v) if !v.is_empty() => out.push_str(&escape(&v)),
                    _ => return Err(a.clone()),
                },
            }
        }
        Ok(out)
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) starttls: bool,
    pub(crate) directory: Directory,
    pub(crate) bind_dn: String,
    pub(crate) password: Secret,
    pub(crate) people_base: String,
    pub(crate) people_base_dn: Dn,
    pub(crate) groups: Option<Groups>,
    pub(crate) object_classes: Vec<String>,
    /// The full filter that selects accounts.
    pub(crate) account_filter: String,
    pub(crate) key_attribute: String,
    pub(crate) rdn_attribute: String,
    pub(crate) rdn_template: Template,
    /// `None`: accounts live directly under `people_base`.
    pub(crate) container: Option<Template>,
    /// Every managed account attribute → its LDAP attribute.
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) disable: DisableMethod,
    /// Where the `archive` deprovisioning step moves a leaver's entry.
    pub(crate) archive_container: Option<String>,
    pub(crate) initial_password: InitialPassword,
    pub(crate) pool_size: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) page_size: i32,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) tls_ca_file: Option<String>,
    pub(crate) tls_insecure_skip_verify: bool,
}

/// Whether `s` is an attribute description this connector accepts: a name
/// (letter first, then letters, digits and `-`) or a numeric OID.
pub(crate) fn is_attribute_name(s: &str) -> bool {
    let name = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid = !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    (name || oid) && s.len() <= 128
}

fn attribute(problems: &mut Vec<String>, key: &str, value: &str) -> String {
    if !is_attribute_name(value) {
        problems.push(format!(
            "settings.{key}: {value:?} is not an LDAP attribute name (letters, digits and '-', starting with a letter)"
        ));
    }
    value.to_owned()
}

fn dn(problems: &mut Vec<String>, key: &str, value: &str) -> Option<Dn> {
    match Dn::parse(value) {
        Ok(d) if !d.rdns.is_empty() => Some(d),
        Ok(_) => {
            problems.push(format!("settings.{key}: must not be empty"));
            None
        }
        Err(e) => {
            problems.push(format!("settings.{key}: {e}"));
            None
        }
    }
}

fn secret(key: &str, v: &toml::Value) -> Result<Secret, String> {
    match v {
        toml::Value::String(_) => Err(format!(
            "settings.{key}: a secret must not be written in the configuration; write {key} = {{ env = \"VARIABLE\" }} or {key} = {{ file = \"path/to/file\" }}"
        )),
        toml::Value::Table(t) => {
            let r: SecretRef = toml::Value::Table(t.clone())
                .try_into()
                .map_err(|e: toml::de::Error| format!("settings.{key}: {}", e.message().trim()))?;
            match (r.env, r.file) {
                (Some(env), None) if !env.trim().is_empty() => Ok(Secret::Env(env)),
                (None, Some(file)) if !file.trim().is_empty() => Ok(Secret::File(file)),
                (Some(_), Some(_)) => {
                    Err(format!("settings.{key}: give either env or file, not both"))
                }
                _ => Err(format!(
                    "settings.{key}: write {key} = {{ env = \"VARIABLE\" }} or {key} = {{ file = \"path/to/file\" }} with a non-empty name"
                )),
            }
        }
        _ => Err(format!(
            "settings.{key}: must be a reference {{ env = \"VARIABLE\" }} or {{ file = \"path\" }}"
        )),
    }
}

fn bounded(
    problems: &mut Vec<String>,
    key: &str,
    v: Option<i64>,
    range: (i64, i64),
    default: i64,
) -> i64 {
    match v {
        None => default,
        Some(n) if (range.0..=range.1).contains(&n) => n,
        Some(n) => {
            problems.push(format!(
                "settings.{key}: {n} is out of range ({} to {})",
                range.0, range.1
            ));
            default
        }
    }
}

/// Checks an LDAP URL: `ldap://host[:port]` or `ldaps://host[:port]`, with
/// nothing else. Returns whether it is `ldaps`.
pub(crate) fn check_url(url: &str) -> Result<bool, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("ldaps://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("ldap://") {
        (false, r)
    } else {
        return Err(format!(
            "settings.url: {url:?} is not an LDAP URL (expected ldap://host[:port] or ldaps://host[:port])"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err("settings.url: the URL must not hold credentials; use settings.bind_dn and settings.password".to_owned());
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "settings.url: {url:?} must be just ldap://host[:port] or ldaps://host[:port] (bases go in people_base and groups_base)"
        ));
    }
    if let Some((host, port)) = rest.rsplit_once(':')
        && !host.ends_with(']')
        && (host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(format!("settings.url: {url:?} has an invalid port"));
    }
    Ok(tls)
}

impl Settings {
    /// The LDAP attribute of an account attribute.
    pub(crate) fn ldap_attribute<'a>(&'a self, attr: &'a str) -> Option<&'a str> {
        self.attributes.get(attr).map(String::as_str)
    }

    /// Parses and checks a system's settings; every problem at once.
    pub(crate) fn parse(system: &SystemConfig) -> Result<Settings, Vec<String>> {
        let Some(table) = &system.settings else {
            return Err(vec![
                "settings: missing; the ldap connector needs [system.settings] with url, bind_dn, password and people_base".to_owned(),
            ]);
        };
        let raw: RawSettings = toml::Value::Table(table.get_ref().clone())
            .try_into()
            .map_err(|e: toml::de::Error| vec![format!("settings: {}", e.message().trim())])?;
        let mut problems = Vec::new();

        let tls = match check_url(&raw.url) {
            Ok(t) => t,
            Err(p) => {
                problems.push(p);
                false
            }
        };
        let starttls = raw.starttls.unwrap_or(false);
        if starttls && tls {
            problems.push(
                "settings.starttls: ldaps:// is already encrypted; StartTLS is for ldap:// URLs"
                    .to_owned(),
            );
        }
        let tls_insecure_skip_verify = raw.tls_insecure_skip_verify.unwrap_or(false);
        if (raw.tls_ca_file.is_some() || tls_insecure_skip_verify) && !tls && !starttls {
            problems.push("settings.tls_ca_file / settings.tls_insecure_skip_verify: the connection is not encrypted; use an ldaps:// URL or starttls = true".to_owned());
        }
        if raw.tls_ca_file.is_some() && tls_insecure_skip_verify {
            problems.push("settings.tls_insecure_skip_verify: contradicts settings.tls_ca_file (a CA to verify against)".to_owned());
        }
        if let Some(f) = &raw.tls_ca_file
            && f.trim().is_empty()
        {
            problems.push("settings.tls_ca_file: must not be empty".to_owned());
        }

        let directory = match raw.directory.as_deref() {
            None | Some("openldap") => Directory::OpenLdap,
            Some("active_directory") => Directory::ActiveDirectory,
            Some(other) => {
                problems.push(format!(
                    "settings.directory: {other:?} is not a directory kind (openldap or active_directory)"
                ));
                Directory::OpenLdap
            }
        };
        let ad = directory == Directory::ActiveDirectory;

        if dn(&mut problems, "bind_dn", &raw.bind_dn).is_none() && ad && raw.bind_dn.contains('@') {
            // Active Directory also accepts user@domain for a bind.
            problems.pop();
        }
        let password = match secret("password", &raw.password) {
            Ok(s) => Some(s),
            Err(p) => {
                problems.push(p);
                None
            }
        };
        let people_base_dn = dn(&mut problems, "people_base", &raw.people_base);

        let key_attribute = attribute(
            &mut problems,
            "key_attribute",
            raw.key_attribute
                .as_deref()
                .unwrap_or(if ad { "sAMAccountName" } else { "uid" }),
        );
        let object_classes: Vec<String> = match &raw.object_classes {
            Some(v) if v.is_empty() => {
                problems.push("settings.object_classes: must not be empty".to_owned());
                Vec::new()
            }
            Some(v) => v
                .iter()
                .map(|c| attribute(&mut problems, "object_classes", c))
                .collect(),
            None if ad => ["top", "person", "organizationalPerson", "user"]
                .map(str::to_owned)
                .to_vec(),
            None => ["top", "person", "organizationalPerson", "inetOrgPerson"]
                .map(str::to_owned)
                .to_vec(),
        };

        // Account attributes → LDAP attributes: every attribute the account
        // mapping computes, written to the LDAP attribute of the same name
        // unless `attributes` says otherwise.
        let mut attributes = BTreeMap::new();
        for (attr, target) in &raw.attributes {
            if !system.account.attributes.contains_key(attr) {
                problems.push(format!(
                    "settings.attributes.{attr}: no account attribute {attr:?} in [system.account.attributes]"
                ));
            }
            attributes.insert(
                attr.clone(),
                attribute(&mut problems, &format!("attributes.{attr}"), target),
            );
        }
        for attr in system.account.attributes.keys() {
            if !attributes.contains_key(attr) {
                if is_attribute_name(attr) {
                    attributes.insert(attr.clone(), attr.clone());
                } else {
                    problems.push(format!(
                        "settings.attributes: account attribute {attr:?} is not an LDAP attribute name; add {attr:?} = \"ldapAttribute\""
                    ));
                }
            }
        }

        // The RDN template.
        let rdn_text = raw.rdn.clone().unwrap_or_else(|| {
            if ad {
                "cn={key}".to_owned()
            } else {
                "uid={key}".to_owned()
            }
        });
        let (rdn_attribute, rdn_template) = match rdn_text.split_once('=') {
            Some((a, t)) if is_attribute_name(a.trim()) => match Template::parse(t, "rdn") {
                Ok(t) if t.pieces.is_empty() => {
                    problems.push("settings.rdn: the value part is empty".to_owned());
                    (a.trim().to_owned(), t)
                }
                Ok(t) => (a.trim().to_owned(), t),
                Err(p) => {
                    problems.push(p);
                    (a.trim().to_owned(), Template { pieces: vec![] })
                }
            },
            _ => {
                problems.push(format!(
                    "settings.rdn: {rdn_text:?} must be attribute=template, such as \"uid={{key}}\" or \"cn={{display_name}}\""
                ));
                (String::new(), Template { pieces: vec![] })
            }
        };
        if rdn_text.contains('+') {
            problems.push("settings.rdn: multi-valued RDNs ('+') are not supported".to_owned());
        }
        for a in rdn_template.attributes() {
            if !attributes.contains_key(a) {
                problems.push(format!(
                    "settings.rdn: {{{a}}} is not an account attribute (known: key and those in [system.account.attributes])"
                ));
            }
        }
        // The RDN attribute is the key attribute, or an account attribute's
        // LDAP attribute: its value must then be exactly that placeholder.
        if rdn_attribute.eq_ignore_ascii_case(&key_attribute)
            && rdn_template.single() != Some(&Piece::Key)
        {
            problems.push(format!(
                "settings.rdn: the RDN attribute {rdn_attribute} is the key attribute, so its value must be exactly {{key}}"
            ));
        }
        for (attr, target) in &attributes {
            if target.eq_ignore_ascii_case(&rdn_attribute)
                && rdn_template.single() != Some(&Piece::Attr(attr.clone()))
            {
                problems.push(format!(
                    "settings.rdn: the RDN attribute {rdn_attribute} is written by account attribute {attr:?}, so its value must be exactly {{{attr}}}"
                ));
            }
        }

        let container = match &raw.container {
            None => None,
            Some(c) => match Template::parse(c, "container") {
                Ok(t) => {
                    for a in t.attributes() {
                        if !attributes.contains_key(a) {
                            problems.push(format!(
                                "settings.container: {{{a}}} is not an account attribute (known: key and those in [system.account.attributes])"
                            ));
                        }
                    }
                    // Rendered with a harmless value, it must be a DN within people_base.
                    let sample = t.render("x", &|_| Some("x".to_owned()), &|v| v.to_owned());
                    match (sample.map(|s| Dn::parse(&s)), &people_base_dn) {
                        (Ok(Ok(d)), Some(base)) if d.is_within(base) => {}
                        (Ok(Ok(_)), Some(_)) => problems.push(format!(
                            "settings.container: {c:?} is not within people_base (accounts are read from people_base)"
                        )),
                        (Ok(Err(e)), _) => problems.push(format!("settings.container: {e}")),
                        _ => {}
                    }
                    Some(t)
                }
                Err(p) => {
                    problems.push(p);
                    None
                }
            },
        };

        // Memberships.
        let groups = match &raw.groups_base {
            None => {
                for (key, set) in [
                    ("membership_attribute", raw.membership_attribute.is_some()),
                    ("group_object_class", raw.group_object_class.is_some()),
                    ("group_rdn_attribute", raw.group_rdn_attribute.is_some()),
                    (
                        "group_placeholder_member",
                        raw.group_placeholder_member.is_some(),
                    ),
                ] {
                    if set {
                        problems.push(format!("settings.{key}: needs settings.groups_base"));
                    }
                }
                None
            }
            Some(base) => {
                let base_dn = dn(&mut problems, "groups_base", base);
                let attr = raw.membership_attribute.as_deref().unwrap_or("member");
                let value = match attr.to_ascii_lowercase().as_str() {
                    "member" | "uniquemember" => MemberValue::Dn,
                    "memberuid" => MemberValue::Key,
                    _ => {
                        problems.push(format!(
                            "settings.membership_attribute: {attr:?} is not supported (member, uniqueMember or memberUid)"
                        ));
                        MemberValue::Dn
                    }
                };
                if ad && value != MemberValue::Dn {
                    problems.push("settings.membership_attribute: Active Directory groups hold their members in member".to_owned());
                }
                let default_class = match (ad, attr.to_ascii_lowercase().as_str()) {
                    (true, _) => "group",
                    (false, "uniquemember") => "groupOfUniqueNames",
                    (false, "memberuid") => "posixGroup",
                    _ => "groupOfNames",
                };
                let object_class = attribute(
                    &mut problems,
                    "group_object_class",
                    raw.group_object_class.as_deref().unwrap_or(default_class),
                );
                let rdn_attribute = attribute(
                    &mut problems,
                    "group_rdn_attribute",
                    raw.group_rdn_attribute.as_deref().unwrap_or("cn"),
                );
                if let Some(p) = &raw.group_placeholder_member {
                    if value == MemberValue::Key {
                        problems.push("settings.group_placeholder_member: memberUid groups may be empty; no placeholder is needed".to_owned());
                    }
                    dn(&mut problems, "group_placeholder_member", p);
                }
                base_dn.map(|base_dn| Groups {
                    base: base.clone(),
                    base_dn,
                    attribute: attr.to_owned(),
                    value,
                    object_class,
                    rdn_attribute,
                    placeholder: raw.group_placeholder_member.clone(),
                })
            }
        };

        // Disabling.
        let method = raw
            .disable_method
            .as_deref()
            .unwrap_or(if ad { "ad" } else { "none" });
        let needs = |problems: &mut Vec<String>, key: &str, v: &Option<String>, m: &str| match v {
            Some(v) => Some(v.clone()),
            None => {
                problems.push(format!("settings.{key}: needed by disable_method = {m:?}"));
                None
            }
        };
        let disable = match method {
            "none" => DisableMethod::None,
            "ad" => {
                if !ad {
                    problems.push("settings.disable_method: \"ad\" (userAccountControl) needs directory = \"active_directory\"".to_owned());
                }
                DisableMethod::Ad
            }
            "ppolicy" => DisableMethod::Ppolicy,
            "move" => match needs(
                &mut problems,
                "disabled_container",
                &raw.disabled_container,
                method,
            ) {
                Some(c) => {
                    if let Some(d) = dn(&mut problems, "disabled_container", &c)
                        && let Some(base) = &people_base_dn
                        && base.is_within(&d)
                    {
                        problems.push(
                            "settings.disabled_container: must not contain people_base".to_owned(),
                        );
                    }
                    DisableMethod::Move { container: c }
                }
                None => DisableMethod::None,
            },
            "attribute" => {
                let a = needs(
                    &mut problems,
                    "disabled_attribute",
                    &raw.disabled_attribute,
                    method,
                );
                let v = needs(&mut problems, "disabled_value", &raw.disabled_value, method);
                match (a, v) {
                    (Some(a), Some(v)) => {
                        let a = attribute(&mut problems, "disabled_attribute", &a);
                        if v.is_empty() || raw.enabled_value.as_deref() == Some("") {
                            problems.push("settings.disabled_value / settings.enabled_value: must not be empty".to_owned());
                        }
                        if raw.enabled_value.as_deref() == Some(v.as_str()) {
                            problems.push(
                                "settings.enabled_value: is the same as disabled_value".to_owned(),
                            );
                        }
                        DisableMethod::Attribute {
                            attribute: a,
                            disabled: v,
                            enabled: raw.enabled_value.clone(),
                        }
                    }
                    _ => DisableMethod::None,
                }
            }
            other => {
                problems.push(format!(
                    "settings.disable_method: {other:?} is not a method (none, ad, ppolicy, move or attribute)"
                ));
                DisableMethod::None
            }
        };
        let archive_container = match raw.archive_container.as_deref().map(str::trim) {
            None => None,
            Some(c) => match dn(&mut problems, "archive_container", c) {
                Some(d) => {
                    if people_base_dn
                        .as_ref()
                        .is_some_and(|base| base.is_within(&d))
                    {
                        problems.push(
                            "settings.archive_container: must not contain people_base".to_owned(),
                        );
                    }
                    if let DisableMethod::Move { container } = &disable
                        && Dn::parse(container).is_ok_and(|dc| {
                            dc.normalized() == d.normalized()
                                || dc.is_within(&d)
                                || d.is_within(&dc)
                        })
                    {
                        problems.push("settings.archive_container: must be apart from disabled_container (neither within the other)".to_owned());
                    }
                    Some(c.to_owned())
                }
                None => None,
            },
        };
        for (key, set, m) in [
            (
                "disabled_container",
                raw.disabled_container.is_some(),
                "move",
            ),
            (
                "disabled_attribute",
                raw.disabled_attribute.is_some(),
                "attribute",
            ),
            ("disabled_value", raw.disabled_value.is_some(), "attribute"),
            ("enabled_value", raw.enabled_value.is_some(), "attribute"),
        ] {
            if set && method != m {
                problems.push(format!(
                    "settings.{key}: only used with disable_method = {m:?} (this system has {method:?})"
                ));
            }
        }

        // No account attribute may write what the connector writes itself.
        let mut reserved: Vec<(String, &str)> = vec![
            (key_attribute.clone(), "the key attribute"),
            ("objectClass".to_owned(), "the object classes"),
        ];
        if ad {
            for a in [
                "userAccountControl",
                "unicodePwd",
                "sAMAccountName",
                "memberOf",
            ] {
                reserved.push((a.to_owned(), "managed by the connector on Active Directory"));
            }
        }
        match &disable {
            DisableMethod::Ppolicy => {
                reserved.push(("pwdAccountLockedTime".to_owned(), "the disable attribute"))
            }
            DisableMethod::Attribute { attribute, .. } => {
                reserved.push((attribute.clone(), "the disable attribute"))
            }
            _ => {}
        }
        if let Some(g) = &groups {
            reserved.push((g.attribute.clone(), "the membership attribute"));
        }
        let mut used: BTreeMap<String, String> = BTreeMap::new();
        for (attr, target) in &attributes {
            let lower = target.to_ascii_lowercase();
            if let Some((_, why)) = reserved
                .iter()
                .find(|(r, _)| r.eq_ignore_ascii_case(target))
            {
                problems.push(format!(
                    "settings.attributes: account attribute {attr:?} would write {target}, which is {why}"
                ));
            }
            if let Some(other) = used.get(&lower) {
                problems.push(format!(
                    "settings.attributes: account attributes {other:?} and {attr:?} both write {target}"
                ));
            } else {
                used.insert(lower, attr.clone());
            }
        }

        let account_filter = {
            let mut f = String::from("(&");
            for c in &object_classes {
                f.push_str(&format!("(objectClass={c})"));
            }
            f.push_str(&format!("({key_attribute}=*)"));
            let extra = raw
                .account_filter
                .clone()
                .or_else(|| ad.then(|| "(!(objectClass=computer))".to_owned()));
            if let Some(extra) = extra {
                if ldap3::parse_filter(&extra).is_err() || !extra.starts_with('(') {
                    problems.push(format!(
                        "settings.account_filter: {extra:?} is not an LDAP filter such as \"(employeeType=staff)\""
                    ));
                } else {
                    f.push_str(&extra);
                }
            }
            f.push(')');
            f
        };

        let initial_password = match &raw.initial_password {
            None if ad => InitialPassword::Random,
            None => InitialPassword::None,
            Some(toml::Value::String(s)) if s == "none" => InitialPassword::None,
            Some(toml::Value::String(s)) if s == "random" => InitialPassword::Random,
            Some(v @ toml::Value::Table(_)) => match secret("initial_password", v) {
                Ok(s) => InitialPassword::Secret(s),
                Err(p) => {
                    problems.push(p);
                    InitialPassword::None
                }
            },
            Some(_) => {
                problems.push("settings.initial_password: \"none\", \"random\", or a reference { env = \"VARIABLE\" } / { file = \"path\" }".to_owned());
                InitialPassword::None
            }
        };
        if initial_password != InitialPassword::None {
            if !ad {
                problems.push("settings.initial_password: only supported with directory = \"active_directory\" (unicodePwd)".to_owned());
            } else if !tls && !starttls {
                problems.push("settings.initial_password: Active Directory sets passwords only over an encrypted connection; use an ldaps:// URL or starttls = true, or set initial_password = \"none\"".to_owned());
            }
        }

        let pool_size = bounded(
            &mut problems,
            "pool_size",
            raw.pool_size,
            (1, 64),
            DEFAULT_POOL_SIZE as i64,
        );
        let max_in_flight = bounded(
            &mut problems,
            "max_in_flight",
            raw.max_in_flight,
            (1, 1024),
            DEFAULT_MAX_IN_FLIGHT as i64,
        );
        let page_size = bounded(
            &mut problems,
            "page_size",
            raw.page_size,
            (1, 100_000),
            i64::from(DEFAULT_PAGE_SIZE),
        );
        let connect_timeout = bounded(
            &mut problems,
            "connect_timeout_seconds",
            raw.connect_timeout_seconds,
            (1, 3600),
            DEFAULT_CONNECT_TIMEOUT_SECONDS as i64,
        );
        let operation_timeout = bounded(
            &mut problems,
            "operation_timeout_seconds",
            raw.operation_timeout_seconds,
            (1, 3600),
            DEFAULT_OPERATION_TIMEOUT_SECONDS as i64,
        );

        match (password, people_base_dn) {
            (Some(password), Some(people_base_dn)) if problems.is_empty() => Ok(Settings {
                url: raw.url.trim_end_matches('/').to_owned(),

                starttls,
                directory,
                bind_dn: raw.bind_dn,
                password,
                people_base: raw.people_base,
                people_base_dn,
                groups,
                object_classes,
                account_filter,
                key_attribute,
                rdn_attribute,
                rdn_template,
                container,
                attributes,
                disable,
                archive_container,
                initial_password,
                pool_size: usize::try_from(pool_size).unwrap_or(DEFAULT_POOL_SIZE),
                max_in_flight: usize::try_from(max_in_flight).unwrap_or(DEFAULT_MAX_IN_FLIGHT),
                page_size: i32::try_from(page_size).unwrap_or(DEFAULT_PAGE_SIZE),
                connect_timeout: Duration::from_secs(
                    u64::try_from(connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECONDS),
                ),
                operation_timeout: Duration::from_secs(
                    u64::try_from(operation_timeout).unwrap_or(DEFAULT_OPERATION_TIMEOUT_SECONDS),
                ),
                tls_ca_file: raw.tls_ca_file,
                tls_insecure_skip_verify,
            }),
            _ => Err(problems),
        }
    }

    /// The LDAP attributes the account templates (RDN, container) read.
    pub(crate) fn template_attributes(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let templates = std::iter::once(&self.rdn_template).chain(self.container.as_ref());
        for t in templates {
            for a in t.attributes() {
                if let Some(l) = self.ldap_attribute(a) {
                    out.insert(l.to_owned());
                }
            }
        }
        out
    }

    /// Whether the entry at `entry` is in the archive container (or below it).
    pub(crate) fn in_archive_container(&self, entry: &Dn) -> bool {
        self.archive_container
            .as_deref()
            .is_some_and(|c| Dn::parse(c).is_ok_and(|c| entry.parent().is_within(&c)))
    }

    /// Whether `dn` is the disabled container or within it.
    pub(crate) fn in_disabled_container(&self, entry: &Dn) -> bool {
        match &self.disable {
            DisableMethod::Move { container } => {
                Dn::parse(container).is_ok_and(|c| entry.parent().is_within(&c))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(check_url("ldap://127.0.0.1:389"), Ok(false));
        assert_eq!(check_url("ldaps://dc.example.com"), Ok(true));
        assert_eq!(check_url("ldaps://dc.example.com/"), Ok(true));
        assert_eq!(check_url("ldap://[::1]:389"), Ok(false));
        for bad in [
            "http://x",
            "ldap://",
            "ldap://admin:pw@host",
            "ldap://host/dc=example",
            "ldap://host:x",
            "ldap://host:99999",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates() {
        let t = Template::parse("{given} {family} ({key})", "rdn").unwrap();
        assert_eq!(t.attributes().collect::<Vec<_>>(), vec!["given", "family"]);
        let v = |a: &str| Some(a.to_uppercase());
        assert_eq!(
            t.render("k", &v, &|s| s.to_owned()).unwrap(),
            "GIVEN FAMILY (k)"
        );
        assert_eq!(
            t.render("k", &|_| None, &|s| s.to_owned()),
            Err("given".to_owned())
        );
        assert_eq!(
            Template::parse("{key}", "rdn").unwrap().single(),
            Some(&Piece::Key)
        );
        assert!(Template::parse("{key", "rdn").is_err());
        assert!(Template::parse("{a b}", "rdn").is_err());
        assert!(Template::parse("x}", "rdn").is_err());
    }

    #[test]
    fn attribute_names() {
        for ok in ["uid", "sAMAccountName", "x-custom", "2.5.4.3"] {
            assert!(is_attribute_name(ok), "{ok}");
        }
        for bad in ["", "1uid", "u id", "uid;binary", "a=b", "(uid)", "2..5"] {
            assert!(!is_attribute_name(bad), "{bad}");
        }
    }
}
