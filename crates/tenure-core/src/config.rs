//! The configuration directory: policy as code.
//!
//! Every `*.toml` file in the directory is read (in name order) and may hold
//! any of the top-level tables below; together they make one [`Config`].
//! Parsing is pure: the caller reads the files and passes their text, so this
//! module does no I/O. Every problem is reported with the file, line and column
//! where it is, and all problems are reported at once.
//!
//! ```toml
//! [guard]                    # mass-change guard
//! max_deprovision_percent = 10
//! min_count = 5
//!
//! [[source]]                 # where identities come from
//! [[system]]                 # connected target systems
//! [[role]]                   # business roles
//! [[rule]]                   # birthright rules (CEL)
//! [[deprovisioning]]         # leaver policies per population (CEL)
//! [smtp]                     # notifications: see crate::notify_config
//! [notifications]
//! [[webhook]]
//! [security_events]
//! ```
//!
//! See `docs/configuration.md` for every key.

use crate::ids::{EntitlementName, IdError, PolicyId, RoleId, RuleId, SourceId, SystemId};
pub use crate::notify_config::{
    EmailRoute, NoticeKind, NotificationsConfig, SecurityEventsConfig, SetAlgorithm, SetEvent,
    SetReceiverConfig, SmtpConfig, SmtpTls, SubjectConfig, SubjectFormat, WebhookConfig,
};
use crate::plan::{OrphanPolicy, StepAction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// A place in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Location {
    /// The file name as given by the caller.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConfigError {
    /// Where.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a configuration directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "the configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// A reference to a secret: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Read the secret from this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Read the secret from this file (relative to the configuration directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The mass-change guard's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Refuse when more than this share (in percent) of identities or accounts would be deprovisioned.
    #[serde(default = "default_percent")]
    pub max_deprovision_percent: f64,
    /// ... unless no more than this many would be.
    #[serde(default = "default_min")]
    pub min_count: u64,
}

fn default_percent() -> f64 {
    10.0
}
fn default_min() -> u64 {
    5
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_deprovision_percent: default_percent(),
            min_count: default_min(),
        }
    }
}

/// How `tenure serve` runs (`[service]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// How often the scheduler looks for work (sources changed, dates come,
    /// reconciliations due), as a delay such as `1s`.
    #[serde(default = "default_tick")]
    pub tick: String,
    /// A system whose batches fail this many times in a row is quarantined.
    #[serde(default = "default_quarantine_after")]
    pub quarantine_after: u64,
    /// How often a quarantined system is tried again, as a delay such as `15m`.
    #[serde(default = "default_quarantine_retry")]
    pub quarantine_retry: String,
}

fn default_tick() -> String {
    "1s".to_owned()
}
fn default_quarantine_after() -> u64 {
    5
}
fn default_quarantine_retry() -> String {
    "15m".to_owned()
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            tick: default_tick(),
            quarantine_after: default_quarantine_after(),
            quarantine_retry: default_quarantine_retry(),
        }
    }
}

/// The file format of an HR export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Pushed by a SCIM 2.0 client to `tenure serve`: `columns` and
    /// `attributes` hold SCIM attribute paths instead of column names.
    Scim,
}

/// What a SCIM client's deactivation (`active` set to false, or DELETE) means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeactivatePolicy {
    /// The person left: their end date becomes the day of the deactivation.
    #[default]
    Leaver,
    /// The person is suspended (every account disabled) until reactivated.
    Suspend,
}

/// What a full export's silence about a known person means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingPolicy {
    /// Nothing: the export may be partial (the default).
    #[default]
    Ignore,
    /// The person left: their end date becomes the import date.
    Leaver,
}

/// Which source columns hold Tenure's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceColumns {
    /// The person's id (required).
    pub id: String,
    /// Employment type; values are mapped through `employment_types`.
    #[serde(default)]
    pub employment_type: Option<String>,
    /// The manager's id.
    #[serde(default)]
    pub manager: Option<String>,
    /// Start date.
    #[serde(default)]
    pub start_date: Option<String>,
    /// End or termination date.
    #[serde(default)]
    pub end_date: Option<String>,
}

/// An authoritative source of identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Identifier.
    pub id: SourceId,
    /// File format.
    pub format: SourceFormat,
    /// Default file to import (relative to the configuration directory).
    #[serde(default)]
    pub path: Option<String>,
    /// What a person missing from an import means.
    #[serde(default)]
    pub missing: MissingPolicy,
    /// chrono format of dates (default `%Y-%m-%d`).
    #[serde(default = "default_date_format")]
    pub date_format: String,
    /// CSV delimiter (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Columns for Tenure's own fields.
    pub columns: SourceColumns,
    /// Attribute name → source column.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Attributes that must not be empty.
    #[serde(default)]
    pub required: Vec<String>,
    /// Source value → employment type (`employee`, `contractor`, `vendor`, `temp`, `service_owner`).
    #[serde(default)]
    pub employment_types: BTreeMap<String, String>,
    /// Employment type when the column is absent or empty.
    #[serde(default = "default_employment_type")]
    pub default_employment_type: String,
    /// SCIM sources: what a deactivation or a DELETE means.
    #[serde(default)]
    pub deactivate: DeactivatePolicy,
    /// SCIM sources: the window (minutes) over which the mass-change guard
    /// counts a client's deactivations.
    #[serde(default = "default_deactivation_window")]
    pub deactivation_window_minutes: u64,
}

fn default_deactivation_window() -> u64 {
    60
}

fn default_date_format() -> String {
    "%Y-%m-%d".to_owned()
}
fn default_delimiter() -> char {
    ','
}
fn default_employment_type() -> String {
    "employee".to_owned()
}

/// How an identity's account on a system is computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountMapping {
    /// CEL expression giving the account key (user name).
    pub key: Spanned<String>,
    /// Account attribute → CEL expression.
    #[serde(default)]
    pub attributes: BTreeMap<String, Spanned<String>>,
}

/// How existing accounts are matched to identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationConfig {
    /// The account attribute to compare (or `key`).
    pub account: String,
    /// The identity attribute to compare it with (or `id`).
    pub identity: String,
}

/// A connected target system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// Identifier.
    pub id: SystemId,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Connector kind (`sql`).
    pub kind: Spanned<String>,
    /// Entitlements Tenure manages on this system.
    #[serde(default)]
    pub entitlements: Vec<EntitlementName>,
    /// What to do with orphaned accounts.
    #[serde(default)]
    pub orphans: OrphanPolicy,
    /// How accounts are computed from identities.
    pub account: AccountMapping,
    /// How existing accounts are matched to identities.
    #[serde(default)]
    pub correlation: Option<CorrelationConfig>,
    /// Connector settings, checked by the connector.
    #[serde(default)]
    pub settings: Option<Spanned<toml::Table>>,
    /// When `tenure serve` reconciles this system in full (every account
    /// read, orphans found, drift corrected): a cron pattern in UTC, such as
    /// `"0 */6 * * *"`. Without it the service only plans for what changed.
    #[serde(default)]
    pub reconcile: Option<Spanned<String>>,
    /// The `[[webhook]]` (by id) that archives leavers' data on this system
    /// (the `archive` deprovisioning step), instead of the connector.
    #[serde(default)]
    pub archive_webhook: Option<Spanned<String>>,
}

/// A business role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Identifier.
    pub id: RoleId,
    /// What the role is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Systems where the role needs an account (with no particular entitlement).
    #[serde(default)]
    pub accounts: Vec<Spanned<String>>,
    /// Entitlements as `system:entitlement` (each implies an account on that system).
    #[serde(default)]
    pub entitlements: Vec<Spanned<String>>,
    /// Contained roles.
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    /// When a mover stops qualifying for this role, keep it this long
    /// (`14d`): the old access goes when the grace period ends.
    #[serde(default)]
    pub grace: Option<Spanned<String>>,
}

/// Expiring access (`[expiry]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryConfig {
    /// CEL condition over `identity`: the people who must have an end date
    /// (contractors, temps…). A record of one of them without an end date
    /// rejects the whole import.
    #[serde(default)]
    pub require_end_date: Option<Spanned<String>>,
    /// How long before access ends (a grant's end, or the end date of
    /// someone who must have one) the holder and their manager are reminded.
    #[serde(default)]
    pub remind_before: Option<Spanned<String>>,
}

/// How long before access ends its holder is reminded, unless `[expiry]` says.
pub const DEFAULT_REMIND_BEFORE: &str = "7d";

/// A birthright rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Identifier.
    pub id: RuleId,
    /// What the rule is for.
    #[serde(default)]
    pub description: Option<String>,
    /// CEL condition over `identity`.
    pub when: Spanned<String>,
    /// Roles given when the condition holds.
    pub roles: Vec<Spanned<String>>,
}

/// Whether a population loses everything at once or in steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeprovisioningMode {
    /// Every account deleted at once.
    Immediate,
    /// The steps, each at its delay after the end date.
    Staged,
}

/// One step of a staged deprovisioning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Delay after the end date: `0d`, `12h`, `30d`, `90m`.
    pub after: Spanned<String>,
    /// What to do.
    pub action: StepAction,
}

/// A per-system replacement of one step of a deprovisioning policy
/// (`[[deprovisioning.override]]`): on `system`, the step `action` does
/// `instead` (another step action, or `"nothing"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepOverrideConfig {
    /// The system the override applies to.
    pub system: Spanned<String>,
    /// The policy's step it replaces (`delete`, …).
    pub action: Spanned<String>,
    /// What that step does on this system instead: a step action or `nothing`.
    pub instead: Spanned<String>,
}

/// A deprovisioning policy for one population.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprovisioningConfig {
    /// Identifier.
    pub id: PolicyId,
    /// CEL condition over `identity` choosing the population (first match wins).
    pub when: Spanned<String>,
    /// Immediate or staged.
    pub mode: DeprovisioningMode,
    /// The steps (staged only).
    #[serde(default, rename = "step")]
    pub steps: Vec<StepConfig>,
    /// Per-system replacements of steps.
    #[serde(default, rename = "override")]
    pub overrides: Vec<StepOverrideConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    guard: Option<Spanned<GuardConfig>>,
    #[serde(default)]
    service: Option<Spanned<ServiceConfig>>,
    #[serde(default)]
    expiry: Option<Spanned<ExpiryConfig>>,
    #[serde(default, rename = "source")]
    sources: Vec<Spanned<SourceConfig>>,
    #[serde(default, rename = "system")]
    systems: Vec<Spanned<SystemConfig>>,
    #[serde(default, rename = "role")]
    roles: Vec<Spanned<RoleConfig>>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RuleConfig>>,
    #[serde(default)]
    deprovisioning: Vec<Spanned<DeprovisioningConfig>>,
    #[serde(default)]
    smtp: Option<Spanned<SmtpConfig>>,
    #[serde(default)]
    notifications: Option<Spanned<NotificationsConfig>>,
    #[serde(default, rename = "webhook")]
    webhooks: Vec<Spanned<WebhookConfig>>,
    #[serde(default)]
    security_events: Option<Spanned<SecurityEventsConfig>>,
}

/// An item of the configuration with the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The item.
    pub item: T,
    /// Index into [`Config::files`].
    pub file: usize,
    /// Byte range of the item in its file.
    pub span: Range<usize>,
}

/// The whole configuration, parsed but not yet compiled (see [`crate::policy`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The files it was read from: (name, text).
    pub files: Vec<(String, String)>,
    /// Mass-change guard.
    pub guard: GuardConfig,
    /// The service, and where `[service]` was given.
    pub service: ServiceConfig,
    /// Where `[service]` was given (for errors in it).
    pub service_at: Option<Location>,
    /// Sources.
    pub sources: Vec<Located<SourceConfig>>,
    /// Systems.
    pub systems: Vec<Located<SystemConfig>>,
    /// Roles.
    pub roles: Vec<Located<RoleConfig>>,
    /// Birthright rules.
    pub rules: Vec<Located<RuleConfig>>,
    /// Deprovisioning policies, in order of precedence.
    pub deprovisioning: Vec<Located<DeprovisioningConfig>>,
    /// Expiring access.
    pub expiry: Option<Located<ExpiryConfig>>,
    /// The SMTP server for e-mail notifications.
    pub smtp: Option<Located<SmtpConfig>>,
    /// Notification settings and e-mail routes.
    pub notifications: Option<Located<NotificationsConfig>>,
    /// Webhooks.
    pub webhooks: Vec<Located<WebhookConfig>>,
    /// Security event tokens: signing and receivers.
    pub security_events: Option<Located<SecurityEventsConfig>>,
}

/// Turns a byte offset into a 1-based line and column.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

impl Config {
    /// Parses configuration files given as `(name, text)`, in the order given.
    /// Reports every syntax problem of every file at once.
    pub fn parse(files: Vec<(String, String)>) -> Result<Config, ConfigErrors> {
        let mut cfg = Config {
            files: Vec::new(),
            ..Default::default()
        };
        let mut errors = Vec::new();
        let mut guard_seen: Option<Location> = None;
        let mut singles: BTreeMap<&'static str, Location> = BTreeMap::new();
        for (idx, (name, text)) in files.iter().enumerate() {
            let raw: RawFile = match toml::from_str(text) {
                Ok(r) => r,
                Err(e) => {
                    let (line, column) =
                        e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
                    errors.push(ConfigError {
                        location: Location {
                            file: name.clone(),
                            line,
                            column,
                        },
                        message: e.message().trim().to_owned(),
                    });
                    continue;
                }
            };
            if let Some(g) = raw.guard {
                let here = loc_of(name, text, g.span().start);
                if let Some(first) = &guard_seen {
                    errors.push(ConfigError {
                        location: here,
                        message: format!("[guard] is already set at {first}"),
                    });
                } else {
                    guard_seen = Some(here);
                    cfg.guard = g.into_inner();
                }
            }
            // Tables that may appear once in the whole directory.
            let mut once = |table: &'static str, start: usize, errors: &mut Vec<ConfigError>| {
                let here = loc_of(name, text, start);
                if let Some(first) = singles.get(table) {
                    errors.push(ConfigError {
                        location: here,
                        message: format!("[{table}] is already set at {first}"),
                    });
                    false
                } else {
                    singles.insert(table, here);
                    true
                }
            };
            if let Some(t) = raw.smtp
                && once("smtp", t.span().start, &mut errors)
            {
                cfg.smtp = Some(located(t, idx));
            }
            if let Some(t) = raw.notifications
                && once("notifications", t.span().start, &mut errors)
            {
                cfg.notifications = Some(located(t, idx));
            }
            if let Some(t) = raw.security_events
                && once("security_events", t.span().start, &mut errors)
            {
                cfg.security_events = Some(located(t, idx));
            }
            if let Some(t) = raw.expiry
                && once("expiry", t.span().start, &mut errors)
            {
                cfg.expiry = Some(located(t, idx));
            }
            fn take<T>(v: Vec<Spanned<T>>, idx: usize) -> impl Iterator<Item = Located<T>> {
                v.into_iter().map(move |s| {
                    let span = s.span();
                    Located {
                        item: s.into_inner(),
                        file: idx,
                        span,
                    }
                })
            }
            if let Some(sv) = raw.service {
                let here = loc_of(name, text, sv.span().start);
                if let Some(first) = &cfg.service_at {
                    errors.push(ConfigError {
                        location: here,
                        message: format!("[service] is already set at {first}"),
                    });
                } else {
                    cfg.service_at = Some(here);
                    cfg.service = sv.into_inner();
                }
            }
            cfg.sources.extend(take(raw.sources, idx));
            cfg.systems.extend(take(raw.systems, idx));
            cfg.roles.extend(take(raw.roles, idx));
            cfg.rules.extend(take(raw.rules, idx));
            cfg.deprovisioning.extend(take(raw.deprovisioning, idx));
            cfg.webhooks.extend(take(raw.webhooks, idx));
        }
        cfg.files = files;
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The location of a byte offset in one of the files.
    pub fn location(&self, file: usize, offset: usize) -> Location {
        match self.files.get(file) {
            Some((name, text)) => loc_of(name, text, offset),
            None => Location {
                file: "<unknown>".into(),
                line: 1,
                column: 1,
            },
        }
    }

    /// Looks up a system by id.
    pub fn system(&self, id: &SystemId) -> Option<&SystemConfig> {
        self.systems.iter().map(|s| &s.item).find(|s| &s.id == id)
    }

    /// Looks up a source by id.
    pub fn source(&self, id: &SourceId) -> Option<&SourceConfig> {
        self.sources.iter().map(|s| &s.item).find(|s| &s.id == id)
    }
}

fn located<T>(s: Spanned<T>, file: usize) -> Located<T> {
    let span = s.span();
    Located {
        item: s.into_inner(),
        file,
        span,
    }
}

fn loc_of(name: &str, text: &str, offset: usize) -> Location {
    let (line, column) = line_col(text, offset);
    Location {
        file: name.to_owned(),
        line,
        column,
    }
}

/// Parses a delay such as `0d`, `36h`, `90m` or `45s` into seconds.
pub fn parse_delay(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("delay {s:?} must be a whole number followed by d, h, m or s"))?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("delay {s:?} must end in d, h, m or s")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("delay {s:?} is too long"))
}

/// Splits `system:entitlement`.
pub fn split_entitlement(s: &str) -> Result<(SystemId, EntitlementName), String> {
    let (sys, ent) = s
        .split_once(':')
        .ok_or_else(|| format!("entitlement {s:?} must be written as system:entitlement"))?;
    let sys = SystemId::new(sys).map_err(|e: IdError| e.to_string())?;
    let ent = EntitlementName::new(ent).map_err(|e| e.to_string())?;
    Ok((sys, ent))
}

/// Reserved names in the `identity` CEL object; source attributes may not use them.
pub const RESERVED_ATTRIBUTES: [&str; 8] = [
    "id",
    "employment_type",
    "status",
    "manager",
    "start_date",
    "end_date",
    "groups",
    "source",
];

/// Collects the names of all attributes the sources declare.
pub fn declared_attributes(cfg: &Config) -> BTreeSet<String> {
    cfg.sources
        .iter()
        .flat_map(|s| s.item.attributes.keys().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a\nbc\ndef";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 2));
        assert_eq!(line_col(t, 5), (3, 1));
        assert_eq!(line_col(t, 999), (3, 4));
    }

    #[test]
    fn delays_parse() {
        assert_eq!(parse_delay("0d"), Ok(0));
        assert_eq!(parse_delay("30d"), Ok(30 * 86_400));
        assert_eq!(parse_delay("12h"), Ok(12 * 3_600));
        assert!(parse_delay("d").is_err());
        assert!(parse_delay("3w").is_err());
        assert!(parse_delay("-1d").is_err());
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let files = vec![
            ("ok.toml".to_owned(), "[guard]\nmin_count = 3\n".to_owned()),
            (
                "bad.toml".to_owned(),
                "[[rule]]\nid = \"x\"\nwhen = \n".to_owned(),
            ),
            (
                "unknown.toml".to_owned(),
                "[[role]]\nid = \"r\"\ncolour = \"red\"\n".to_owned(),
            ),
        ];
        let Err(ConfigErrors(errs)) = Config::parse(files) else {
            unreachable!("must fail")
        };
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].location.file, "bad.toml");
        assert_eq!(errs[0].location.line, 3);
        assert_eq!(errs[1].location.file, "unknown.toml");
        assert_eq!(errs[1].location.line, 3);
        assert!(errs[1].message.contains("colour"), "{}", errs[1].message);
    }
}
