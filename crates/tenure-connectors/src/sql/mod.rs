//! The SQL application connector (`kind = "sql"`): provisions an
//! application's own user table and membership table in SQLite, PostgreSQL or
//! MySQL/MariaDB.
//!
//! ```toml
//! [system.settings]
//! url = "sqlite://apps/crm.db"          # or url = { env = "CRM_DATABASE_URL" } / { file = "secrets/crm-url" }
//! accounts_table = "users"              # optionally schema.table
//! key_column = "username"
//! enabled_column = "active"             # optional: absent -> the system cannot disable
//! attribute_columns = { email = "email", display_name = "full_name" }
//! memberships_table = "user_groups"     # optional: absent -> no memberships
//! membership_account_column = "username"
//! membership_entitlement_column = "group_name"
//! max_connections = 4                   # optional, 1 to 100
//! connect_timeout_seconds = 30          # optional: how long to wait for a connection
//! ```
//!
//! What it does:
//! - [`Connector::apply`] runs a whole batch in one transaction with a
//!   savepoint per operation, so one failing operation fails alone; results
//!   are reported after the commit. Every operation is idempotent (see the
//!   trait), without relying on unique indexes in the application's tables.
//! - [`Connector::read_accounts`] reads accounts and memberships with two
//!   queries in one read transaction, every value converted to text in SQL
//!   (integers and booleans come back as strings, `NULL` as an absent
//!   attribute).
//! - The enabled flag is written as `1`/`0`, or `true`/`false` when the
//!   PostgreSQL column is boolean. It is read as disabled when its text is
//!   `0`, `false`, `f`, `no`, `n`, `off` or empty (case-insensitive), and as
//!   enabled otherwise, including `NULL`: an unknown state is treated as
//!   access held, so that a leaver's account is always disabled explicitly.
//! - Table and column names are used exactly as configured and quoted, so
//!   they are case-sensitive on PostgreSQL.
//!
//! What it deliberately does not do: create or alter the application's
//! tables (except [`create_demo_schema`], for tests and the demo), change
//! database-wide settings (journal mode, isolation level of other sessions),
//! store passwords or other secrets, or retry: a failed operation is reported
//! with [`ConnectorError::is_transient`] and the engine's queue retries it.

mod dialect;
mod schema;
mod settings;
mod url;

use crate::Connector;
use crate::error::{ConnectorError, OpLabel};
use dialect::{Builder, Dialect, Slot, Stmt, StmtKind};
use futures::TryStreamExt;
use schema::{EnabledRepr, Schema};
use settings::{Settings, UrlSetting};
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, ConnectOptions, Connection, Row};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use tenure_core::config::SystemConfig;
use tenure_core::state::{Account, AccountQuery, SystemAccounts};
use tenure_core::{AccountKey, Action, Capabilities, EntitlementName, Operation, SystemId};
use url::DbUrl;

/// The connector kind this module implements.
pub const KIND: &str = "sql";

/// The savepoint each operation runs under (after a failure in the batch).
const SAVEPOINT: &str = "SAVEPOINT tenure_op";
const NEXT_SAVEPOINT: &str = "RELEASE SAVEPOINT tenure_op; SAVEPOINT tenure_op";
const ROLLBACK_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT tenure_op";
/// The savepoint a whole batch runs under first.
const BATCH_SAVEPOINT: &str = "SAVEPOINT tenure_batch";
/// The fewest memberships to add that are sent as one statement.
const MIN_BULK: usize = 4;
/// The most rows in one many-row statement (SQLite allows 500 terms in a
/// compound select; three values per row stays far below every database's
/// limit on bound parameters).
const BULK_ROWS: usize = 200;
const BATCH_ROLLBACK: &str = "ROLLBACK TO SAVEPOINT tenure_batch";

/// Cap on cached statement texts per connector (distinct attribute sets).
const MAX_CACHED_STATEMENTS: usize = 512;

/// Checks a `sql` system's settings without connecting. Every problem is
/// returned, each naming its key (`settings.url`, `settings.attribute_columns` …).
pub fn validate(system: &SystemConfig) -> Result<(), Vec<String>> {
    Settings::parse(system).map(|_| ())
}

/// Creates the accounts and memberships tables the settings describe, if they
/// do not exist: the key column as primary key, the enabled column (integer,
/// boolean on PostgreSQL), one text column per attribute, and a membership
/// table keyed on (account, entitlement). For tests and the demo, whose
/// "applications" are SQLite files Tenure creates; real applications own
/// their schema.
pub async fn create_demo_schema(
    system: &SystemConfig,
    config_dir: &Path,
) -> Result<(), ConnectorError> {
    let c = SqlConnector::new(system, config_dir).await?;
    c.create_schema().await
}

/// The SQL connector for one system.
pub struct SqlConnector {
    system: SystemId,
    settings: Settings,
    dialect: Dialect,
    url: DbUrl,
    options: AnyConnectOptions,
    pool: AnyPool,
    loaded: Mutex<Option<Arc<Loaded>>>,
}

impl fmt::Debug for SqlConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlConnector")
            .field("system", &self.system)
            .field("dialect", &self.dialect.name())
            .field("url", &self.url)
            .field("accounts_table", &self.settings.accounts_table.to_string())
            .finish_non_exhaustive()
    }
}

/// The schema as read, with the statements built for it.
struct Loaded {
    schema: Schema,
    statements: Mutex<HashMap<StmtKind, Arc<Stmt>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why one operation failed inside the transaction.
enum OpFail {
    Db(sqlx::Error),
    Rejected(String),
}

impl From<sqlx::Error> for OpFail {
    fn from(e: sqlx::Error) -> Self {
        OpFail::Db(e)
    }
}

/// An operation checked against the settings and schema, ready to run.
enum Prepared<'o> {
    Create {
        columns: Vec<String>,
        values: Vec<&'o str>,
    },
    Update {
        columns: Vec<String>,
        values: Vec<&'o str>,
    },
    SetEnabled(bool),
    AddMembership(&'o str),
    RemoveMembership(&'o str),
    Delete,
    /// Give the account's data rows to this account.
    Transfer(String),
}

/// What binding needs besides the statement.
struct BindValues<'o> {
    key: &'o str,
    entitlement: &'o str,
    values: &'o [&'o str],
    enabled: bool,
    repr: EnabledRepr,
    target: &'o str,
    /// The (key, entitlement) rows of a many-row statement.
    rows: &'o [(&'o str, &'o str)],
}

fn bind<'q>(stmt: &Stmt, v: &BindValues<'q>) -> sqlx::query::Query<'q, Any, AnyArguments> {
    let mut q = sqlx::query(AssertSqlSafe(Arc::clone(&stmt.sql)));
    for slot in &stmt.slots {
        q = match *slot {
            Slot::Key => q.bind(v.key),
            Slot::Entitlement => q.bind(v.entitlement),
            Slot::Value(i) => q.bind(v.values.get(i).copied().unwrap_or_default()),
            Slot::Target => q.bind(v.target),
            Slot::RowKey(i) => q.bind(v.rows.get(i).map_or("", |r| r.0)),
            Slot::RowEntitlement(i) => q.bind(v.rows.get(i).map_or("", |r| r.1)),
            Slot::Enabled => match v.repr {
                EnabledRepr::Int => q.bind(i64::from(v.enabled)),
                EnabledRepr::Bool => q.bind(v.enabled),
                EnabledRepr::Text => q.bind(if v.enabled { "1" } else { "0" }),
            },
        };
    }
    q
}

/// Accounts decoded row by row as they are read (a big system's rows are
/// never all held at once, beside the accounts made of them).
struct Decoder<'a> {
    connector: &'a SqlConnector,
    attrs: &'a [String],
    first_attr: usize,
    out: SystemAccounts,
    /// Accounts that own data rows (systems that transfer data): the others have nothing left to archive.
    owners: BTreeSet<String>,
    unusable: usize,
    duplicates: usize,
    unusable_memberships: usize,
}

impl<'a> Decoder<'a> {
    fn new(connector: &'a SqlConnector, attrs: &'a [String]) -> Self {
        Decoder {
            connector,
            attrs,
            first_attr: if connector.settings.enabled_column.is_some() {
                2
            } else {
                1
            },
            out: SystemAccounts::default(),
            owners: BTreeSet::new(),
            unusable: 0,
            duplicates: 0,
            unusable_memberships: 0,
        }
    }

    fn err(&self, e: sqlx::Error) -> ConnectorError {
        self.connector.db_error("reading accounts", e)
    }

    /// One row of the accounts query.
    fn account(&mut self, row: &sqlx::any::AnyRow) -> Result<(), ConnectorError> {
        let key: Option<String> = row.try_get(0).map_err(|e| self.err(e))?;
        let Some(key) = key.and_then(|k| AccountKey::new(k).ok()) else {
            self.unusable += 1;
            return Ok(());
        };
        let enabled = if self.connector.settings.enabled_column.is_some() {
            let v: Option<String> = row.try_get(1).map_err(|e| self.err(e))?;
            parse_enabled(v.as_deref())
        } else {
            true
        };
        let mut attributes = std::collections::BTreeMap::new();
        for (i, attr) in self.attrs.iter().enumerate() {
            let v: Option<String> = row.try_get(self.first_attr + i).map_err(|e| self.err(e))?;
            if let Some(v) = v {
                attributes.insert(attr.clone(), v);
            }
        }
        if self.out.accounts.contains_key(&key) {
            self.duplicates += 1;
            return Ok(());
        }
        self.out.accounts.insert(
            key.clone(),
            Account {
                key,
                attributes,
                enabled,
                entitlements: BTreeSet::new(),
                archived: false,
            },
        );
        Ok(())
    }

    /// One row of the memberships query (after every account row).
    fn membership(&mut self, row: &sqlx::any::AnyRow) -> Result<(), ConnectorError> {
        let a: Option<String> = row.try_get(0).map_err(|e| self.err(e))?;
        let e: Option<String> = row.try_get(1).map_err(|e| self.err(e))?;
        let account = a.and_then(|a| AccountKey::new(a).ok());
        let entitlement = e.and_then(|e| EntitlementName::new(e).ok());
        match (account, entitlement) {
            (Some(a), Some(e)) => {
                // Memberships of accounts that do not exist are not Tenure's to see.
                if let Some(acct) = self.out.accounts.get_mut(&a) {
                    acct.entitlements.insert(e);
                }
            }
            _ => self.unusable_memberships += 1,
        }
        Ok(())
    }

    /// One row of the data owners query.
    fn owner(&mut self, row: &sqlx::any::AnyRow) -> Result<(), ConnectorError> {
        let o: Option<String> = row.try_get(0).map_err(|e| self.err(e))?;
        if let Some(o) = o {
            self.owners.insert(o);
        }
        Ok(())
    }

    fn finish(mut self) -> SystemAccounts {
        if self.connector.settings.transfer.is_some() {
            // An account that owns no data rows has nothing left to archive.
            for (k, a) in self.out.accounts.iter_mut() {
                a.archived = !self.owners.contains(k.as_str());
            }
        }
        if self.unusable + self.duplicates + self.unusable_memberships > 0 {
            tracing::warn!(
                system = %self.connector.system,
                unusable_keys = self.unusable,
                duplicate_keys = self.duplicates,
                unusable_memberships = self.unusable_memberships,
                "some rows were skipped: keys or entitlements that are NULL, empty, over 256 bytes or hold control characters, and repeated keys (the first row is used)"
            );
        }
        self.out
    }
}

/// Reads an enabled flag's text (see the module documentation).
fn parse_enabled(v: Option<&str>) -> bool {
    match v {
        None => true,
        Some(s) => !matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "f" | "no" | "n" | "off" | ""
        ),
    }
}

impl SqlConnector {
    /// Builds the connector: checks the settings, resolves the URL (an
    /// environment variable or a file relative to `config_dir`; a relative
    /// SQLite path is relative to `config_dir` too, and the file is created
    /// at first connection if missing) and makes a connection pool that
    /// connects lazily. Needs a Tokio runtime.
    pub async fn new(system: &SystemConfig, config_dir: &Path) -> Result<Self, ConnectorError> {
        let id = system.id.clone();
        let settings = Settings::parse(system).map_err(|problems| ConnectorError::Settings {
            system: id.clone(),
            problems,
        })?;
        let (raw, origin) = match &settings.url {
            UrlSetting::Inline(u) => (u.clone(), "settings.url".to_owned()),
            UrlSetting::Env(var) => {
                let v = std::env::var(var).map_err(|e| ConnectorError::Secret {
                    system: id.clone(),
                    reason: match e {
                        std::env::VarError::NotPresent => {
                            format!("settings.url: environment variable {var} is not set")
                        }
                        std::env::VarError::NotUnicode(_) => {
                            format!("settings.url: environment variable {var} is not valid UTF-8")
                        }
                    },
                })?;
                (v.trim().to_owned(), format!("environment variable {var}"))
            }
            UrlSetting::File(file) => {
                let path = config_dir.join(file);
                let v = std::fs::read_to_string(&path).map_err(|e| ConnectorError::Secret {
                    system: id.clone(),
                    reason: format!("settings.url: cannot read {}: {e}", path.display()),
                })?;
                (v.trim().to_owned(), format!("file {}", path.display()))
            }
        };
        let dialect = settings::check_url_text(&raw, &format!("the database URL in {origin}"))
            .map_err(|reason| ConnectorError::Secret {
                system: id.clone(),
                reason,
            })?;
        let resolved = if dialect == Dialect::Sqlite {
            url::resolve_sqlite(&raw, config_dir).map_err(|reason| ConnectorError::Settings {
                system: id.clone(),
                problems: vec![format!("settings.url: {reason}")],
            })?
        } else {
            raw
        };
        let url = DbUrl::new(resolved);
        sqlx::any::install_default_drivers();
        let options =
            AnyConnectOptions::from_str(url.expose()).map_err(|e| ConnectorError::Settings {
                system: id.clone(),
                problems: vec![format!(
                    "the database URL {} is invalid: {e}",
                    url.redacted()
                )],
            })?;
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.connect_timeout)
            .connect_lazy_with(options.clone());
        Ok(SqlConnector {
            system: id,
            settings,
            dialect,
            url,
            options,
            pool,
            loaded: Mutex::new(None),
        })
    }

    /// Creates the tables the settings describe if they do not exist (see
    /// [`create_demo_schema`]).
    pub async fn create_schema(&self) -> Result<(), ConnectorError> {
        for sql in dialect::create_tables(self.dialect, &self.settings) {
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&self.pool)
                .await
                .map_err(|e| self.db_error("creating the demo tables", e))?;
        }
        *lock(&self.loaded) = None;
        Ok(())
    }

    /// The dialect's name (`SQLite`, `PostgreSQL`, `MySQL/MariaDB`).
    pub fn dialect_name(&self) -> &'static str {
        self.dialect.name()
    }

    /// Closes the connection pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn db_error(&self, context: &'static str, e: sqlx::Error) -> ConnectorError {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
                ConnectorError::Connect {
                    system: self.system.clone(),
                    target: self.url.redacted(),
                    source: Arc::new(e),
                }
            }
            e => ConnectorError::Query {
                system: self.system.clone(),
                context,
                source: Arc::new(e),
            },
        }
    }

    async fn load(&self) -> Result<Arc<Loaded>, ConnectorError> {
        let schema = schema::load(&self.pool, self.dialect, &self.settings)
            .await
            .map_err(|e| self.db_error("reading the table layout", e))?
            .map_err(|problems| ConnectorError::Schema {
                system: self.system.clone(),
                problems,
            })?;
        let loaded = Arc::new(Loaded {
            schema,
            statements: Mutex::new(HashMap::new()),
        });
        *lock(&self.loaded) = Some(Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Turns rows of `read_accounts`' query (key, enabled?, attributes…) and
    /// of the memberships query (account, entitlement) into accounts.
    fn decode_accounts(
        &self,
        rows: &[sqlx::any::AnyRow],
        attrs: &[String],
        membership_rows: &[sqlx::any::AnyRow],
        owner_rows: &[sqlx::any::AnyRow],
    ) -> Result<SystemAccounts, ConnectorError> {
        let mut d = Decoder::new(self, attrs);
        for row in rows {
            d.account(row)?;
        }
        for row in membership_rows {
            d.membership(row)?;
        }
        for row in owner_rows {
            d.owner(row)?;
        }
        Ok(d.finish())
    }

    async fn loaded(&self) -> Result<Arc<Loaded>, ConnectorError> {
        let cached = lock(&self.loaded).clone();
        match cached {
            Some(l) => Ok(l),
            None => self.load().await,
        }
    }

    fn statement(&self, loaded: &Loaded, kind: StmtKind) -> Option<Arc<Stmt>> {
        let mut cache = lock(&loaded.statements);
        if let Some(s) = cache.get(&kind) {
            return Some(Arc::clone(s));
        }
        let stmt = Arc::new(
            Builder {
                dialect: self.dialect,
                settings: &self.settings,
                schema: &loaded.schema,
            }
            .build(&kind)?,
        );
        if cache.len() >= MAX_CACHED_STATEMENTS {
            cache.clear();
        }
        cache.insert(kind, Arc::clone(&stmt));
        Some(stmt)
    }

    /// Maps an operation's attributes to columns, refusing what cannot be written.
    fn columns<'o>(
        &self,
        loaded: &Loaded,
        attrs: impl Iterator<Item = (&'o String, &'o str)>,
    ) -> Result<(Vec<String>, Vec<&'o str>), String> {
        let mut columns: Vec<String> = Vec::new();
        let mut values = Vec::new();
        for (attr, value) in attrs {
            let Some(col) = self.settings.column_for(attr) else {
                return Err(format!(
                    "attribute {attr:?} has no column (add it to settings.attribute_columns)"
                ));
            };
            let clashes = |other: &str| {
                if self.dialect.folds_case() {
                    col.eq_ignore_ascii_case(other)
                } else {
                    col == other
                }
            };
            if clashes(&self.settings.key_column)
                || self.settings.enabled_column.as_deref().is_some_and(clashes)
                || columns.iter().any(|c| clashes(c))
            {
                return Err(format!(
                    "attribute {attr:?} maps to column {col}, which is already written by this operation"
                ));
            }
            if !loaded.schema.accounts.has(col) {
                return Err(format!(
                    "attribute {attr:?}: table {} has no column {col}",
                    self.settings.accounts_table
                ));
            }
            if value.contains('\0') {
                return Err(format!(
                    "the value of attribute {attr:?} contains a NUL character, which SQL databases do not store reliably"
                ));
            }
            columns.push(col.to_owned());
            values.push(value);
        }
        Ok((columns, values))
    }

    /// Checks an operation against the settings and schema without touching the database.
    fn prepare<'o>(&self, loaded: &Loaded, op: &'o Operation) -> Result<Prepared<'o>, String> {
        if op.system != self.system {
            return Err(format!(
                "the operation is for system {}, not {}",
                op.system, self.system
            ));
        }
        let no_memberships = || {
            "the system has no memberships_table in its settings, so it has no memberships"
                .to_owned()
        };
        Ok(match &op.action {
            Action::CreateAccount { attributes } => {
                let (columns, values) =
                    self.columns(loaded, attributes.iter().map(|(k, v)| (k, v.as_str())))?;
                Prepared::Create { columns, values }
            }
            Action::UpdateAccount { changes } => {
                let (columns, values) =
                    self.columns(loaded, changes.iter().map(|(k, c)| (k, c.after.as_str())))?;
                Prepared::Update { columns, values }
            }
            Action::EnableAccount | Action::DisableAccount => {
                if self.settings.enabled_column.is_none() {
                    return Err("the system has no enabled_column in its settings, so it cannot enable or disable accounts".to_owned());
                }
                Prepared::SetEnabled(matches!(op.action, Action::EnableAccount))
            }
            Action::AddMembership { entitlement } => {
                if self.settings.memberships.is_none() {
                    return Err(no_memberships());
                }
                Prepared::AddMembership(entitlement.as_str())
            }
            Action::RemoveMembership { entitlement } => {
                if self.settings.memberships.is_none() {
                    return Err(no_memberships());
                }
                Prepared::RemoveMembership(entitlement.as_str())
            }
            Action::DeleteAccount => Prepared::Delete,
            Action::ArchiveAccount { to } => {
                let Some(t) = &self.settings.transfer else {
                    return Err("the system has no transfer_table in its settings, so it cannot archive data".to_owned());
                };
                let Some(target) = t.to.as_deref().or(to.as_ref().map(AccountKey::as_str)) else {
                    return Err("no account to give the data to: the operation names none and settings.archive_to is not set".to_owned());
                };
                if target == op.account.as_str() {
                    return Err(format!(
                        "the data of {} cannot be given to the same account",
                        op.account
                    ));
                }
                if target.contains('\0') {
                    return Err("the receiving account's key contains a NUL character".to_owned());
                }
                Prepared::Transfer(target.to_owned())
            }
        })
    }

    /// Runs one prepared operation on the transaction's connection.
    async fn run(
        &self,
        conn: &mut AnyConnection,
        loaded: &Loaded,
        key: &str,
        prepared: &Prepared<'_>,
    ) -> Result<(), OpFail> {
        let missing = |what: &str| {
            OpFail::Rejected(format!(
                "no account {key:?} in table {} ({what})",
                self.settings.accounts_table
            ))
        };
        let stmt = |kind: StmtKind| {
            self.statement(loaded, kind).ok_or_else(|| {
                OpFail::Rejected("the settings do not allow this operation".to_owned())
            })
        };
        let mut v = BindValues {
            key,
            entitlement: "",
            values: &[],
            enabled: true,
            repr: loaded.schema.enabled,
            target: "",
            rows: &[],
        };
        match prepared {
            Prepared::Create { columns, values } => {
                v.values = values;
                let insert = stmt(StmtKind::CreateInsert(columns.clone()))?;
                let r = bind(&insert, &v).execute(&mut *conn).await?;
                if r.rows_affected() == 0 {
                    // The key exists: make the row match (idempotent replay).
                    if let Some(update) =
                        self.statement(loaded, StmtKind::CreateUpdate(columns.clone()))
                    {
                        bind(&update, &v).execute(&mut *conn).await?;
                    }
                }
            }
            Prepared::Update { columns, values } => {
                v.values = values;
                let Some(update) = self.statement(loaded, StmtKind::Update(columns.clone())) else {
                    return Ok(()); // no changes
                };
                let r = bind(&update, &v).execute(&mut *conn).await?;
                if r.rows_affected() == 0 {
                    return Err(missing("nothing to update"));
                }
            }
            Prepared::SetEnabled(enabled) => {
                v.enabled = *enabled;
                let r = bind(&*stmt(StmtKind::SetEnabled)?, &v)
                    .execute(&mut *conn)
                    .await?;
                if r.rows_affected() == 0 {
                    return Err(missing(if *enabled {
                        "nothing to enable"
                    } else {
                        "nothing to disable"
                    }));
                }
            }
            Prepared::AddMembership(entitlement) => {
                v.entitlement = entitlement;
                let r = bind(&*stmt(StmtKind::AddMembership)?, &v)
                    .execute(&mut *conn)
                    .await?;
                if r.rows_affected() == 0 {
                    // Either held already (fine) or the account does not exist.
                    let exists = bind(&*stmt(StmtKind::AccountExists)?, &v)
                        .fetch_optional(&mut *conn)
                        .await?
                        .is_some();
                    if !exists {
                        return Err(missing("a membership needs an account"));
                    }
                }
            }
            Prepared::RemoveMembership(entitlement) => {
                v.entitlement = entitlement;
                bind(&*stmt(StmtKind::RemoveMembership)?, &v)
                    .execute(&mut *conn)
                    .await?;
            }
            Prepared::Delete => {
                // Both statements first: nothing may be refused after a change.
                let memberships = match self.settings.memberships {
                    Some(_) => Some(stmt(StmtKind::DeleteMemberships)?),
                    None => None,
                };
                let account = stmt(StmtKind::DeleteAccount)?;
                if let Some(m) = memberships {
                    bind(&m, &v).execute(&mut *conn).await?;
                }
                bind(&account, &v).execute(&mut *conn).await?;
            }
            Prepared::Transfer(target) => {
                // The receiving account must exist: data is never given to
                // nobody. Checked before any change, so a refusal changes nothing.
                let exists = stmt(StmtKind::AccountExists)?;
                let transfer = stmt(StmtKind::Transfer)?;
                let to = BindValues { key: target, ..v };
                let target = target.as_str();
                if bind(&exists, &to)
                    .fetch_optional(&mut *conn)
                    .await?
                    .is_none()
                {
                    return Err(OpFail::Rejected(format!(
                        "the account {target:?} that receives the data is not in table {}",
                        self.settings.accounts_table
                    )));
                }
                v.target = target;
                // Rows already given away are not there any more: a replay changes nothing.
                bind(&transfer, &v).execute(&mut *conn).await?;
            }
        }
        Ok(())
    }

    /// Every operation fails with an error made from its label.
    fn fail_all(
        &self,
        ops: &[Operation],
        make: impl Fn(OpLabel) -> ConnectorError,
    ) -> Vec<Result<(), ConnectorError>> {
        ops.iter().map(|op| Err(make(OpLabel::of(op)))).collect()
    }

    fn not_applied(
        &self,
        op: &Operation,
        reason: &'static str,
        source: &Arc<sqlx::Error>,
    ) -> ConnectorError {
        ConnectorError::NotApplied {
            system: self.system.clone(),
            op: OpLabel::of(op),
            reason,
            source: Arc::clone(source),
        }
    }

    fn rejected(&self, op: &Operation, reason: String) -> ConnectorError {
        ConnectorError::Rejected {
            system: self.system.clone(),
            op: OpLabel::of(op),
            reason,
        }
    }

    fn failed(&self, op: &Operation, fail: OpFail) -> ConnectorError {
        match fail {
            OpFail::Db(e) => ConnectorError::Operation {
                system: self.system.clone(),
                op: OpLabel::of(op),
                source: Arc::new(e),
            },
            OpFail::Rejected(reason) => self.rejected(op, reason),
        }
    }

    /// The results when the transaction broke while running `ops[failed]`:
    /// that operation keeps its own error (if it has one), every other
    /// operation was not applied.
    fn broken(
        &self,
        ops: &[Operation],
        failed: usize,
        own: Option<ConnectorError>,
        cause: &Arc<sqlx::Error>,
    ) -> Vec<Result<(), ConnectorError>> {
        tracing::warn!(system = %self.system, ops = ops.len(), error = %cause, "batch rolled back");
        let mut own = own;
        ops.iter()
            .enumerate()
            .map(|(i, op)| match own.take().filter(|_| i == failed) {
                Some(e) => Err(e),
                None => Err(self.not_applied(op, "the batch's transaction was rolled back", cause)),
            })
            .collect()
    }

    /// The run of memberships to add that starts at `start`: consecutive
    /// operations, each a valid `add_membership`, no pair twice, at most
    /// [`BULK_ROWS`]. Returns (index, key, entitlement) of each.
    fn membership_run<'o>(
        &self,
        ops: &'o [Operation],
        prepared: &[Result<Prepared<'o>, String>],
        start: usize,
    ) -> Vec<(usize, &'o str, &'o str)> {
        let mut run: Vec<(usize, &'o str, &'o str)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (idx, (op, p)) in ops.iter().zip(prepared).enumerate().skip(start) {
            match p {
                Ok(Prepared::AddMembership(e)) if run.len() < BULK_ROWS => {
                    if !seen.insert((op.account.as_str(), *e)) {
                        break;
                    }
                    run.push((idx, op.account.as_str(), *e));
                }
                _ => break,
            }
        }
        run
    }

    /// Adds these memberships with one statement (each only where the
    /// account exists and the membership is not held yet) and returns the
    /// positions in `run` of those whose account does not exist. When every
    /// row was inserted, no second statement is needed.
    async fn add_memberships(
        &self,
        conn: &mut AnyConnection,
        loaded: &Loaded,
        run: &[(usize, &str, &str)],
    ) -> Result<std::collections::HashSet<usize>, sqlx::Error> {
        let rows: Vec<(&str, &str)> = run.iter().map(|(_, k, e)| (*k, *e)).collect();
        let v = BindValues {
            key: "",
            entitlement: "",
            values: &[],
            enabled: true,
            repr: loaded.schema.enabled,
            target: "",
            rows: &rows,
        };
        let protocol = |what: &str| sqlx::Error::Protocol(format!("no statement to {what}"));
        let insert = self
            .statement(loaded, StmtKind::AddMemberships(rows.len()))
            .ok_or_else(|| protocol("add memberships"))?;
        let added = bind(&insert, &v).execute(&mut *conn).await?.rows_affected();
        if added == rows.len() as u64 {
            return Ok(std::collections::HashSet::new());
        }
        // Some were held already (fine) or have no account: ask which.
        let check = self
            .statement(loaded, StmtKind::MissingAccounts(rows.len()))
            .ok_or_else(|| protocol("find missing accounts"))?;
        let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(Arc::clone(&check.sql)));
        for slot in &check.slots {
            if let Slot::RowKey(i) = *slot {
                q = q.bind(rows.get(i).map_or("", |r| r.0));
            }
        }
        let missing = q.fetch_all(&mut *conn).await?;
        Ok(missing.iter().filter_map(|i| i.parse().ok()).collect())
    }

    /// Runs the batch without savepoints. `Ok(None)` when a database error
    /// occurred and everything was rolled back to the batch savepoint (the
    /// caller then runs the batch again, operation by operation).
    async fn run_optimistic(
        &self,
        conn: &mut AnyConnection,
        loaded: &Loaded,
        ops: &[Operation],
        prepared: &[Result<Prepared<'_>, String>],
    ) -> Result<Option<Vec<Option<ConnectorError>>>, Vec<Result<(), ConnectorError>>> {
        if let Err(e) = sqlx::raw_sql(BATCH_SAVEPOINT).execute(&mut *conn).await {
            return Err(self.broken(ops, usize::MAX, None, &Arc::new(e)));
        }
        let mut outcome: Vec<Option<ConnectorError>> = Vec::with_capacity(ops.len());
        let mut i = 0;
        while let (Some(op), Some(p)) = (ops.get(i), prepared.get(i)) {
            // A run of memberships to add: many rows per statement, in order
            // with the rest of the batch.
            let run = self.membership_run(ops, prepared, i);
            if run.len() >= MIN_BULK {
                match self.add_memberships(conn, loaded, &run).await {
                    Ok(missing) => {
                        for (n, (idx, key, _)) in run.iter().enumerate() {
                            let op = &ops[*idx];
                            outcome.push(missing.contains(&n).then(|| {
                                self.rejected(
                                    op,
                                    format!(
                                        "no account {key:?} in table {} (a membership needs an account)",
                                        self.settings.accounts_table
                                    ),
                                )
                            }));
                        }
                        i += run.len();
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(system = %self.system, error = %e, "adding memberships many at a time failed; running the batch again one by one");
                        if let Err(e2) = sqlx::raw_sql(BATCH_ROLLBACK).execute(&mut *conn).await {
                            return Err(self.broken(ops, i, None, &Arc::new(e2)));
                        }
                        return Ok(None);
                    }
                }
            }
            let p = match p {
                Ok(p) => p,
                Err(reason) => {
                    outcome.push(Some(self.rejected(op, reason.clone())));
                    i += 1;
                    continue;
                }
            };
            match self.run(conn, loaded, op.account.as_str(), p).await {
                Ok(()) => outcome.push(None),
                // Refusals happen only after statements that changed nothing.
                Err(OpFail::Rejected(reason)) => outcome.push(Some(self.rejected(op, reason))),
                Err(OpFail::Db(e)) => {
                    tracing::debug!(system = %self.system, error = %e, "an operation failed; running the batch again with a savepoint per operation");
                    if let Err(e2) = sqlx::raw_sql(BATCH_ROLLBACK).execute(&mut *conn).await {
                        tracing::debug!(system = %self.system, error = %e2, "rollback to the batch savepoint failed");
                        let cause = Arc::new(e);
                        let own = ConnectorError::Operation {
                            system: self.system.clone(),
                            op: OpLabel::of(op),
                            source: Arc::clone(&cause),
                        };
                        return Err(self.broken(ops, i, Some(own), &cause));
                    }
                    return Ok(None);
                }
            }
            i += 1;
        }
        Ok(Some(outcome))
    }

    /// Runs the batch with a savepoint per operation, so that each failing
    /// operation is undone alone.
    async fn run_each(
        &self,
        conn: &mut AnyConnection,
        loaded: &Loaded,
        ops: &[Operation],
        prepared: &[Result<Prepared<'_>, String>],
    ) -> Result<Vec<Option<ConnectorError>>, Vec<Result<(), ConnectorError>>> {
        let mut outcome = Vec::with_capacity(ops.len());
        let mut savepoint_open = false;
        for (i, (op, p)) in ops.iter().zip(prepared).enumerate() {
            let p = match p {
                Ok(p) => p,
                Err(reason) => {
                    outcome.push(Some(self.rejected(op, reason.clone())));
                    continue;
                }
            };
            let sp = if savepoint_open {
                NEXT_SAVEPOINT
            } else {
                SAVEPOINT
            };
            if let Err(e) = sqlx::raw_sql(sp).execute(&mut *conn).await {
                return Err(self.broken(ops, i, None, &Arc::new(e)));
            }
            savepoint_open = true;
            match self.run(conn, loaded, op.account.as_str(), p).await {
                Ok(()) => outcome.push(None),
                Err(fail) => {
                    let err = self.failed(op, fail);
                    if let Err(e) = sqlx::raw_sql(ROLLBACK_SAVEPOINT).execute(&mut *conn).await {
                        // The transaction itself is gone (connection lost, or
                        // the server rolled it all back, as MySQL does on a
                        // deadlock).
                        tracing::debug!(system = %self.system, error = %e, "rollback to savepoint failed");
                        let cause = match &err {
                            ConnectorError::Operation { source, .. } => Arc::clone(source),
                            _ => Arc::new(e),
                        };
                        return Err(self.broken(ops, i, Some(err), &cause));
                    }
                    outcome.push(Some(err));
                }
            }
        }
        Ok(outcome)
    }

    async fn apply_batch(&self, ops: &[Operation]) -> Vec<Result<(), ConnectorError>> {
        let loaded = match self.loaded().await {
            Ok(l) => l,
            Err(ConnectorError::Schema { problems, .. }) => {
                return self.fail_all(ops, |_| ConnectorError::Schema {
                    system: self.system.clone(),
                    problems: problems.clone(),
                });
            }
            Err(e) => {
                let source = match &e {
                    ConnectorError::Connect { source, .. }
                    | ConnectorError::Query { source, .. } => Arc::clone(source),
                    other => Arc::new(sqlx::Error::Protocol(other.to_string())),
                };
                return ops
                    .iter()
                    .map(|op| {
                        Err(self.not_applied(op, "the table layout could not be read", &source))
                    })
                    .collect();
            }
        };
        let prepared: Vec<Result<Prepared<'_>, String>> =
            ops.iter().map(|op| self.prepare(&loaded, op)).collect();
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => {
                let source = Arc::new(e);
                return ops
                    .iter()
                    .map(|op| Err(self.not_applied(op, "no transaction could be started", &source)))
                    .collect();
            }
        };
        // Most batches succeed whole: run them with no savepoint per
        // operation (half the round trips). When an operation fails, undo
        // the batch and run it again with a savepoint per operation; that
        // second run's results are the ones reported.
        let outcome = match self.run_optimistic(&mut tx, &loaded, ops, &prepared).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => self.run_each(&mut tx, &loaded, ops, &prepared).await,
            Err(results) => Err(results),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(results) => {
                let _ = tx.rollback().await;
                return results;
            }
        };
        match tx.commit().await {
            Ok(()) => {
                let failed = outcome.iter().filter(|o| o.is_some()).count();
                tracing::debug!(system = %self.system, ops = ops.len(), failed, "batch committed");
                outcome
                    .into_iter()
                    .map(|o| match o {
                        None => Ok(()),
                        Some(e) => Err(e),
                    })
                    .collect()
            }
            Err(e) => {
                let cause = Arc::new(e);
                tracing::warn!(system = %self.system, ops = ops.len(), error = %cause, "commit failed");
                outcome
                    .into_iter()
                    .zip(ops)
                    .map(|(o, op)| match o {
                        Some(own) => Err(own),
                        None => Err(self.not_applied(op, "the batch's commit failed", &cause)),
                    })
                    .collect()
            }
        }
    }
}

#[async_trait::async_trait]
impl Connector for SqlConnector {
    fn system(&self) -> &SystemId {
        &self.system
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read: true,
            create: true,
            update: true,
            disable: self.settings.enabled_column.is_some(),
            delete: true,
            memberships: self.settings.memberships.is_some(),
            last_login: false,
            archive: self.settings.transfer.is_some(),
            archive_to_manager: self
                .settings
                .transfer
                .as_ref()
                .is_some_and(|t| t.to.is_none()),
        }
    }

    async fn check(&self) -> Result<(), ConnectorError> {
        // A direct connection first, so that an unreachable server is reported
        // as such at once (the pool would keep retrying until its timeout).
        let connect = tokio::time::timeout(self.settings.connect_timeout, self.options.connect());
        let conn = match connect.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(ConnectorError::Connect {
                    system: self.system.clone(),
                    target: self.url.redacted(),
                    source: Arc::new(e),
                });
            }
            Err(_) => {
                return Err(ConnectorError::Connect {
                    system: self.system.clone(),
                    target: self.url.redacted(),
                    source: Arc::new(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no connection within {} s",
                            self.settings.connect_timeout.as_secs()
                        ),
                    ))),
                });
            }
        };
        let _ = conn.close().await;
        self.load().await.map(|_| ())
    }

    async fn read_accounts(&self) -> Result<SystemAccounts, ConnectorError> {
        self.loaded().await?;
        let d = self.dialect;
        let (accounts_sql, attrs) = dialect::read_accounts(d, &self.settings);
        let memberships_sql = dialect::read_memberships(d, &self.settings);
        let err = |e| self.db_error("reading accounts", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        if d == Dialect::Postgres {
            // One snapshot for both queries.
            sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        // Decoded as the rows come: never every row and every account at once.
        let mut decoder = Decoder::new(self, &attrs);
        {
            let mut rows = sqlx::query(AssertSqlSafe(accounts_sql)).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(err)? {
                decoder.account(&row)?;
            }
        }
        if let Some(sql) = memberships_sql {
            let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(err)? {
                decoder.membership(&row)?;
            }
        }
        if let Some(sql) = dialect::read_owners(d, &self.settings) {
            let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(err)? {
                decoder.owner(&row)?;
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(decoder.finish())
    }

    async fn read_accounts_matching(
        &self,
        query: &AccountQuery,
    ) -> Result<SystemAccounts, ConnectorError> {
        if query.is_empty() {
            return Ok(SystemAccounts::default());
        }
        let loaded = self.loaded().await?;
        let d = self.dialect;
        let (select, attrs) = dialect::read_accounts(d, &self.settings);
        let err = |e| self.db_error("reading accounts", e);
        let key_col = d.ident(&self.settings.key_column);
        let key_cast = loaded.schema.accounts.cast(&self.settings.key_column);
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let mut rows = Vec::new();
        // Exact keys first, through the key's index.
        let exact: Vec<String> = query.keys.iter().map(|k| k.as_str().to_owned()).collect();
        for chunk in exact.chunks(MATCH_CHUNK) {
            let sql = format!(
                "{select} WHERE {key_col} IN ({})",
                placeholders(d, chunk.len(), key_cast)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for k in chunk {
                q = q.bind(k.as_str());
            }
            rows.extend(q.fetch_all(&mut *conn).await.map_err(err)?);
        }
        // Keys not found as given are looked for ignoring case, and the
        // correlation attribute's values likewise (correlation ignores case).
        let mut found: BTreeSet<String> = BTreeSet::new();
        for row in &rows {
            if let Ok(Some(k)) = row.try_get::<Option<String>, _>(0) {
                found.insert(k.trim().to_lowercase());
            }
        }
        let missing: Vec<String> = query
            .normalised_keys()
            .into_iter()
            .filter(|k| !found.contains(k))
            .collect();
        let mut folded: Vec<(String, Vec<String>)> = Vec::new();
        if !missing.is_empty() {
            folded.push((d.as_text(&key_col), missing));
        }
        if let Some((attr, _)) = &query.attribute
            && let Some(col) = self.settings.attributes.get(attr)
        {
            let values: Vec<String> = query.normalised_values().into_iter().collect();
            if !values.is_empty() {
                folded.push((d.as_text(&d.ident(col)), values));
            }
        }
        for (expr, values) in &folded {
            for chunk in values.chunks(MATCH_CHUNK) {
                let sql = format!(
                    "{select} WHERE LOWER(TRIM({expr})) IN ({})",
                    placeholders(d, chunk.len(), None)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for v in chunk {
                    q = q.bind(v.as_str());
                }
                rows.extend(q.fetch_all(&mut *conn).await.map_err(err)?);
            }
        }
        let mut keys: BTreeSet<String> = BTreeSet::new();
        for row in &rows {
            if let Ok(Some(k)) = row.try_get::<Option<String>, _>(0) {
                keys.insert(k);
            }
        }
        let mut membership_rows = Vec::new();
        if let Some(m) = &self.settings.memberships {
            let base = dialect::read_memberships(d, &self.settings).unwrap_or_default();
            let account_col = d.ident(&m.account_column);
            let cast = loaded
                .schema
                .memberships
                .as_ref()
                .and_then(|s| s.cast(&m.account_column));
            for chunk in keys.iter().collect::<Vec<_>>().chunks(MATCH_CHUNK) {
                let sql = format!(
                    "{base} WHERE {account_col} IN ({})",
                    placeholders(d, chunk.len(), cast)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                membership_rows.extend(q.fetch_all(&mut *conn).await.map_err(err)?);
            }
        }
        let mut owner_rows = Vec::new();
        if let Some(t) = &self.settings.transfer {
            let base = dialect::read_owners(d, &self.settings).unwrap_or_default();
            let owner_col = d.ident(&t.owner_column);
            let cast = loaded
                .schema
                .transfer
                .as_ref()
                .and_then(|s| s.cast(&t.owner_column));
            for chunk in keys.iter().collect::<Vec<_>>().chunks(MATCH_CHUNK) {
                let sql = format!(
                    "{base} WHERE {owner_col} IN ({})",
                    placeholders(d, chunk.len(), cast)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                owner_rows.extend(q.fetch_all(&mut *conn).await.map_err(err)?);
            }
        }
        // The same row may have been found twice (by key and by attribute).
        let mut seen = BTreeSet::new();
        rows.retain(|r| match r.try_get::<Option<String>, _>(0) {
            Ok(Some(k)) => seen.insert(k),
            _ => true,
        });
        self.decode_accounts(&rows, &attrs, &membership_rows, &owner_rows)
    }

    async fn apply(&self, ops: &[Operation]) -> Vec<Result<(), ConnectorError>> {
        if ops.is_empty() {
            return Vec::new();
        }
        self.apply_batch(ops).await
    }
}

/// Values per statement when reading accounts by key (well under every
/// database's limit on bound parameters).
const MATCH_CHUNK: usize = 500;

/// `n` placeholders, each cast to `cast` when given.
fn placeholders(d: Dialect, n: usize, cast: Option<&str>) -> String {
    (1..=n)
        .map(|i| {
            // Anonymous on SQLite as well (see `dialect::Sql::bind`).
            let ph = match d {
                Dialect::MySql | Dialect::Sqlite => "?".to_owned(),
                Dialect::Postgres => format!("${i}"),
            };
            match cast {
                Some(ty) => format!("CAST({ph} AS {ty})"),
                None => ph,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_flags() {
        for on in [
            Some("1"),
            Some("true"),
            Some("t"),
            Some("Y"),
            Some("2"),
            None,
        ] {
            assert!(parse_enabled(on), "{on:?}");
        }
        for off in ["0", "false", "FALSE", "f", "no", "n", "off", "", " 0 "] {
            assert!(!parse_enabled(Some(off)), "{off:?}");
        }
    }
}
