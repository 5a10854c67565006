//! The configuration of notifications: the SMTP server, e-mail recipients per
//! event, signed webhooks, and security event tokens (RFC 8417) with their
//! receivers.
//!
//! ```toml
//! [smtp]                              # the mail server
//! [notifications]                     # templates, named addresses, retries
//! [[notifications.email]]             # events -> recipients
//! [[webhook]]                         # signed JSON POSTs
//! [security_events]                   # SET issuer and signing key
//! [[security_events.receiver]]        # SET push receivers (RFC 8935)
//! ```
//!
//! Like the rest of [`crate::config`] this is parsing and validation only: no
//! secret is read, no template loaded and no address resolved here (the
//! `tenure-notify` crate does that when it starts). [`check`] reports every
//! problem with its file and line for `tenure check`.

use crate::config::{Config, ConfigError, Located, Location, SecretRef};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use toml::Spanned;

/// Something that happened to an identity that people or systems are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A new identity became active.
    Joiner,
    /// An identity's attributes changed its access.
    Mover,
    /// An identity left (deprovisioning started).
    Leaver,
    /// A former identity came back.
    Rehire,
    /// A grant or contract ends soon.
    ExpiryUpcoming,
    /// A grant or contract ended and its access was removed.
    Expired,
    /// An operation failed for good and waits for an operator.
    Failure,
    /// A system was quarantined after repeated failures.
    Quarantine,
    /// A quarantined system works again.
    QuarantineLifted,
    /// An identity was suspended everywhere (a security incident).
    Suspended,
    /// A suspension was lifted.
    Resumed,
}

impl NoticeKind {
    /// Every kind, in a stable order.
    pub const ALL: [NoticeKind; 11] = [
        NoticeKind::Joiner,
        NoticeKind::Mover,
        NoticeKind::Leaver,
        NoticeKind::Rehire,
        NoticeKind::ExpiryUpcoming,
        NoticeKind::Expired,
        NoticeKind::Failure,
        NoticeKind::Quarantine,
        NoticeKind::QuarantineLifted,
        NoticeKind::Suspended,
        NoticeKind::Resumed,
    ];

    /// The kind's name as written in the configuration (`expiry_upcoming`).
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Joiner => "joiner",
            NoticeKind::Mover => "mover",
            NoticeKind::Leaver => "leaver",
            NoticeKind::Rehire => "rehire",
            NoticeKind::ExpiryUpcoming => "expiry_upcoming",
            NoticeKind::Expired => "expired",
            NoticeKind::Failure => "failure",
            NoticeKind::Quarantine => "quarantine",
            NoticeKind::QuarantineLifted => "quarantine_lifted",
            NoticeKind::Suspended => "suspended",
            NoticeKind::Resumed => "resumed",
        }
    }

    /// Whether this notice means the identity's sessions must end: a leaver
    /// or a suspension (these send security event tokens).
    pub fn revokes_access(self) -> bool {
        matches!(self, NoticeKind::Leaver | NoticeKind::Suspended)
    }
}

impl fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (only for a relay on the same host or network).
    None,
    /// Plain connection upgraded with STARTTLS (required, not opportunistic).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl SmtpTls {
    /// The usual port for this mode: 25, 587 or 465.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// The SMTP server e-mail notifications are sent through (`[smtp]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name or address.
    pub host: String,
    /// Port; defaults from `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    /// Connection protection (default `starttls`).
    #[serde(default = "default_smtp_tls")]
    pub tls: SmtpTls,
    /// The sender: `tenure@example.com` or `Tenure <tenure@example.com>`.
    pub from: String,
    /// The user to authenticate as (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// The password, as a reference.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// How long one conversation with the server may take (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_smtp_tls() -> SmtpTls {
    SmtpTls::Starttls
}
fn default_timeout() -> u64 {
    30
}

impl SmtpConfig {
    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
}

/// Who receives an e-mail: `person`, `manager`, or a name from
/// `[notifications.addresses]` (`it`, `security`).
pub type Recipient = String;

/// Which events are e-mailed to whom (`[[notifications.email]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRoute {
    /// The events.
    pub events: Vec<NoticeKind>,
    /// The recipients.
    pub to: Vec<Recipient>,
}

/// Notification settings shared by every channel (`[notifications]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// A directory of templates (relative to the configuration directory)
    /// that override the shipped ones.
    #[serde(default)]
    pub templates: Option<String>,
    /// The identity attribute holding a person's e-mail address (default `email`).
    #[serde(default = "default_email_attribute")]
    pub email_attribute: String,
    /// Named addresses usable as recipients: `it = "it@example.com"`.
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    /// Attempts before a delivery is given up as failed (default 10).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each (default 30).
    #[serde(default = "default_retry_seconds")]
    pub retry_seconds: u64,
    /// E-mail routes.
    #[serde(default)]
    pub email: Vec<Spanned<EmailRoute>>,
}

fn default_email_attribute() -> String {
    "email".to_owned()
}
fn default_max_attempts() -> u32 {
    10
}
fn default_retry_seconds() -> u64 {
    30
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            templates: None,
            email_attribute: default_email_attribute(),
            addresses: BTreeMap::new(),
            max_attempts: default_max_attempts(),
            retry_seconds: default_retry_seconds(),
            email: Vec::new(),
        }
    }
}

/// A webhook: events POSTed as signed JSON (`[[webhook]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Identifier (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// Where to POST.
    pub url: Spanned<String>,
    /// The HMAC-SHA256 key, as a reference.
    pub secret: SecretRef,
    /// The events sent (default: every event).
    #[serde(default)]
    pub events: Vec<NoticeKind>,
    /// How long one request may take (default 10).
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
}

fn default_webhook_timeout() -> u64 {
    10
}

/// The algorithm security event tokens are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetAlgorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

/// A security event type a receiver can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetEvent {
    /// CAEP `session-revoked`.
    SessionRevoked,
    /// RISC `account-disabled`.
    AccountDisabled,
}

impl SetEvent {
    /// The event type URI.
    pub fn uri(self) -> &'static str {
        match self {
            SetEvent::SessionRevoked => {
                "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
            }
            SetEvent::AccountDisabled => {
                "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
            }
        }
    }

    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SetEvent::SessionRevoked => "session-revoked",
            SetEvent::AccountDisabled => "account-disabled",
        }
    }
}

/// A subject identifier format (RFC 9493).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectFormat {
    /// `{"format": "email", "email": …}`.
    Email,
    /// `{"format": "opaque", "id": …}`.
    Opaque,
    /// `{"format": "iss_sub", "iss": …, "sub": …}`.
    IssSub,
}

/// How a receiver identifies the person an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectConfig {
    /// The format.
    pub format: SubjectFormat,
    /// The identity attribute holding the value (`id` for the identity's
    /// id); default `email` for `email`, `id` otherwise.
    #[serde(default)]
    pub attribute: Option<String>,
    /// With `iss_sub`: the issuer the subject belongs to (for example the
    /// identity provider's issuer URL).
    #[serde(default)]
    pub issuer: Option<String>,
}

impl SubjectConfig {
    /// The attribute the value comes from.
    pub fn attribute(&self) -> &str {
        match (&self.attribute, self.format) {
            (Some(a), _) => a,
            (None, SubjectFormat::Email) => "email",
            (None, _) => "id",
        }
    }
}

/// A SET push receiver (`[[security_events.receiver]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetReceiverConfig {
    /// Identifier.
    pub id: String,
    /// The push endpoint (RFC 8935).
    pub url: Spanned<String>,
    /// A bearer token the endpoint requires, as a reference.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// The `aud` claim: the receiver's identifier.
    pub audience: String,
    /// The events sent (default both).
    #[serde(default)]
    pub events: Vec<SetEvent>,
    /// How the subject is identified.
    pub subject: SubjectConfig,
    /// How long one request may take (default 10).
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
}

/// Security event tokens: issuer, signing key and receivers (`[security_events]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityEventsConfig {
    /// The `iss` claim: Tenure's own URL.
    pub issuer: String,
    /// The private key (PEM, PKCS#8 for ES256; PKCS#1 or PKCS#8 for RS256), as a reference.
    pub signing_key: SecretRef,
    /// The key id (`kid`) published in the JWKS.
    pub key_id: String,
    /// The algorithm (default `ES256`).
    #[serde(default = "default_algorithm")]
    pub algorithm: SetAlgorithm,
    /// The receivers.
    #[serde(default, rename = "receiver")]
    pub receivers: Vec<SetReceiverConfig>,
}

fn default_algorithm() -> SetAlgorithm {
    SetAlgorithm::ES256
}

/// Checks the notification sections of a parsed configuration; every problem
/// has its file and line.
pub fn check(config: &Config) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let at = |l: &Located<_>| config.location(l.file, l.span.start);
    let mut push =
        |location: Location, message: String| errs.push(ConfigError { location, message });

    if let Some(smtp) = &config.smtp {
        let l = config.location(smtp.file, smtp.span.start);
        let s = &smtp.item;
        if s.host.trim().is_empty() {
            push(l.clone(), "[smtp] host must not be empty".into());
        }
        if !looks_like_address(&s.from) {
            push(
                l.clone(),
                format!(
                    "[smtp] from = {:?} is not an e-mail address (write tenure@example.com or \
                     \"Tenure <tenure@example.com>\")",
                    s.from
                ),
            );
        }
        match (&s.user, &s.password) {
            (Some(_), None) => push(l.clone(), "[smtp] user needs a password".into()),
            (None, Some(_)) => push(l.clone(), "[smtp] password needs a user".into()),
            _ => {}
        }
        if let Some(p) = &s.password
            && let Some(m) = secret_problem(p)
        {
            push(l.clone(), format!("[smtp] password: {m}"));
        }
        if s.port == Some(0) {
            push(l.clone(), "[smtp] port must not be 0".into());
        }
        if !(1..=600).contains(&s.timeout_seconds) {
            push(l, "[smtp] timeout_seconds must be 1 to 600".into());
        }
    }

    let notifications = config.notifications.as_ref();
    if let Some(n) = notifications {
        let notifications_file = n.file;
        let l = config.location(n.file, n.span.start);
        let n = &n.item;
        for (name, addr) in &n.addresses {
            if matches!(name.as_str(), "person" | "manager") {
                push(
                    l.clone(),
                    format!(
                        "[notifications.addresses] {name:?} is reserved (it means the identity's \
                         own or their manager's address)"
                    ),
                );
            }
            if !looks_like_address(addr) {
                push(
                    l.clone(),
                    format!("[notifications.addresses] {name} = {addr:?} is not an e-mail address"),
                );
            }
        }
        if n.email_attribute.trim().is_empty() {
            push(
                l.clone(),
                "[notifications] email_attribute must not be empty".into(),
            );
        }
        if n.max_attempts == 0 {
            push(
                l.clone(),
                "[notifications] max_attempts must be at least 1".into(),
            );
        }
        if n.retry_seconds == 0 {
            push(
                l.clone(),
                "[notifications] retry_seconds must be at least 1".into(),
            );
        }
        if let Some(t) = &n.templates
            && t.trim().is_empty()
        {
            push(
                l.clone(),
                "[notifications] templates must name a directory".into(),
            );
        }
        for (i, spanned) in n.email.iter().enumerate() {
            let what = format!("[[notifications.email]] #{}", i + 1);
            let l = config.location(notifications_file, spanned.span().start);
            let route = spanned.get_ref();
            if route.events.is_empty() {
                push(l.clone(), format!("{what}: events must not be empty"));
            }
            if route.to.is_empty() {
                push(l.clone(), format!("{what}: to must not be empty"));
            }
            for r in &route.to {
                if !matches!(r.as_str(), "person" | "manager") && !n.addresses.contains_key(r) {
                    push(
                        l.clone(),
                        format!(
                            "{what}: recipient {r:?} is neither person, manager nor a name in \
                             [notifications.addresses]"
                        ),
                    );
                }
            }
        }
        if !n.email.is_empty() && config.smtp.is_none() {
            push(
                l,
                "[[notifications.email]] needs an [smtp] server to send through".into(),
            );
        }
    }

    let mut seen: BTreeMap<&str, Location> = BTreeMap::new();
    for w in &config.webhooks {
        let l = at(w);
        let id = w.item.id.as_str();
        if !is_id(id) {
            push(
                l.clone(),
                format!("webhook id {id:?} must be letters, digits, -, _ or ."),
            );
        }
        if let Some(first) = seen.get(id) {
            push(
                l.clone(),
                format!("webhook {id:?} is already defined at {first}"),
            );
        } else {
            seen.insert(id, l.clone());
        }
        if let Some(m) = url_problem(w.item.url.get_ref()) {
            push(
                config.location(w.file, w.item.url.span().start),
                format!("webhook {id}: url: {m}"),
            );
        }
        if let Some(m) = secret_problem(&w.item.secret) {
            push(l.clone(), format!("webhook {id}: secret: {m}"));
        }
        if !(1..=600).contains(&w.item.timeout_seconds) {
            push(l, format!("webhook {id}: timeout_seconds must be 1 to 600"));
        }
    }

    if let Some(se) = &config.security_events {
        let l = config.location(se.file, se.span.start);
        let s = &se.item;
        if s.issuer.trim().is_empty() {
            push(
                l.clone(),
                "[security_events] issuer must not be empty".into(),
            );
        }
        if s.key_id.trim().is_empty() {
            push(
                l.clone(),
                "[security_events] key_id must not be empty".into(),
            );
        }
        if let Some(m) = secret_problem(&s.signing_key) {
            push(l.clone(), format!("[security_events] signing_key: {m}"));
        }
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for r in &s.receivers {
            let id = r.id.as_str();
            let what = format!("[[security_events.receiver]] {id}");
            if !is_id(id) {
                push(
                    l.clone(),
                    format!("{what}: id must be letters, digits, -, _ or ."),
                );
            }
            if !seen.insert(id) {
                push(l.clone(), format!("{what}: the id is used twice"));
            }
            if let Some(m) = url_problem(r.url.get_ref()) {
                push(
                    config.location(se.file, r.url.span().start),
                    format!("{what}: url: {m}"),
                );
            }
            if let Some(t) = &r.token
                && let Some(m) = secret_problem(t)
            {
                push(l.clone(), format!("{what}: token: {m}"));
            }
            if r.audience.trim().is_empty() {
                push(l.clone(), format!("{what}: audience must not be empty"));
            }
            if r.subject.attribute().trim().is_empty() {
                push(
                    l.clone(),
                    format!("{what}: subject.attribute must not be empty"),
                );
            }
            match (r.subject.format, &r.subject.issuer) {
                (SubjectFormat::IssSub, None) => push(
                    l.clone(),
                    format!("{what}: subject format iss_sub needs subject.issuer"),
                ),
                (SubjectFormat::Email | SubjectFormat::Opaque, Some(_)) => push(
                    l.clone(),
                    format!("{what}: subject.issuer is only for format iss_sub"),
                ),
                _ => {}
            }
            if !(1..=600).contains(&r.timeout_seconds) {
                push(
                    l.clone(),
                    format!("{what}: timeout_seconds must be 1 to 600"),
                );
            }
        }
    }
    errs
}

/// What is wrong with a secret reference, if anything.
pub fn secret_problem(r: &SecretRef) -> Option<String> {
    match (&r.env, &r.file) {
        (Some(e), None) if !e.trim().is_empty() => None,
        (None, Some(f)) if !f.trim().is_empty() => None,
        (Some(_), Some(_)) => Some("give either env or file, not both".into()),
        _ => Some(
            "write { env = \"VARIABLE\" } or { file = \"path/to/file\" } with a non-empty name"
                .into(),
        ),
    }
}

/// What is wrong with an endpoint URL, if anything: it must be `https://`,
/// or `http://` to a loopback host (so that signed events and bearer tokens
/// never cross a network in clear).
pub fn url_problem(url: &str) -> Option<String> {
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        let host = authority_host(r);
        let loopback = matches!(host, "localhost" | "[::1]")
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback());
        if !loopback {
            return Some(format!(
                "{url:?}: plain http:// is allowed only to localhost and loopback addresses; \
                 use https://"
            ));
        }
        r
    } else {
        return Some(format!("{url:?} must start with https://"));
    };
    if authority_host(rest).is_empty() {
        return Some(format!("{url:?} has no host"));
    }
    if rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .contains('@')
    {
        return Some(format!(
            "{url:?} must not hold credentials; use the secret or token setting"
        ));
    }
    None
}

fn authority_host(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// A plausibility check of an address (`a@b`, optionally `Name <a@b>`); the
/// mailer parses it fully when it starts.
fn looks_like_address(s: &str) -> bool {
    let addr = match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let addr = addr.trim();
    match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !addr.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(vec![("n.toml".into(), text.into())]) {
            Ok(c) => check(&c).into_iter().map(|e| e.to_string()).collect(),
            Err(e) => e.0.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn urls() {
        assert_eq!(url_problem("https://h.example/x"), None);
        assert_eq!(url_problem("http://127.0.0.1:8080/x"), None);
        assert_eq!(url_problem("http://localhost/x"), None);
        assert_eq!(url_problem("http://[::1]:9/x"), None);
        assert!(url_problem("http://h.example/x").is_some());
        assert!(url_problem("ftp://h.example/x").is_some());
        assert!(url_problem("https://u:p@h.example/x").is_some());
        assert!(url_problem("https:///x").is_some());
        assert!(url_problem("http://127.0.0.1.evil.example/x").is_some());
    }

    #[test]
    fn addresses() {
        assert!(looks_like_address("a@b.example"));
        assert!(looks_like_address("Tenure <a@b.example>"));
        assert!(!looks_like_address("nobody"));
        assert!(!looks_like_address("a b@c"));
    }

    #[test]
    fn a_valid_configuration_has_no_problems() {
        let p = problems(
            r#"
[smtp]
host = "mail.example.com"
from = "Tenure <tenure@example.com>"
user = "tenure"
password = { env = "SMTP_PASSWORD" }

[notifications]
addresses = { it = "it@example.com" }
[[notifications.email]]
events = ["joiner", "leaver"]
to = ["person", "manager", "it"]

[[webhook]]
id = "siem"
url = "https://siem.example.com/hook"
secret = { env = "HOOK_SECRET" }
events = ["leaver", "suspended"]

[security_events]
issuer = "https://tenure.example.com"
signing_key = { file = "keys/set.pem" }
key_id = "k1"
[[security_events.receiver]]
id = "app"
url = "https://app.example.com/ssf"
audience = "https://app.example.com"
subject = { format = "email" }
"#,
        );
        assert!(p.is_empty(), "{p:#?}");
    }

    #[test]
    fn problems_name_file_and_line() {
        let p = problems(
            r#"
[notifications]
[[notifications.email]]
events = ["leaver"]
to = ["hr"]

[[webhook]]
id = "a"
url = "http://siem.example.com/hook"
secret = "plain"
"#,
        );
        // A secret written in clear is refused where it is written.
        assert!(
            p.iter()
                .any(|m| m.starts_with("n.toml:10:") && m.contains("SecretRef")),
            "{p:#?}"
        );
        let p = problems(
            r#"
[notifications]
[[notifications.email]]
events = ["leaver"]
to = ["hr"]

[[webhook]]
id = "a"
url = "http://siem.example.com/hook"
secret = { env = "X" }
"#,
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("n.toml:3:") && m.contains("\"hr\"")),
            "{p:#?}"
        );
        assert!(
            p.iter().any(|m| m.contains("needs an [smtp] server")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("n.toml:9:") && m.contains("plain http://")),
            "{p:#?}"
        );
        let p = problems(
            "[[webhook]]\nid = \"a\"\nurl = \"https://x.example\"\nsecret = { env = \"X\" }\nevents = [\"lever\"]\n",
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("n.toml:5:") && m.contains("lever")),
            "{p:#?}"
        );
    }
}
