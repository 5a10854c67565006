//! SQL dialects and the statements the connector runs.
//!
//! Every statement is built from validated identifiers (quoted per dialect)
//! and placeholders; values are always bound, never spliced. A statement is
//! a text plus the list of what to bind to each placeholder ([`Slot`]), so
//! that one text can be prepared once and executed for many operations.
//!
//! This module builds text only; it runs nothing.

use super::schema::Schema;
use super::settings::{Settings, TableName};
use std::fmt::Write as _;
use std::sync::Arc;

/// A SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Dialect {
    /// A display name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
        }
    }

    /// Quotes a validated identifier.
    pub(crate) fn ident(self, name: &str) -> String {
        match self {
            Dialect::MySql => format!("`{name}`"),
            Dialect::Sqlite | Dialect::Postgres => format!("\"{name}\""),
        }
    }

    /// Quotes a validated, possibly schema-qualified table name.
    pub(crate) fn table(self, t: &TableName) -> String {
        match &t.schema {
            Some(s) => format!("{}.{}", self.ident(s), self.ident(&t.name)),
            None => self.ident(&t.name),
        }
    }

    /// An expression converting `expr` to text.
    pub(crate) fn as_text(self, expr: &str) -> String {
        match self {
            Dialect::MySql => format!("CAST({expr} AS CHAR)"),
            Dialect::Sqlite | Dialect::Postgres => format!("CAST({expr} AS TEXT)"),
        }
    }

    /// Whether identifiers are compared case-insensitively (when checking the schema).
    pub(crate) fn folds_case(self) -> bool {
        !matches!(self, Dialect::Postgres)
    }

    /// What a `SELECT` without a table needs before `WHERE`.
    fn dual(self) -> &'static str {
        match self {
            Dialect::MySql => " FROM DUAL",
            Dialect::Sqlite | Dialect::Postgres => "",
        }
    }
}

/// What to bind to one placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The account key.
    Key,
    /// The entitlement.
    Entitlement,
    /// The n-th attribute value of the operation (in the statement's column order).
    Value(usize),
    /// The enabled flag (its value is given when binding).
    Enabled,
    /// The account that receives a leaver's data rows.
    Target,
    /// The account key of the n-th row of a many-row statement.
    RowKey(usize),
    /// The entitlement of the n-th row of a many-row statement.
    RowEntitlement(usize),
}

/// A statement: its text and what to bind, in order.
#[derive(Debug)]
pub(crate) struct Stmt {
    pub(crate) sql: Arc<str>,
    pub(crate) slots: Vec<Slot>,
}

/// The distinct statements (the cache key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum StmtKind {
    /// Insert an account unless its key exists (columns: attribute columns).
    CreateInsert(Vec<String>),
    /// Make an existing account match a create.
    CreateUpdate(Vec<String>),
    /// Update these columns.
    Update(Vec<String>),
    /// Set the enabled flag.
    SetEnabled,
    /// Whether an account exists.
    AccountExists,
    /// Insert a membership unless held (and only for an existing account).
    AddMembership,
    /// [`StmtKind::AddMembership`] for this many (key, entitlement) rows at once.
    AddMemberships(usize),
    /// Of this many account keys, the row numbers of those with no account.
    MissingAccounts(usize),
    /// Delete one membership.
    RemoveMembership,
    /// Delete every membership of an account.
    DeleteMemberships,
    /// Delete an account row.
    DeleteAccount,
    /// Give an account's data rows (the transfer table) to another account.
    Transfer,
}

/// Builds statement texts for one dialect, settings and schema.
pub(crate) struct Builder<'a> {
    pub(crate) dialect: Dialect,
    pub(crate) settings: &'a Settings,
    pub(crate) schema: &'a Schema,
}

struct Sql {
    dialect: Dialect,
    text: String,
    slots: Vec<Slot>,
}

impl Sql {
    fn new(dialect: Dialect) -> Sql {
        Sql {
            dialect,
            text: String::with_capacity(256),
            slots: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Appends a placeholder for `slot`, cast to `cast` when given.
    fn bind(&mut self, slot: Slot, cast: Option<&str>) -> &mut Self {
        self.slots.push(slot);
        let n = self.slots.len();
        // Anonymous `?` on SQLite too: it looks numbered names up linearly,
        // so a many-row statement's hundreds of `$N` cost quadratic time.
        // Slots are bound in order, so both forms mean the same.
        let ph = match self.dialect {
            Dialect::MySql | Dialect::Sqlite => "?".to_owned(),
            Dialect::Postgres => format!("${n}"),
        };
        match cast {
            Some(ty) => {
                let _ = write!(self.text, "CAST({ph} AS {ty})");
            }
            None => self.text.push_str(&ph),
        }
        self
    }

    fn done(self) -> Stmt {
        Stmt {
            sql: Arc::from(self.text),
            slots: self.slots,
        }
    }
}

impl Builder<'_> {
    fn q(&self, ident: &str) -> String {
        self.dialect.ident(ident)
    }

    fn accounts(&self) -> String {
        self.dialect.table(&self.settings.accounts_table)
    }

    /// The cast a value for this accounts-table column needs (PostgreSQL, non-text columns).
    fn acast(&self, column: &str) -> Option<&str> {
        self.schema.accounts.cast(column)
    }

    fn mcast(&self, column: &str) -> Option<&str> {
        self.schema
            .memberships
            .as_ref()
            .and_then(|m| m.cast(column))
    }

    fn key_eq(&self, sql: &mut Sql) {
        let key = &self.settings.key_column;
        sql.push(&self.q(key))
            .push(" = ")
            .bind(Slot::Key, self.acast(key));
    }

    /// Builds one statement. `None` when the settings have no memberships
    /// table but a membership statement was asked for.
    pub(crate) fn build(&self, kind: &StmtKind) -> Option<Stmt> {
        let d = self.dialect;
        let mut sql = Sql::new(d);
        match kind {
            StmtKind::CreateInsert(columns) => {
                let key = &self.settings.key_column;
                sql.push("INSERT INTO ")
                    .push(&self.accounts())
                    .push(" (")
                    .push(&self.q(key));
                if let Some(en) = &self.settings.enabled_column {
                    sql.push(", ").push(&self.q(en));
                }
                for c in columns {
                    sql.push(", ").push(&self.q(c));
                }
                sql.push(") SELECT ").bind(Slot::Key, self.acast(key));
                if let Some(en) = &self.settings.enabled_column {
                    sql.push(", ").bind(Slot::Enabled, self.acast(en));
                }
                for (i, c) in columns.iter().enumerate() {
                    sql.push(", ").bind(Slot::Value(i), self.acast(c));
                }
                sql.push(d.dual())
                    .push(" WHERE NOT EXISTS (SELECT 1 FROM ")
                    .push(&self.accounts())
                    .push(" WHERE ");
                self.key_eq(&mut sql);
                sql.push(")");
            }
            StmtKind::CreateUpdate(columns) | StmtKind::Update(columns) => {
                sql.push("UPDATE ").push(&self.accounts()).push(" SET ");
                let mut first = true;
                if let (StmtKind::CreateUpdate(_), Some(en)) = (kind, &self.settings.enabled_column)
                {
                    sql.push(&self.q(en))
                        .push(" = ")
                        .bind(Slot::Enabled, self.acast(en));
                    first = false;
                }
                for (i, c) in columns.iter().enumerate() {
                    if !first {
                        sql.push(", ");
                    }
                    first = false;
                    sql.push(&self.q(c))
                        .push(" = ")
                        .bind(Slot::Value(i), self.acast(c));
                }
                if first {
                    // Nothing to set.
                    return None;
                }
                sql.push(" WHERE ");
                self.key_eq(&mut sql);
            }
            StmtKind::SetEnabled => {
                let en = self.settings.enabled_column.as_ref()?;
                sql.push("UPDATE ")
                    .push(&self.accounts())
                    .push(" SET ")
                    .push(&self.q(en))
                    .push(" = ")
                    .bind(Slot::Enabled, self.acast(en))
                    .push(" WHERE ");
                self.key_eq(&mut sql);
            }
            StmtKind::AccountExists => {
                sql.push("SELECT 1 FROM ")
                    .push(&self.accounts())
                    .push(" WHERE ");
                self.key_eq(&mut sql);
                sql.push(" LIMIT 1");
            }
            StmtKind::AddMembership => {
                let m = self.settings.memberships.as_ref()?;
                let (a, e) = (&m.account_column, &m.entitlement_column);
                let mt = d.table(&m.table);
                sql.push("INSERT INTO ")
                    .push(&mt)
                    .push(" (")
                    .push(&self.q(a))
                    .push(", ")
                    .push(&self.q(e))
                    .push(") SELECT ")
                    .bind(Slot::Key, self.mcast(a))
                    .push(", ")
                    .bind(Slot::Entitlement, self.mcast(e))
                    .push(d.dual())
                    .push(" WHERE EXISTS (SELECT 1 FROM ")
                    .push(&self.accounts())
                    .push(" WHERE ");
                self.key_eq(&mut sql);
                sql.push(") AND NOT EXISTS (SELECT 1 FROM ")
                    .push(&mt)
                    .push(" WHERE ")
                    .push(&self.q(a))
                    .push(" = ")
                    .bind(Slot::Key, self.mcast(a))
                    .push(" AND ")
                    .push(&self.q(e))
                    .push(" = ")
                    .bind(Slot::Entitlement, self.mcast(e))
                    .push(")");
            }
            StmtKind::AddMemberships(n) => {
                // One statement for many rows: the rows as a derived table
                // (a UNION ALL of one-row selects, which every dialect
                // reads), each key cast once for the accounts table and once
                // for the memberships table, as the one-row statement does.
                let m = self.settings.memberships.as_ref()?;
                let (a, e) = (&m.account_column, &m.entitlement_column);
                let mt = d.table(&m.table);
                let key = &self.settings.key_column;
                sql.push("INSERT INTO ")
                    .push(&mt)
                    .push(" (")
                    .push(&self.q(a))
                    .push(", ")
                    .push(&self.q(e))
                    .push(") SELECT tenure_v.tenure_m, tenure_v.tenure_e FROM (");
                for i in 0..*n {
                    sql.push(if i == 0 {
                        "SELECT "
                    } else {
                        " UNION ALL SELECT "
                    })
                    .bind(Slot::RowKey(i), self.acast(key))
                    .push(" AS tenure_k, ")
                    .bind(Slot::RowKey(i), self.mcast(a))
                    .push(" AS tenure_m, ")
                    .bind(Slot::RowEntitlement(i), self.mcast(e))
                    .push(" AS tenure_e")
                    .push(d.dual());
                }
                sql.push(") tenure_v WHERE EXISTS (SELECT 1 FROM ")
                    .push(&self.accounts())
                    .push(" WHERE ")
                    .push(&self.q(key))
                    .push(" = tenure_v.tenure_k) AND NOT EXISTS (SELECT 1 FROM ")
                    .push(&mt)
                    .push(" WHERE ")
                    .push(&self.q(a))
                    .push(" = tenure_v.tenure_m AND ")
                    .push(&self.q(e))
                    .push(" = tenure_v.tenure_e)");
            }
            StmtKind::MissingAccounts(n) => {
                let key = &self.settings.key_column;
                sql.push("SELECT tenure_v.tenure_i FROM (");
                for i in 0..*n {
                    sql.push(if i == 0 {
                        "SELECT "
                    } else {
                        " UNION ALL SELECT "
                    })
                    .push(&format!("'{i}' AS tenure_i, "))
                    .bind(Slot::RowKey(i), self.acast(key))
                    .push(" AS tenure_k")
                    .push(d.dual());
                }
                sql.push(") tenure_v WHERE NOT EXISTS (SELECT 1 FROM ")
                    .push(&self.accounts())
                    .push(" WHERE ")
                    .push(&self.q(key))
                    .push(" = tenure_v.tenure_k)");
            }
            StmtKind::RemoveMembership => {
                let m = self.settings.memberships.as_ref()?;
                let (a, e) = (&m.account_column, &m.entitlement_column);
                sql.push("DELETE FROM ")
                    .push(&d.table(&m.table))
                    .push(" WHERE ")
                    .push(&self.q(a))
                    .push(" = ")
                    .bind(Slot::Key, self.mcast(a))
                    .push(" AND ")
                    .push(&self.q(e))
                    .push(" = ")
                    .bind(Slot::Entitlement, self.mcast(e));
            }
            StmtKind::DeleteMemberships => {
                let m = self.settings.memberships.as_ref()?;
                let a = &m.account_column;
                sql.push("DELETE FROM ")
                    .push(&d.table(&m.table))
                    .push(" WHERE ")
                    .push(&self.q(a))
                    .push(" = ")
                    .bind(Slot::Key, self.mcast(a));
            }
            StmtKind::DeleteAccount => {
                sql.push("DELETE FROM ")
                    .push(&self.accounts())
                    .push(" WHERE ");
                self.key_eq(&mut sql);
            }
            StmtKind::Transfer => {
                let t = self.settings.transfer.as_ref()?;
                let owner = &t.owner_column;
                let cast = self.schema.transfer.as_ref().and_then(|tt| tt.cast(owner));
                sql.push("UPDATE ")
                    .push(&d.table(&t.table))
                    .push(" SET ")
                    .push(&self.q(owner))
                    .push(" = ")
                    .bind(Slot::Target, cast)
                    .push(" WHERE ")
                    .push(&self.q(owner))
                    .push(" = ")
                    .bind(Slot::Key, cast);
            }
        }
        Some(sql.done())
    }
}

/// `SELECT key, enabled?, attribute columns… FROM accounts`, every value as text.
/// Returns the text and the attributes in column order.
pub(crate) fn read_accounts(d: Dialect, settings: &Settings) -> (String, Vec<String>) {
    let mut cols = vec![d.as_text(&d.ident(&settings.key_column))];
    if let Some(en) = &settings.enabled_column {
        cols.push(d.as_text(&d.ident(en)));
    }
    let mut attrs = Vec::new();
    for (attr, col) in &settings.attributes {
        cols.push(d.as_text(&d.ident(col)));
        attrs.push(attr.clone());
    }
    (
        format!(
            "SELECT {} FROM {}",
            cols.join(", "),
            d.table(&settings.accounts_table)
        ),
        attrs,
    )
}

/// `SELECT account, entitlement FROM memberships`, as text.
pub(crate) fn read_memberships(d: Dialect, settings: &Settings) -> Option<String> {
    let m = settings.memberships.as_ref()?;
    Some(format!(
        "SELECT {}, {} FROM {}",
        d.as_text(&d.ident(&m.account_column)),
        d.as_text(&d.ident(&m.entitlement_column)),
        d.table(&m.table)
    ))
}

/// `SELECT DISTINCT owner FROM transfer_table`, as text: the accounts that
/// still own data rows (the others read as archived).
pub(crate) fn read_owners(d: Dialect, settings: &Settings) -> Option<String> {
    let t = settings.transfer.as_ref()?;
    Some(format!(
        "SELECT DISTINCT {} FROM {}",
        d.as_text(&d.ident(&t.owner_column)),
        d.table(&t.table)
    ))
}

/// `CREATE TABLE IF NOT EXISTS` statements for the demo schema.
pub(crate) fn create_tables(d: Dialect, settings: &Settings) -> Vec<String> {
    let (key_type, attr_type, en_type, suffix) = match d {
        Dialect::Sqlite => ("TEXT", "TEXT", "INTEGER NOT NULL DEFAULT 1", ""),
        Dialect::Postgres => ("TEXT", "TEXT", "BOOLEAN NOT NULL DEFAULT TRUE", ""),
        Dialect::MySql => (
            "VARCHAR(255)",
            "TEXT",
            "TINYINT NOT NULL DEFAULT 1",
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        ),
    };
    let s = settings;
    let mut cols = vec![format!(
        "{} {key_type} NOT NULL PRIMARY KEY",
        d.ident(&s.key_column)
    )];
    if let Some(en) = &s.enabled_column {
        cols.push(format!("{} {en_type}", d.ident(en)));
    }
    for col in s.attributes.values() {
        cols.push(format!("{} {attr_type}", d.ident(col)));
    }
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {} ({}){suffix}",
        d.table(&settings.accounts_table),
        cols.join(", ")
    )];
    if let Some(m) = &s.memberships {
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {} ({a} {key_type} NOT NULL, {e} {key_type} NOT NULL, PRIMARY KEY ({a}, {e})){suffix}",
            d.table(&m.table),
            a = d.ident(&m.account_column),
            e = d.ident(&m.entitlement_column),
        ));
    }
    out
}
