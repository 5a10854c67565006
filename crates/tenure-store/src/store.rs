//! The [`Store`] handle: connecting, configuring connections, transactions
//! and error wrapping shared by the other modules.
//!
//! Opening a store connects a pool, configures SQLite (WAL, busy timeout,
//! foreign keys) and runs the migrations. This module holds no domain logic;
//! the methods on identities, the queue and the audit log live in their own
//! modules.

use crate::StoreError;
use crate::error::Message;
use crate::{migrate, url};
use sqlx::AnyConnection;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Connection, Row, Transaction};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How many rows one write must bring for [`Store::analyze_after_bulk`] to refresh statistics.
pub(crate) const BULK_ANALYZE: usize = 10_000;

/// Which SQL database a store runs on: the few places where SQL differs ask this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite: the embedded default, one file.
    Sqlite,
    /// PostgreSQL: production; several Tenure processes may share one database.
    Postgres,
}

impl Dialect {
    /// The dialect's name (`sqlite`, `postgres`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tenure's durable store: identities, links, plans, the operation queue and
/// the audit log. Cheap to clone (clones share one connection pool).
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    /// The URL without its password, for messages.
    pub(crate) location: Arc<str>,
    /// SQLite has one writer at a time: this process's writers take turns
    /// here, in order, instead of polling the file lock (SQLite's busy
    /// handler sleeps up to 100 ms between tries). Other processes sharing
    /// the file still meet at the file lock and its busy timeout.
    pub(crate) writer: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction and, on SQLite, this process's turn to write.
/// Dereferences to the connection; dropping it without
/// [`Store::commit`] rolls back.
pub(crate) struct WriteTx {
    // Dropped first: the rollback is under way before the turn passes on.
    tx: Transaction<'static, Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.dialect)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to the store at `url` and migrates it to the current schema.
    ///
    /// `url` is `sqlite:PATH`, `sqlite://PATH`, a bare path ending in `.db`
    /// (the file is created if missing), or a `postgres://` /
    /// `postgresql://` URL.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let target = url::parse(url)?;
        let dialect = target.dialect;
        let options = AnyPoolOptions::new()
            .max_connections(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        configure_sqlite(conn).await?;
                    }
                    Ok(())
                })
            });
        // One direct attempt first: a wrong URL, bad credentials or a server
        // that is down are reported at once, not after the pool has retried
        // for its whole acquire timeout.
        let probe = AnyConnection::connect(&target.connect_url)
            .await
            .map_err(|source| StoreError::Connect {
                store: target.display.clone(),
                source,
            })?;
        if let Err(e) = probe.close().await {
            tracing::debug!(store = %target.display, error = %e, "closing the probe connection");
        }
        let pool = options
            .connect(&target.connect_url)
            .await
            .map_err(|source| StoreError::Connect {
                store: target.display.clone(),
                source,
            })?;
        let store = Store {
            pool,
            dialect,
            location: Arc::from(target.display),
            writer: Arc::new(tokio::sync::Mutex::new(())),
        };
        if dialect == Dialect::Sqlite {
            store.use_wal().await?;
        }
        migrate::run(&store).await?;
        tracing::debug!(store = %store.location, %dialect, "store open");
        Ok(store)
    }

    /// Which database this store runs on.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Where this store is (its URL without a password), for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes every connection; waits for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Puts a SQLite database in WAL mode (a property of the file, so only
    /// the first open of a new file changes anything). Switching needs an
    /// exclusive lock the busy timeout does not wait for, so a busy database
    /// (another process opening it at the same moment) is retried a while.
    async fn use_wal(&self) -> Result<(), StoreError> {
        let what = "switching SQLite to WAL mode";
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db_err(what, e))?;
        if mode.eq_ignore_ascii_case("wal") || mode.eq_ignore_ascii_case("memory") {
            return Ok(());
        }
        let mut tries = 0;
        loop {
            match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
                .fetch_one(&self.pool)
                .await
            {
                Ok(mode) => {
                    if !mode.eq_ignore_ascii_case("wal") {
                        tracing::warn!(store = %self.location, %mode, "SQLite refused WAL mode");
                    }
                    return Ok(());
                }
                Err(sqlx::Error::Database(e)) if tries < 100 && is_busy(e.message()) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(self.db_err(what, e)),
            }
        }
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock
    /// at once (`BEGIN IMMEDIATE`), so the busy timeout applies and a read
    /// never has to be upgraded to a write (which SQLite cannot wait for).
    pub(crate) async fn begin_write(&self, what: &str) -> Result<WriteTx, StoreError> {
        let (tx, turn) = match self.dialect {
            Dialect::Sqlite => {
                let turn = Arc::clone(&self.writer).lock_owned().await;
                (self.pool.begin_with("BEGIN IMMEDIATE").await, Some(turn))
            }
            Dialect::Postgres => (self.pool.begin().await, None),
        };
        let tx = tx.map_err(|e| self.db_err(format!("{what} (starting a transaction)"), e))?;
        Ok(WriteTx { tx, _turn: turn })
    }

    /// Commits `tx`.
    pub(crate) async fn commit(&self, tx: WriteTx, what: &str) -> Result<(), StoreError> {
        tx.tx
            .commit()
            .await
            .map_err(|e| self.db_err(format!("{what} (committing)"), e))
    }

    /// After a bulk write of `rows` rows to these tables, refreshes
    /// PostgreSQL's statistics on them (`ANALYZE`), as its documentation
    /// advises after bulk loading: until autovacuum gets to a new table's
    /// statistics (a minute or more later), the planner knows nothing of its
    /// columns and estimates a list of 500 identities to match the whole
    /// table, so a lookup by identity scans every row. Only for writes of at
    /// least [`BULK_ANALYZE`] rows; SQLite plans without statistics well.
    pub(crate) async fn analyze_after_bulk(
        &self,
        tables: &[&'static str],
        rows: usize,
    ) -> Result<(), StoreError> {
        if self.dialect != Dialect::Postgres || rows < BULK_ANALYZE {
            return Ok(());
        }
        for table in tables {
            sqlx::query(AssertSqlSafe(format!("ANALYZE {table}")))
                .execute(&self.pool)
                .await
                .map_err(|e| self.db_err(format!("refreshing the statistics of {table}"), e))?;
        }
        Ok(())
    }

    /// Wraps a database error with what the store was doing and where.
    pub(crate) fn db_err(&self, what: impl Into<String>, e: sqlx::Error) -> StoreError {
        StoreError::db(&self.location, what, e)
    }

    /// A stored value that cannot be read back.
    pub(crate) fn corrupt(
        &self,
        table: &'static str,
        column: &'static str,
        row: impl fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Corrupt {
            table,
            column,
            row: row.to_string(),
            store: self.location.to_string(),
            source: source.into(),
        }
    }

    /// A request the store cannot carry out as asked.
    pub(crate) fn invalid(&self, message: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            store: self.location.to_string(),
            message: message.into(),
        }
    }

    /// A JSON encoding failure.
    pub(crate) fn encode_err(&self, what: impl Into<String>, e: serde_json::Error) -> StoreError {
        StoreError::Encode {
            what: what.into(),
            store: self.location.to_string(),
            source: e,
        }
    }

    /// Reads column `column` of `row` (from `table`, key `key`) as `T`.
    pub(crate) fn col<T>(
        &self,
        row: &AnyRow,
        table: &'static str,
        column: &'static str,
        key: impl fmt::Display,
    ) -> Result<T, StoreError>
    where
        T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
    {
        row.try_get::<T, _>(column)
            .map_err(|e| self.corrupt(table, column, key, e))
    }

    /// Reads a JSON column.
    pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
        &self,
        row: &AnyRow,
        table: &'static str,
        column: &'static str,
        key: impl fmt::Display + Clone,
    ) -> Result<T, StoreError> {
        let text: String = self.col(row, table, column, key.clone())?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(table, column, key, e))
    }

    /// A value that parsed as its column type but means nothing.
    pub(crate) fn bad_value(
        &self,
        table: &'static str,
        column: &'static str,
        key: impl fmt::Display,
        message: impl Into<String>,
    ) -> StoreError {
        self.corrupt(table, column, key, Message(message.into()))
    }
}

fn is_busy(message: &str) -> bool {
    message.contains("locked") || message.contains("busy")
}

async fn configure_sqlite(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    // Wait up to 30 s for another writer (PRAGMA values cannot be bound).
    sqlx::query("PRAGMA busy_timeout = 30000")
        .execute(&mut *conn)
        .await?;
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut *conn)
        .await?;
    // A 32 MiB page cache per connection (the default is 2 MiB): the queue's
    // updates touch rows all over the operations table, and with the default
    // most of them are read again from the file.
    sqlx::query("PRAGMA cache_size = -32768")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
