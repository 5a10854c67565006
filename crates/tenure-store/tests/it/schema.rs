//! Opening, migrations and URLs.

use crate::{TestDb, both, identity};
use tenure_store::{Store, StoreError, schema_versions};

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
    let versions: Vec<i64> = before.iter().map(|m| m.0).collect();
    assert_eq!(versions, schema_versions());

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
    assert_eq!(
        n,
        schema_versions().len() as i64,
        "each migration applied exactly once"
    );
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

/// A store made by schema version 1, with a plan part done, opens under the
/// current schema with its queue intact: bodies moved, states kept, and the
/// rest of the plan claimable.
async fn upgrade_from_version_1_keeps_the_queue(db: TestDb) {
    let v1 = match db.backend {
        crate::Backend::Sqlite => include_str!("../../migrations/sqlite/0001_initial.sql"),
        crate::Backend::Postgres => include_str!("../../migrations/postgres/0001_initial.sql"),
    };
    let raw = db.raw().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(v1))
        .execute(&raw)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, \
         name TEXT NOT NULL, applied_at BIGINT NOT NULL); \
         INSERT INTO schema_migrations VALUES (1, 'initial schema', 0);",
    ))
    .execute(&raw)
    .await
    .unwrap();
    let create = crate::op("crm", "ada", crate::create());
    let add = crate::op("crm", "ada", crate::add("sales"));
    let mut header = serde_json::to_value(crate::plan(vec![])).unwrap();
    header.as_object_mut().unwrap().remove("operations");
    sqlx::query(
        "INSERT INTO plans (format, fingerprint, made_at, today, priority, operation_count, header) \
         VALUES (1, 'f00d', 0, '2026-11-24', 0, 2, $1)",
    )
    .bind(header.to_string())
    .execute(&raw)
    .await
    .unwrap();
    for (seq, op, state, depends_on, next_seq) in [
        (0i64, &create, "done", None, Some(1i64)),
        (1, &add, "queued", Some(0i64), None),
    ] {
        sqlx::query(
            "INSERT INTO operations (plan_id, seq, system, account, identity, action, body, \
             idempotency_key, priority, depends_on, next_seq, state, not_before) \
             VALUES (1, $1, 'crm', 'ada', 'id-ada', $2, $3, $4, 0, $5, $6, $7, 0)",
        )
        .bind(seq)
        .bind(op.action.name())
        .bind(serde_json::to_string(op).unwrap())
        .bind(op.key())
        .bind(depends_on)
        .bind(next_seq)
        .bind(state)
        .execute(&raw)
        .await
        .unwrap();
    }
    let store = db.store().await;
    let plan = store.plan(tenure_store::PlanId(1)).await.unwrap().unwrap();
    assert_eq!(plan.operations, vec![create.clone(), add.clone()]);
    let rows = store.operations(None).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].state, tenure_store::OpState::Done);
    let claimed = store
        .claim_system(
            "w",
            crate::t0(),
            std::time::Duration::from_secs(60),
            10,
            &tenure_core::SystemId::new("crm").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].operation, add);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(versions, schema_versions());
    store.close().await;
    raw.close().await;
}

both!(
    upgrade_from_version_1_keeps_the_queue,
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
