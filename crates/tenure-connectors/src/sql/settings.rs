//! The SQL connector's settings: parsed from the system's `settings` table
//! and checked without connecting.
//!
//! Checked here: unknown and missing keys, identifier syntax of every table
//! and column, that every managed attribute has a column, that no column is
//! used twice, that an inline URL carries no password, and the shape of
//! secret references. Not checked here: whether the tables and columns exist
//! (that needs a connection, see `Connector::check`), and the contents of a
//! URL given by reference (it is only read when the connector is built).

use super::dialect::Dialect;
use super::url::{dialect_of, has_password};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tenure_core::config::{SecretRef, SystemConfig};

/// Longest identifier accepted (PostgreSQL silently truncates longer ones).
const MAX_IDENT: usize = 63;

const DEFAULT_MAX_CONNECTIONS: u32 = 4;
const DEFAULT_CONNECT_TIMEOUT_SECONDS: u64 = 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    url: toml::Value,
    accounts_table: String,
    key_column: String,
    #[serde(default)]
    enabled_column: Option<String>,
    #[serde(default)]
    attribute_columns: BTreeMap<String, String>,
    #[serde(default)]
    memberships_table: Option<String>,
    #[serde(default)]
    membership_account_column: Option<String>,
    #[serde(default)]
    membership_entitlement_column: Option<String>,
    #[serde(default)]
    max_connections: Option<i64>,
    #[serde(default)]
    connect_timeout_seconds: Option<i64>,
    #[serde(default)]
    transfer_table: Option<String>,
    #[serde(default)]
    transfer_owner_column: Option<String>,
    #[serde(default)]
    archive_to: Option<String>,
}

/// Where the database URL comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum UrlSetting {
    /// Written in the configuration (never holds a password).
    Inline(String),
    /// An environment variable.
    Env(String),
    /// A file, relative to the configuration directory.
    File(String),
}

impl fmt::Debug for UrlSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlSetting::Inline(u) => write!(f, "Inline({:?})", super::url::redact(u)),
            UrlSetting::Env(v) => write!(f, "Env({v:?})"),
            UrlSetting::File(p) => write!(f, "File({p:?})"),
        }
    }
}

/// A validated table name, optionally schema-qualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    pub(crate) schema: Option<String>,
    pub(crate) name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The membership table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Memberships {
    pub(crate) table: TableName,
    pub(crate) account_column: String,
    pub(crate) entitlement_column: String,
}

/// Where a leaver's data rows are, for the `archive` step: the rows of
/// `table` whose `owner_column` holds the account key are given to another
/// account (the manager's, or `to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) table: TableName,
    pub(crate) owner_column: String,
    /// A fixed account that receives every leaver's data (`archive_to`);
    /// without it, the manager's account.
    pub(crate) to: Option<String>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) url: UrlSetting,
    pub(crate) accounts_table: TableName,
    pub(crate) key_column: String,
    pub(crate) enabled_column: Option<String>,
    /// Every managed attribute (those the account mapping computes and those
    /// `attribute_columns` lists) → its column.
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) memberships: Option<Memberships>,
    pub(crate) transfer: Option<Transfer>,
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
}

/// Whether `s` is a plain SQL identifier this connector accepts.
pub(crate) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && s.len() <= MAX_IDENT && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn table_name(s: &str) -> Option<TableName> {
    match s.split_once('.') {
        Some((schema, name)) if is_ident(schema) && is_ident(name) => Some(TableName {
            schema: Some(schema.to_owned()),
            name: name.to_owned(),
        }),
        Some(_) => None,
        None if is_ident(s) => Some(TableName {
            schema: None,
            name: s.to_owned(),
        }),
        None => None,
    }
}

fn column(problems: &mut Vec<String>, key: &str, value: &str) -> String {
    if !is_ident(value) {
        problems.push(format!(
            "settings.{key}: {value:?} is not a valid column name ({IDENT_RULE})"
        ));
    }
    value.to_owned()
}

const IDENT_RULE: &str = "letters, digits and _, not starting with a digit, at most 63 characters";

impl Settings {
    /// The column an attribute is written to: its `attribute_columns` entry,
    /// or a column of the same name when the attribute name is a valid one.
    pub(crate) fn column_for<'a>(&'a self, attribute: &'a str) -> Option<&'a str> {
        match self.attributes.get(attribute) {
            Some(c) => Some(c),
            None if is_ident(attribute) => Some(attribute),
            None => None,
        }
    }

    /// Parses and checks a system's settings; every problem at once.
    pub(crate) fn parse(system: &SystemConfig) -> Result<Settings, Vec<String>> {
        let Some(table) = &system.settings else {
            return Err(vec![
                "settings: missing; the sql connector needs [system.settings] with url, accounts_table and key_column".to_owned(),
            ]);
        };
        let raw: RawSettings = toml::Value::Table(table.get_ref().clone())
            .try_into()
            .map_err(|e: toml::de::Error| vec![format!("settings: {}", e.message().trim())])?;
        let mut problems = Vec::new();

        let url = match parse_url(&raw.url) {
            Ok(u) => Some(u),
            Err(p) => {
                problems.push(p);
                None
            }
        };

        let accounts_table = table_name(&raw.accounts_table);
        if accounts_table.is_none() {
            problems.push(format!(
                "settings.accounts_table: {:?} is not a valid table name ({IDENT_RULE}; optionally schema.table)",
                raw.accounts_table
            ));
        }
        let key_column = column(&mut problems, "key_column", &raw.key_column);
        let enabled_column = raw
            .enabled_column
            .as_deref()
            .map(|c| column(&mut problems, "enabled_column", c));
        for (attr, col) in &raw.attribute_columns {
            column(&mut problems, &format!("attribute_columns.{attr}"), col);
        }

        let memberships = match (
            &raw.memberships_table,
            &raw.membership_account_column,
            &raw.membership_entitlement_column,
        ) {
            (None, None, None) => None,
            (None, _, _) => {
                problems.push("settings.membership_account_column and settings.membership_entitlement_column need settings.memberships_table".to_owned());
                None
            }
            (Some(t), a, e) => {
                let table = table_name(t);
                if table.is_none() {
                    problems.push(format!(
                        "settings.memberships_table: {t:?} is not a valid table name ({IDENT_RULE}; optionally schema.table)"
                    ));
                }
                let a = match a {
                    Some(a) => Some(column(&mut problems, "membership_account_column", a)),
                    None => {
                        problems.push("settings.membership_account_column: missing; it names the column of the memberships table that holds the account key".to_owned());
                        None
                    }
                };
                let e = match e {
                    Some(e) => Some(column(&mut problems, "membership_entitlement_column", e)),
                    None => {
                        problems.push("settings.membership_entitlement_column: missing; it names the column of the memberships table that holds the entitlement".to_owned());
                        None
                    }
                };
                match (table, a, e) {
                    (Some(table), Some(account_column), Some(entitlement_column)) => {
                        if account_column.eq_ignore_ascii_case(&entitlement_column) {
                            problems.push(format!("settings.membership_entitlement_column: {entitlement_column:?} is also the membership_account_column"));
                        }
                        Some(Memberships {
                            table,
                            account_column,
                            entitlement_column,
                        })
                    }
                    _ => None,
                }
            }
        };

        let transfer = match (&raw.transfer_table, &raw.transfer_owner_column) {
            (None, None) => {
                if raw.archive_to.is_some() {
                    problems.push("settings.archive_to needs settings.transfer_table and settings.transfer_owner_column".to_owned());
                }
                None
            }
            (None, Some(_)) => {
                problems.push(
                    "settings.transfer_owner_column needs settings.transfer_table".to_owned(),
                );
                None
            }
            (Some(_), None) => {
                problems.push("settings.transfer_owner_column: missing; it names the column of the transfer table that holds the owner's account key".to_owned());
                None
            }
            (Some(t), Some(c)) => {
                let table = table_name(t);
                if table.is_none() {
                    problems.push(format!(
                        "settings.transfer_table: {t:?} is not a valid table name ({IDENT_RULE}; optionally schema.table)"
                    ));
                }
                let owner_column = column(&mut problems, "transfer_owner_column", c);
                let to = match raw.archive_to.as_deref().map(str::trim) {
                    Some("") => {
                        problems.push("settings.archive_to: empty; name the account that receives leavers' data, or leave it out to give it to their manager".to_owned());
                        None
                    }
                    other => other.map(str::to_owned),
                };
                table.map(|table| Transfer {
                    table,
                    owner_column,
                    to,
                })
            }
        };

        // Every managed attribute needs a column distinct from the key, the
        // enabled flag and every other attribute's.
        let mut attributes = BTreeMap::new();
        for attr in system.account.attributes.keys() {
            match raw.attribute_columns.get(attr) {
                Some(c) => {
                    attributes.insert(attr.clone(), c.clone());
                }
                None if is_ident(attr) => {
                    attributes.insert(attr.clone(), attr.clone());
                }
                None => problems.push(format!(
                    "settings.attribute_columns: account attribute {attr:?} has no column; add {attr:?} = \"column_name\" (an attribute without an entry is written to the column of the same name, and {attr:?} is not a valid column name)"
                )),
            }
        }
        for (attr, col) in &raw.attribute_columns {
            attributes.insert(attr.clone(), col.clone());
        }
        let mut used: BTreeMap<String, String> = BTreeMap::new();
        used.insert(key_column.to_ascii_lowercase(), "the key_column".to_owned());
        if let Some(en) = &enabled_column {
            if en.eq_ignore_ascii_case(&key_column) {
                problems.push(format!(
                    "settings.enabled_column: {en:?} is also the key_column"
                ));
            }
            used.insert(en.to_ascii_lowercase(), "the enabled_column".to_owned());
        }
        for (attr, col) in &attributes {
            let lower = col.to_ascii_lowercase();
            if let Some(other) = used.get(&lower) {
                problems.push(format!(
                    "settings.attribute_columns: attribute {attr:?} would be written to column {col:?}, which is already {other}"
                ));
            } else {
                used.insert(lower, format!("the column of attribute {attr:?}"));
            }
        }

        let max_connections = match raw.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n) if (1..=100).contains(&n) => {
                u32::try_from(n).unwrap_or(DEFAULT_MAX_CONNECTIONS)
            }
            Some(n) => {
                problems.push(format!(
                    "settings.max_connections: {n} is out of range (1 to 100)"
                ));
                DEFAULT_MAX_CONNECTIONS
            }
        };
        let connect_timeout = match raw.connect_timeout_seconds {
            None => DEFAULT_CONNECT_TIMEOUT_SECONDS,
            Some(n) if (1..=3600).contains(&n) => {
                u64::try_from(n).unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECONDS)
            }
            Some(n) => {
                problems.push(format!(
                    "settings.connect_timeout_seconds: {n} is out of range (1 to 3600)"
                ));
                DEFAULT_CONNECT_TIMEOUT_SECONDS
            }
        };

        match (url, accounts_table) {
            (Some(url), Some(accounts_table)) if problems.is_empty() => Ok(Settings {
                url,
                accounts_table,
                key_column,
                enabled_column,
                attributes,
                memberships,
                transfer,
                max_connections,
                connect_timeout: Duration::from_secs(connect_timeout),
            }),
            _ => Err(problems),
        }
    }
}

const SCHEMES: &str = "sqlite://, postgres://, postgresql://, mysql:// or mariadb://";

/// Checks a URL's scheme and that it carries no password; the message never
/// repeats the URL.
pub(crate) fn check_url_text(url: &str, key: &str) -> Result<Dialect, String> {
    let Some(dialect) = dialect_of(url) else {
        let scheme = url
            .split_once(':')
            .map(|(s, _)| s)
            .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+'))
            .unwrap_or("");
        return Err(if scheme.is_empty() {
            format!("{key}: not a database URL (expected {SCHEMES})")
        } else {
            format!("{key}: unsupported database URL scheme {scheme:?} (expected {SCHEMES})")
        });
    };
    Ok(dialect)
}

fn parse_url(v: &toml::Value) -> Result<UrlSetting, String> {
    match v {
        toml::Value::String(s) => {
            check_url_text(s, "settings.url")?;
            if has_password(s) {
                return Err("settings.url: the URL contains a password, which must not be written in the configuration; put the URL in an environment variable or a file and write url = { env = \"VARIABLE\" } or url = { file = \"path/to/file\" }".to_owned());
            }
            Ok(UrlSetting::Inline(s.clone()))
        }
        toml::Value::Table(t) => {
            let r: SecretRef = toml::Value::Table(t.clone())
                .try_into()
                .map_err(|e: toml::de::Error| format!("settings.url: {}", e.message().trim()))?;
            match (r.env, r.file) {
                (Some(env), None) if !env.trim().is_empty() => Ok(UrlSetting::Env(env)),
                (None, Some(file)) if !file.trim().is_empty() => Ok(UrlSetting::File(file)),
                (Some(_), Some(_)) => Err("settings.url: give either env or file, not both".to_owned()),
                _ => Err("settings.url: write url = { env = \"VARIABLE\" } or url = { file = \"path/to/file\" } with a non-empty name".to_owned()),
            }
        }
        _ => Err("settings.url: must be a URL string or a reference { env = \"VARIABLE\" } / { file = \"path\" }".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["users", "_x", "User_Groups2", &"a".repeat(63)] {
            assert!(is_ident(ok), "{ok}");
        }
        for bad in [
            "",
            "1users",
            "us ers",
            "us-ers",
            "users;",
            "\"users\"",
            "ü",
            &"a".repeat(64),
        ] {
            assert!(!is_ident(bad), "{bad}");
        }
        assert_eq!(
            table_name("app.users"),
            Some(TableName {
                schema: Some("app".into()),
                name: "users".into()
            })
        );
        assert_eq!(table_name("a.b.c"), None);
        assert_eq!(table_name("app."), None);
    }
}
