//! Opening, migrations and URLs.

use crate::{TestDb, both, identity};
use tenure_store::{SCHEMA_VERSION, Store, StoreError};

/// Opening an already migrated store changes nothing and keeps the data.
async fn migrate_twice_is_a_noop(db: TestDb) {
    let store = db.store().await;
    store.save_identities(&[identity(1)], vec![]).await.unwrap();
    store.close().await;

    let raw = db.raw().await;
    let before: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].0, SCHEMA_VERSION);

    let again = db.store().await;
    let third = db.store().await;
    let after: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(before, after, "re-opening must not re-apply migrations");
    assert_eq!(again.identities().await.unwrap(), vec![identity(1)]);
    assert_eq!(third.count_identities().await.unwrap(), 1);
    // the audit head row exists exactly once
    let heads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_head")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(heads, 1);
    again.close().await;
    third.close().await;
    raw.close().await;
}

/// Several processes opening a new database at once: one migrates, the others wait.
async fn concurrent_first_open(db: TestDb) {
    let (a, b, c) = tokio::join!(
        Store::open(&db.url),
        Store::open(&db.url),
        Store::open(&db.url)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let raw = db.raw().await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(n, 1);
    a.save_identities(&[identity(2)], vec![]).await.unwrap();
    assert_eq!(b.count_identities().await.unwrap(), 1);
    assert_eq!(c.count_identities().await.unwrap(), 1);
    raw.close().await;
}

/// A schema newer than this build is refused, not guessed at.
async fn newer_schema_is_refused(db: TestDb) {
    db.store().await.close().await;
    db.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)")
        .await;
    let err = Store::open(&db.url).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("999"), "{err}");
}

both!(
    migrate_twice_is_a_noop,
    concurrent_first_open,
    newer_schema_is_refused
);

/// SQLite URL forms all reach the same file, which is created on first use.
#[tokio::test]
async fn sqlite_url_forms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forms.db");
    let bare = path.display().to_string();
    let store = Store::open(&bare).await.unwrap();
    store.save_identities(&[identity(3)], vec![]).await.unwrap();
    store.close().await;
    assert!(path.exists());
    for url in [format!("sqlite:{bare}"), format!("sqlite://{bare}")] {
        let s = Store::open(&url).await.unwrap();
        assert_eq!(s.count_identities().await.unwrap(), 1, "{url}");
        s.close().await;
    }
    // WAL mode is a property of the file
    let raw = sqlx::AnyPool::connect(&format!("sqlite://{bare}"))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    raw.close().await;
}

#[tokio::test]
async fn bad_urls_are_explained() {
    let err = Store::open("mysql://u:pw@host/db").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err:?}");
    assert!(text.contains("postgres://"), "{text}");
    assert!(!text.contains("pw"), "password leaked: {text}");

    let err = Store::open("postgres://u:secret@127.0.0.1:1/none")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("secret"), "password leaked: {text}");
    assert!(std::error::Error::source(&err).is_some());
}
