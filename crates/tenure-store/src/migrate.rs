//! Schema migrations: a small runner over embedded SQL, one script per
//! dialect per version, recorded in `schema_migrations`.
//!
//! [`run`] is idempotent and safe to call from several processes at once:
//! pending migrations are applied in one transaction that holds SQLite's write
//! lock or a PostgreSQL advisory lock, and re-checks what is applied once it
//! holds it. A store whose schema is newer than this build is refused rather
//! than guessed at. There are no down-migrations and no checksums of applied
//! scripts: released scripts are never edited, new versions are appended.

use crate::StoreError;
use crate::sql::micros;
use crate::store::{Dialect, Store};
use sqlx::AnyConnection;

/// One schema version.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

impl Migration {
    fn sql(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

/// Every migration, in version order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "lighter queue: bodies apart, partial claim indexes, claims per system",
        sqlite: include_str!("../migrations/sqlite/0002_lighter_queue.sql"),
        postgres: include_str!("../migrations/postgres/0002_lighter_queue.sql"),
    },
    Migration {
        version: 3,
        name: "SCIM service provider: users, values, groups, members; API tokens",
        sqlite: include_str!("../migrations/sqlite/0003_scim.sql"),
        postgres: include_str!("../migrations/postgres/0003_scim.sql"),
    },
    Migration {
        version: 4,
        name: "notification outbox",
        sqlite: include_str!("../migrations/sqlite/0004_outbox.sql"),
        postgres: include_str!("../migrations/postgres/0004_outbox.sql"),
    },
    Migration {
        version: 5,
        name: "planning only what changed: change stamps, record digests, due times",
        sqlite: include_str!("../migrations/sqlite/0005_changes.sql"),
        postgres: include_str!("../migrations/postgres/0005_changes.sql"),
    },
    Migration {
        version: 6,
        name: "grants with validity windows",
        sqlite: include_str!("../migrations/sqlite/0006_grants.sql"),
        postgres: include_str!("../migrations/postgres/0006_grants.sql"),
    },
    Migration {
        version: 7,
        name: "accounts archived through a webhook",
        sqlite: include_str!("../migrations/sqlite/0007_archives.sql"),
        postgres: include_str!("../migrations/postgres/0007_archives.sql"),
    },
    Migration {
        version: 8,
        name: "a queue whose changes of state leave its indexes alone",
        sqlite: include_str!("../migrations/sqlite/0008_hot_queue.sql"),
        postgres: include_str!("../migrations/postgres/0008_hot_queue.sql"),
    },
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 8;

/// Every schema version this build knows, in order (numbers may skip: a
/// version is a name, applied by set membership).
pub fn schema_versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

/// The advisory lock key migrations hold on PostgreSQL ("tenure" in ASCII).
const PG_LOCK_KEY: i64 = 0x7465_6e75_7265;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version BIGINT NOT NULL PRIMARY KEY, \
     name TEXT NOT NULL, \
     applied_at BIGINT NOT NULL)";

/// Brings the store's schema up to [`SCHEMA_VERSION`].
pub(crate) async fn run(store: &Store) -> Result<(), StoreError> {
    // Fast path without any lock: everything applied already (also lets a
    // read-only SQLite file open).
    {
        let mut conn = store
            .pool
            .acquire()
            .await
            .map_err(|e| store.db_err("reading the schema version", e))?;
        if let Some(applied) = applied_versions(store, &mut conn).await?
            && check(store, &applied)?.is_empty()
        {
            return Ok(());
        }
    }

    let mut tx = store.begin_write("migrating the schema").await?;
    if store.dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(|e| store.db_err("taking the migration lock", e))?;
    }
    sqlx::raw_sql(CREATE_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(|e| store.db_err("creating schema_migrations", e))?;
    let applied = applied_versions(store, &mut tx).await?.unwrap_or_default();
    for m in check(store, &applied)? {
        tracing::info!(store = %store.location, version = m.version, name = m.name, "migrating");
        let migrate_err = |source| StoreError::Migrate {
            store: store.location.to_string(),
            version: m.version,
            name: m.name,
            source,
        };
        sqlx::raw_sql(m.sql(store.dialect))
            .execute(&mut *tx)
            .await
            .map_err(migrate_err)?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(micros(chrono::Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(migrate_err)?;
    }
    store.commit(tx, "migrating the schema").await
}

/// The applied versions, or `None` if `schema_migrations` does not exist yet.
async fn applied_versions(
    store: &Store,
    conn: &mut AnyConnection,
) -> Result<Option<Vec<i64>>, StoreError> {
    let exists_sql = match store.dialect {
        Dialect::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        }
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
        }
    };
    let exists: i64 = sqlx::query_scalar(exists_sql)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| store.db_err("looking for schema_migrations", e))?;
    if exists == 0 {
        return Ok(None);
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| store.db_err("reading schema_migrations", e))?;
    Ok(Some(versions))
}

/// The migrations still to apply; refuses a schema newer than this build.
fn check(store: &Store, applied: &[i64]) -> Result<Vec<&'static Migration>, StoreError> {
    if let Some(&found) = applied.iter().max()
        && found > SCHEMA_VERSION
    {
        return Err(StoreError::SchemaTooNew {
            store: store.location.to_string(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_and_current() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(versions.last().copied(), Some(SCHEMA_VERSION));
    }
}
