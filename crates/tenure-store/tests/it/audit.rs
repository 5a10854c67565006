//! The audit log.

use crate::{TestDb, all_audit, both, event};
use tenure_core::audit::{GENESIS, ProblemKind, verify};
use tenure_store::StoreError;

/// Appends in several batches, pages through, and the chain verifies.
async fn audit_append_page_verify(db: TestDb) {
    let store = db.store().await;
    assert!(store.audit_page(0, 10).await.unwrap().is_empty());
    store.append_audit(vec![]).await.unwrap();

    let events: Vec<_> = (0..2_500).map(|i| event(i, "cli:alice")).collect();
    let mut start = 0;
    for size in [1, 2, 497, 1_000, 1_000] {
        store
            .append_audit(events[start..start + size].to_vec())
            .await
            .unwrap();
        start += size;
    }
    let log = all_audit(&store).await;
    assert_eq!(log.len(), 2_500);
    for (n, r) in log.iter().enumerate() {
        assert_eq!(r.seq, n as u64 + 1);
        assert_eq!(r.event, events[n]);
    }
    assert_eq!(log[0].prev_hash, GENESIS);
    let v = verify(&log);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.head.as_ref().map(|h| h.0), Some(2_500));

    // pages: after_seq is exclusive, limit is respected
    let page = store.audit_page(10, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );
    assert!(store.audit_page(2_500, 10).await.unwrap().is_empty());
    assert!(store.audit_page(u64::MAX, 10).await.unwrap().is_empty());
    assert!(store.audit_page(0, 0).await.unwrap().is_empty());

    // sub-microsecond precision is not stored, and the hash never depended on it
    let mut precise = event(9, "cli:bob");
    precise.at += chrono::Duration::nanoseconds(789);
    store.append_audit(vec![precise]).await.unwrap();
    let log = all_audit(&store).await;
    assert!(verify(&log).problems.is_empty());

    // a new handle continues the same chain
    store.close().await;
    let again = db.store().await;
    again
        .append_audit(vec![event(1, "cli:carol")])
        .await
        .unwrap();
    let log = all_audit(&again).await;
    assert_eq!(log.len(), 2_502);
    assert!(verify(&log).problems.is_empty());
    again.close().await;
}

/// Two handles (two processes) appending at the same time keep one chain.
async fn concurrent_audit_appends(db: TestDb) {
    let a = db.store().await;
    let b = db.store().await;
    async fn append(store: tenure_store::Store, actor: &'static str) {
        for batch in 0..40 {
            let events = (0..25).map(|i| event(batch * 25 + i, actor)).collect();
            store.append_audit(events).await.unwrap();
            tokio::task::yield_now().await;
        }
    }
    let (ra, rb, rc) = tokio::join!(
        tokio::spawn(append(a.clone(), "cli:a")),
        tokio::spawn(append(b.clone(), "cli:b")),
        tokio::spawn(append(b.clone(), "cli:b2")),
    );
    ra.unwrap();
    rb.unwrap();
    rc.unwrap();
    let log = all_audit(&a).await;
    assert_eq!(log.len(), 3_000);
    let v = verify(&log);
    assert!(
        v.problems.is_empty(),
        "{:?}",
        &v.problems[..v.problems.len().min(5)]
    );
    // each batch stayed contiguous
    for chunk in log.chunks(25) {
        assert!(chunk.iter().all(|r| r.event.actor == chunk[0].event.actor));
    }
    a.close().await;
    b.close().await;
}

/// Editing or deleting a row behind the store's back is reported by verify.
async fn tampering_is_detected(db: TestDb) {
    let store = db.store().await;
    store
        .append_audit((0..10).map(|i| event(i, "cli:alice")).collect())
        .await
        .unwrap();
    assert!(verify(&all_audit(&store).await).problems.is_empty());
    let raw = db.raw().await;

    sqlx::query("UPDATE audit_log SET reason = $1 WHERE seq = $2")
        .bind("nothing to see here")
        .bind(4i64)
        .execute(&raw)
        .await
        .unwrap();
    let v = verify(&all_audit(&store).await);
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert_eq!(
        (v.problems[0].seq, &v.problems[0].kind),
        (4, &ProblemKind::Edited)
    );

    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(7i64)
        .execute(&raw)
        .await
        .unwrap();
    let v = verify(&all_audit(&store).await);
    assert!(
        v.problems
            .iter()
            .any(|p| p.seq == 8 && p.kind == ProblemKind::Removed),
        "{:?}",
        v.problems
    );
    assert_eq!(v.problems.len(), 2, "{:?}", v.problems);

    // a row slipped in where the next append goes: the append is refused as a
    // conflict (unique seq) and changes nothing
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, subject, reason, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(11i64)
    .bind(0i64)
    .bind("mallory")
    .bind("forged")
    .bind("x")
    .bind("x")
    .bind("{}")
    .bind(GENESIS)
    .bind(GENESIS)
    .execute(&raw)
    .await
    .unwrap();
    let err = store
        .append_audit(vec![event(99, "cli:alice")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(err.is_conflict());
    assert!(err.to_string().contains("audit"), "{err}");
    let log = all_audit(&store).await;
    assert_eq!(log.len(), 10);
    assert!(verify(&log).problems.iter().any(|p| p.seq == 11));
    raw.close().await;
    store.close().await;
}

both!(
    audit_append_page_verify,
    concurrent_audit_appends,
    tampering_is_detected
);
