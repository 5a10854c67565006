//! Test databases (a fresh one per test), the application schema the tests
//! provision, system configurations and operations.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use tenure_connectors::Connector;
use tenure_core::config::{Config, SystemConfig};
use tenure_core::plan::AttributeChange;
use tenure_core::{AccountKey, Action, EntitlementName, Operation, SystemId};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    fn env_var(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("TENURE_TEST_POSTGRES"),
            Backend::MySql => Some("TENURE_TEST_MYSQL"),
        }
    }

    /// The server's base URL, or None (and a notice) when the variant is skipped.
    pub fn base_url(self, test: &str) -> Option<String> {
        let var = self.env_var()?;
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{test} on {self:?}: {var} is not set, and CI runs every variant"
                );
                notice(&format!("SKIPPED {test} on {self:?}: set {var} to run it"));
                None
            }
        }
    }
}

/// Prints a line even when the test harness captures output (writing to
/// the stderr handle directly is not captured, `eprintln!` is).
pub fn notice(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Replaces the database name of a network URL (keeps the query string).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    let mut out = if db.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{db}")
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn fresh_name(test: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = format!("tenure_it_{}_{n}_{test}", std::process::id());
    name.truncate(60);
    name.to_ascii_lowercase()
}

/// What to drop after a test.
enum Cleanup {
    Nothing,
    Server { admin_url: String, drop_sql: String },
}

impl Cleanup {
    async fn run(self) {
        if let Cleanup::Server {
            admin_url,
            drop_sql,
        } = self
        {
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&admin_url)
                .await
                .expect("admin connection for cleanup");
            sqlx::raw_sql(AssertSqlSafe(drop_sql))
                .execute(&pool)
                .await
                .expect("drop the test database");
            pool.close().await;
        }
    }
}

/// A fresh, empty database and a configuration directory.
pub struct TestDb {
    pub backend: Backend,
    /// URL of the fresh database (what the connector is configured with; for
    /// SQLite relative to `dir`).
    pub url: String,
    /// The database name (server backends).
    pub name: String,
    /// The configuration directory.
    pub dir: tempfile::TempDir,
    /// A pool for assertions with plain SQL.
    pub pool: AnyPool,
}

impl TestDb {
    async fn create(backend: Backend, test: &str) -> Option<(TestDb, Cleanup)> {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => {
                let path = dir.path().join("app.db");
                let abs = format!("sqlite://{}?mode=rwc", path.display());
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&abs)
                    .await
                    .expect("open sqlite");
                Some((
                    TestDb {
                        backend,
                        url: "sqlite://app.db".to_owned(),
                        name: "main".to_owned(),
                        dir,
                        pool,
                    },
                    Cleanup::Nothing,
                ))
            }
            Backend::Postgres => {
                let base = backend.base_url(test)?;
                let name = fresh_name(test);
                let admin_url = with_database(&base, "postgres");
                let admin = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin_url)
                    .await
                    .expect("connect to postgres (TENURE_TEST_POSTGRES)");
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await
                    .expect("create database");
                admin.close().await;
                let url = with_database(&base, &name);
                let pool = AnyPoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await
                    .expect("connect to the test database");
                Some((
                    TestDb {
                        backend,
                        url,
                        name: name.clone(),
                        dir,
                        pool,
                    },
                    Cleanup::Server {
                        admin_url,
                        drop_sql: format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    },
                ))
            }
            Backend::MySql => {
                let base = backend.base_url(test)?;
                let name = fresh_name(test);
                let admin_url = with_database(&base, "");
                let admin = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin_url)
                    .await
                    .expect("connect to mysql (TENURE_TEST_MYSQL)");
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )))
                .execute(&admin)
                .await
                .expect("create database");
                admin.close().await;
                let url = with_database(&base, &name);
                let pool = AnyPoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await
                    .expect("connect to the test database");
                Some((
                    TestDb {
                        backend,
                        url,
                        name: name.clone(),
                        dir,
                        pool,
                    },
                    Cleanup::Server {
                        admin_url,
                        drop_sql: format!("DROP DATABASE IF EXISTS {name}"),
                    },
                ))
            }
        }
    }

    /// Runs one statement.
    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The application's own tables, as an application would have made them:
    /// a surrogate id, a NOT NULL email, length limits, an integer column, an
    /// enabled flag (boolean where the database has one) and a membership
    /// table with no unique index.
    pub async fn app_schema(&self) {
        let ddl: &[&str] = match self.backend {
            Backend::Sqlite => &[
                "CREATE TABLE users (id INTEGER PRIMARY KEY, username VARCHAR(64) NOT NULL UNIQUE, email VARCHAR(100) NOT NULL, full_name VARCHAR(100), department VARCHAR(20) CHECK (length(department) <= 20), employee_no INTEGER, active INTEGER NOT NULL DEFAULT 1)",
                "CREATE TABLE user_groups (username VARCHAR(64) NOT NULL, group_name VARCHAR(64) NOT NULL)",
            ],
            Backend::Postgres => &[
                "CREATE TABLE users (id SERIAL PRIMARY KEY, username VARCHAR(64) NOT NULL UNIQUE, email VARCHAR(100) NOT NULL, full_name VARCHAR(100), department VARCHAR(20), employee_no INTEGER, active BOOLEAN NOT NULL DEFAULT TRUE)",
                "CREATE TABLE user_groups (username VARCHAR(64) NOT NULL, group_name VARCHAR(64) NOT NULL)",
            ],
            Backend::MySql => &[
                "CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(64) NOT NULL UNIQUE, email VARCHAR(100) NOT NULL, full_name VARCHAR(100), department VARCHAR(20), employee_no INT, active BOOLEAN NOT NULL DEFAULT TRUE) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
                "CREATE TABLE user_groups (username VARCHAR(64) NOT NULL, group_name VARCHAR(64) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            ],
        };
        for s in ddl {
            self.exec(s).await;
        }
    }

    fn text(&self, col: &str) -> String {
        match self.backend {
            Backend::MySql => format!("CAST({col} AS CHAR)"),
            _ => format!("CAST({col} AS TEXT)"),
        }
    }

    /// Rows of a query whose every column is converted to text, sorted.
    pub async fn rows(&self, table: &str, cols: &[&str]) -> Vec<Vec<Option<String>>> {
        let sql = format!(
            "SELECT {} FROM {table}",
            cols.iter()
                .map(|c| self.text(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = sqlx::query(AssertSqlSafe(sql.clone()))
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut out: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|r| {
                (0..cols.len())
                    .map(|i| {
                        r.try_get::<Option<String>, _>(i)
                            .unwrap_or_else(|e| panic!("{sql} column {i}: {e}"))
                    })
                    .collect()
            })
            .collect();
        out.sort();
        out
    }

    /// The users table: username, email, full_name, department, employee_no,
    /// active (normalised to 1/0).
    pub async fn users(&self) -> Vec<Vec<Option<String>>> {
        let mut rows = self
            .rows(
                "users",
                &[
                    "username",
                    "email",
                    "full_name",
                    "department",
                    "employee_no",
                    "active",
                ],
            )
            .await;
        for r in &mut rows {
            if let Some(a) = r.get_mut(5) {
                *a = a.take().map(|v| match v.as_str() {
                    "true" => "1".to_owned(),
                    "false" => "0".to_owned(),
                    _ => v,
                });
            }
        }
        rows
    }

    /// The membership table as (username, group), sorted, duplicates kept.
    pub async fn memberships(&self) -> Vec<(String, String)> {
        self.rows("user_groups", &["username", "group_name"])
            .await
            .into_iter()
            .map(|r| {
                (
                    r[0].clone().unwrap_or_default(),
                    r[1].clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Default settings: every feature on, over [`Self::app_schema`].
    pub fn default_settings(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("url".into(), self.url.clone().into());
        t.insert("accounts_table".into(), "users".into());
        t.insert("key_column".into(), "username".into());
        t.insert("enabled_column".into(), "active".into());
        let mut cols = toml::Table::new();
        cols.insert("display_name".into(), "full_name".into());
        cols.insert("employee_number".into(), "employee_no".into());
        t.insert("attribute_columns".into(), cols.into());
        t.insert("memberships_table".into(), "user_groups".into());
        t.insert("membership_account_column".into(), "username".into());
        t.insert("membership_entitlement_column".into(), "group_name".into());
        t
    }

    /// A system `crm` over this database, with the default settings edited by `edit`.
    pub fn system(&self, edit: impl FnOnce(&mut toml::Table)) -> SystemConfig {
        let mut settings = self.default_settings();
        edit(&mut settings);
        system_config(settings)
    }

    /// The connector for a system (its config directory is `dir`).
    pub async fn connector(&self, system: &SystemConfig) -> Box<dyn Connector> {
        match tenure_connectors::build(system, self.dir.path()).await {
            Ok(c) => c,
            Err(e) => panic!("build: {e}"),
        }
    }
}

/// A system `crm` of kind `sql` with the standard account mapping and these settings.
pub fn system_config(settings: toml::Table) -> SystemConfig {
    system_config_kind("sql", settings)
}

/// Like [`system_config`] with another kind.
pub fn system_config_kind(kind: &str, settings: toml::Table) -> SystemConfig {
    let mut attrs = toml::Table::new();
    for (a, e) in [
        ("email", "identity.email"),
        ("display_name", "identity.name"),
        ("department", "identity.department"),
        ("employee_number", "identity.number"),
    ] {
        attrs.insert(a.into(), e.into());
    }
    let mut account = toml::Table::new();
    account.insert("key".into(), "identity.username".into());
    account.insert("attributes".into(), attrs.into());
    let mut sys = toml::Table::new();
    sys.insert("id".into(), "crm".into());
    sys.insert("kind".into(), kind.into());
    sys.insert("account".into(), account.into());
    sys.insert("settings".into(), settings.into());
    let mut root = toml::Table::new();
    root.insert(
        "system".into(),
        toml::Value::Array(vec![toml::Value::Table(sys)]),
    );
    let text = toml::to_string(&root).expect("serialise config");
    let cfg = Config::parse(vec![("crm.toml".to_owned(), text)]).expect("parse config");
    cfg.systems[0].item.clone()
}

/// Runs a scenario on a fresh database of `backend` (skipping, with a notice,
/// when the server's variable is unset) and drops the database afterwards,
/// even when the scenario fails.
pub async fn run<F, Fut>(backend: Backend, test: &str, scenario: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((db, cleanup)) = TestDb::create(backend, test).await else {
        return;
    };
    let result = tokio::spawn(scenario(db)).await;
    cleanup.run().await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("scenario {test} did not finish: {e}");
    }
}

pub fn key(s: &str) -> AccountKey {
    AccountKey::new(s).expect("account key")
}

pub fn ent(s: &str) -> EntitlementName {
    EntitlementName::new(s).expect("entitlement")
}

pub fn op(account: &str, action: Action) -> Operation {
    Operation {
        system: SystemId::new("crm").expect("system id"),
        identity: None,
        account: key(account),
        action,
        reasons: vec![],
    }
}

pub fn create(account: &str, attrs: &[(&str, &str)]) -> Operation {
    op(
        account,
        Action::CreateAccount {
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        },
    )
}

pub fn update(account: &str, attrs: &[(&str, &str)]) -> Operation {
    op(
        account,
        Action::UpdateAccount {
            changes: attrs
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        AttributeChange {
                            before: None,
                            after: (*v).to_owned(),
                        },
                    )
                })
                .collect(),
        },
    )
}

pub fn enable(account: &str) -> Operation {
    op(account, Action::EnableAccount)
}

pub fn disable(account: &str) -> Operation {
    op(account, Action::DisableAccount)
}

pub fn add(account: &str, e: &str) -> Operation {
    op(
        account,
        Action::AddMembership {
            entitlement: ent(e),
        },
    )
}

pub fn remove(account: &str, e: &str) -> Operation {
    op(
        account,
        Action::RemoveMembership {
            entitlement: ent(e),
        },
    )
}

pub fn delete(account: &str) -> Operation {
    op(account, Action::DeleteAccount)
}

/// A full set of attributes for `name`.
pub fn attrs(name: &str) -> Vec<(String, String)> {
    vec![
        ("email".into(), format!("{name}@example.com")),
        ("display_name".into(), format!("{name} Example")),
        ("department".into(), "Sales".into()),
        ("employee_number".into(), "42".into()),
    ]
}

/// [`create`] with [`attrs`].
pub fn create_full(account: &str) -> Operation {
    let a = attrs(account);
    let refs: Vec<(&str, &str)> = a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    create(account, &refs)
}

/// Expected users row for [`create_full`].
pub fn full_row(account: &str, active: &str) -> Vec<Option<String>> {
    vec![
        Some(account.to_owned()),
        Some(format!("{account}@example.com")),
        Some(format!("{account} Example")),
        Some("Sales".to_owned()),
        Some("42".to_owned()),
        Some(active.to_owned()),
    ]
}

/// Asserts every result is Ok.
pub fn all_ok(results: &[Result<(), tenure_connectors::ConnectorError>]) {
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            panic!("operation {i} failed: {e}");
        }
    }
}
