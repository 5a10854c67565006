//! What the connector learns from the target database's catalog: which
//! columns exist, and (on PostgreSQL) their types, so that text values can
//! be cast to non-text columns and the enabled flag written as a boolean or
//! an integer.
//!
//! The layout is read at `check` or at first use and kept for the life of the
//! connector; this module does not notice later `ALTER TABLE`s (a new
//! `check` re-reads it) and never changes the schema (except the explicit
//! demo helper in the parent module).

use super::dialect::Dialect;
use super::settings::{Settings, TableName};
use sqlx::{AnyPool, AssertSqlSafe, Row};

/// One column of a table.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) data_type: String,
    /// PostgreSQL: the type to cast a bound text value to (none for string types).
    pub(crate) cast: Option<String>,
    /// PostgreSQL: the type category (`S` string, `N` numeric, `B` boolean …).
    pub(crate) category: Option<String>,
}

/// The columns of one table.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    columns: Vec<Column>,
    folds_case: bool,
}

impl Table {
    pub(crate) fn find(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| {
            if self.folds_case {
                c.name.eq_ignore_ascii_case(name)
            } else {
                c.name == name
            }
        })
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The cast a bound text value for this column needs, if any.
    pub(crate) fn cast(&self, name: &str) -> Option<&str> {
        self.find(name).and_then(|c| c.cast.as_deref())
    }
}

/// How the enabled flag is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnabledRepr {
    /// 1 / 0 (SQLite, MySQL, integer columns on PostgreSQL).
    Int,
    /// true / false (boolean columns on PostgreSQL).
    Bool,
    /// '1' / '0' (text columns on PostgreSQL).
    Text,
}

/// The layout of the tables the settings name.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    pub(crate) accounts: Table,
    pub(crate) memberships: Option<Table>,
    /// The table of data rows transferred by the `archive` step.
    pub(crate) transfer: Option<Table>,
    pub(crate) enabled: EnabledRepr,
}

async fn columns(
    pool: &AnyPool,
    dialect: Dialect,
    table: &TableName,
) -> Result<Vec<Column>, sqlx::Error> {
    let rows = match dialect {
        Dialect::Sqlite => {
            let q = match &table.schema {
                Some(schema) => sqlx::query("SELECT name, type FROM pragma_table_info($1, $2)")
                    .bind(table.name.as_str())
                    .bind(schema.as_str()),
                None => sqlx::query("SELECT name, type FROM pragma_table_info($1)")
                    .bind(table.name.as_str()),
            };
            q.fetch_all(pool).await?
        }
        Dialect::Postgres => {
            sqlx::query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typcategory::text \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
            )
            // The name as the connector's statements write it, so it resolves the same way.
            .bind(dialect.table(table))
            .fetch_all(pool)
            .await?
        }
        Dialect::MySql => {
            let sql = match table.schema {
                Some(_) => {
                    "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION"
                }
                None => {
                    "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION"
                }
            };
            let mut q = sqlx::query(AssertSqlSafe(sql));
            if let Some(schema) = &table.schema {
                q = q.bind(schema.as_str());
            }
            q.bind(table.name.as_str()).fetch_all(pool).await?
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get(0)?;
        let data_type: Option<String> = row.try_get(1)?;
        let data_type = data_type.unwrap_or_default();
        let (cast, category) = if dialect == Dialect::Postgres {
            let category: Option<String> = row.try_get(2)?;
            let cast = match category.as_deref() {
                Some("S") => None,
                _ => Some(data_type.clone()),
            };
            (cast, category)
        } else {
            (None, None)
        };
        out.push(Column {
            name,
            data_type,
            cast,
            category,
        });
    }
    Ok(out)
}

/// Reads the layout of the settings' tables. The inner error lists every
/// mismatch with the settings (missing table or column, unusable type).
pub(crate) async fn load(
    pool: &AnyPool,
    dialect: Dialect,
    settings: &Settings,
) -> Result<Result<Schema, Vec<String>>, sqlx::Error> {
    let mut problems = Vec::new();
    let folds_case = dialect.folds_case();
    let at = &settings.accounts_table;
    let accounts = Table {
        columns: columns(pool, dialect, at).await?,
        folds_case,
    };
    let mut enabled = EnabledRepr::Int;
    if accounts.columns.is_empty() {
        problems.push(format!(
            "table {at} (settings.accounts_table) does not exist"
        ));
    } else {
        let mut need = |col: &str, what: &str| {
            if !accounts.has(col) {
                problems.push(format!("table {at} has no column {col} ({what})"));
            }
        };
        need(&settings.key_column, "settings.key_column");
        if let Some(en) = &settings.enabled_column {
            need(en, "settings.enabled_column");
        }
        for (attr, col) in &settings.attributes {
            need(col, &format!("attribute {attr}"));
        }
        if let (Dialect::Postgres, Some(en)) = (dialect, &settings.enabled_column)
            && let Some(c) = accounts.find(en)
        {
            enabled = match c.category.as_deref() {
                Some("B") => EnabledRepr::Bool,
                Some("N") => EnabledRepr::Int,
                Some("S") => EnabledRepr::Text,
                _ => {
                    problems.push(format!(
                            "column {at}.{en} (settings.enabled_column) has type {}; it must be boolean, an integer or text",
                            c.data_type
                        ));
                    EnabledRepr::Int
                }
            };
        }
    }
    let memberships = match &settings.memberships {
        None => None,
        Some(m) => {
            let t = Table {
                columns: columns(pool, dialect, &m.table).await?,
                folds_case,
            };
            if t.columns.is_empty() {
                problems.push(format!(
                    "table {} (settings.memberships_table) does not exist",
                    m.table
                ));
            } else {
                for (col, key) in [
                    (&m.account_column, "settings.membership_account_column"),
                    (
                        &m.entitlement_column,
                        "settings.membership_entitlement_column",
                    ),
                ] {
                    if !t.has(col) {
                        problems.push(format!("table {} has no column {col} ({key})", m.table));
                    }
                }
            }
            Some(t)
        }
    };
    let transfer = match &settings.transfer {
        None => None,
        Some(tr) => {
            let t = Table {
                columns: columns(pool, dialect, &tr.table).await?,
                folds_case,
            };
            if t.columns.is_empty() {
                problems.push(format!(
                    "table {} (settings.transfer_table) does not exist",
                    tr.table
                ));
            } else if !t.has(&tr.owner_column) {
                problems.push(format!(
                    "table {} has no column {} (settings.transfer_owner_column)",
                    tr.table, tr.owner_column
                ));
            }
            Some(t)
        }
    };
    if problems.is_empty() {
        Ok(Ok(Schema {
            accounts,
            memberships,
            transfer,
            enabled,
        }))
    } else {
        Ok(Err(problems))
    }
}
