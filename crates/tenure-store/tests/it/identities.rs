//! Identities and links.

use crate::{Backend, TestDb, all_audit, both, event, identity};
use tenure_core::{AccountKey, IdentityId, LifecycleStatus, Link, SystemId};
use tenure_store::StoreError;

/// Every field survives a save and a load; reads are ordered by id (bytes).
async fn identities_round_trip(db: TestDb) {
    let store = db.store().await;
    assert_eq!(store.count_identities().await.unwrap(), 0);
    assert!(store.identities().await.unwrap().is_empty());

    let mut all: Vec<_> = (0..40).map(identity).collect();
    // ids whose byte order differs from a locale's order
    for (n, id) in ["a-lower", "Z-upper", "É-accent", "E-10", "E-9"]
        .iter()
        .enumerate()
    {
        let mut i = identity(100 + n);
        i.record.id = IdentityId::new(*id).unwrap();
        all.push(i);
    }
    store
        .save_identities(&all, vec![event(1, "cli:test")])
        .await
        .unwrap();

    let mut expected = all.clone();
    expected.sort_by(|a, b| a.id().cmp(b.id()));
    assert_eq!(store.identities().await.unwrap(), expected);
    assert_eq!(store.count_identities().await.unwrap(), all.len() as u64);
    let one = identity(7);
    assert_eq!(store.identity(one.id()).await.unwrap(), Some(one));
    assert_eq!(
        store
            .identity(&IdentityId::new("nobody").unwrap())
            .await
            .unwrap(),
        None
    );

    // Upsert replaces the whole identity; within one call the last one wins.
    let mut changed = identity(7);
    changed
        .record
        .attributes
        .insert("title".into(), "CTO".into());
    changed.record.manager = None;
    changed.record.end_date = Some(crate::date(2030, 12, 31));
    changed.record.groups.clear();
    changed.status = LifecycleStatus::Leaver;
    changed.suspended = true;
    let mut first = changed.clone();
    first
        .record
        .attributes
        .insert("title".into(), "overwritten".into());
    store
        .save_identities(&[first, changed.clone()], vec![])
        .await
        .unwrap();
    assert_eq!(store.identity(changed.id()).await.unwrap(), Some(changed));
    assert_eq!(store.count_identities().await.unwrap(), all.len() as u64);

    // the audit event went with the first save
    let log = all_audit(&store).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].event, event(1, "cli:test"));
    store.close().await;
}

/// Installs a trigger that fails inserts of the identity `Ezz-bad` and of audit
/// records whose action is `boom`.
async fn install_failures(db: &TestDb) {
    match db.backend {
        Backend::Sqlite => {
            db.exec(
                "CREATE TRIGGER fail_identity BEFORE INSERT ON identities \
                 WHEN NEW.id = 'Ezz-bad' BEGIN SELECT RAISE(ABORT, 'forced failure'); END; \
                 CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log \
                 WHEN NEW.action = 'boom' BEGIN SELECT RAISE(ABORT, 'forced audit failure'); END;",
            )
            .await
        }
        Backend::Postgres => {
            db.exec(
                "CREATE FUNCTION fail_identity() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.id = 'Ezz-bad' THEN RAISE EXCEPTION 'forced failure'; END IF; \
                 RETURN NEW; END $$; \
                 CREATE TRIGGER fail_identity BEFORE INSERT ON identities \
                 FOR EACH ROW EXECUTE FUNCTION fail_identity(); \
                 CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.action = 'boom' THEN RAISE EXCEPTION 'forced audit failure'; END IF; \
                 RETURN NEW; END $$; \
                 CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION fail_audit();",
            )
            .await
        }
    }
}

/// A save that fails part-way (after whole chunks were inserted) leaves the
/// store exactly as it was: no identity, no change, no audit record.
async fn save_identities_is_atomic(db: TestDb) {
    let store = db.store().await;
    let before = identity(5);
    store
        .save_identities(std::slice::from_ref(&before), vec![event(0, "cli:seed")])
        .await
        .unwrap();
    install_failures(&db).await;

    // 12,000 identities: several chunks on both databases; the bad one sorts last
    // (after every "E0…" id), so earlier chunks are already inserted when it fails.
    let mut batch: Vec<_> = (0..12_000).map(identity).collect();
    batch[5].suspended = !batch[5].suspended; // an update of the stored one
    let mut bad = identity(2);
    bad.record.id = IdentityId::new("Ezz-bad").unwrap();
    batch.insert(0, bad); // first in the input, last once sorted
    let events: Vec<_> = (0..100).map(|i| event(i, "cli:import")).collect();
    let err = store.save_identities(&batch, events).await.unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err:?}");
    let chain = error_chain(&err);
    assert!(chain.contains("saving"), "{chain}");
    assert!(chain.contains("forced failure"), "{chain}");

    assert_eq!(store.identities().await.unwrap(), vec![before.clone()]);
    assert_eq!(all_audit(&store).await.len(), 1);

    // A failure in the audit insert (after every identity was written) also
    // leaves nothing behind.
    let good: Vec<_> = (0..9_000).map(identity).collect();
    let mut events: Vec<_> = (0..50).map(|i| event(i, "cli:import")).collect();
    events[49].action = "boom".into();
    let err = store.save_identities(&good, events).await.unwrap_err();
    assert!(
        error_chain(&err).contains("forced audit failure"),
        "{err:?}"
    );
    assert_eq!(store.identities().await.unwrap(), vec![before]);
    let log = all_audit(&store).await;
    assert_eq!(log.len(), 1);
    assert!(tenure_core::audit::verify(&log).problems.is_empty());

    // and the store still works, continuing the chain
    store
        .save_identities(&good[..10], vec![event(1, "cli:import")])
        .await
        .unwrap();
    assert_eq!(store.count_identities().await.unwrap(), 10);
    let log = all_audit(&store).await;
    assert_eq!(log.len(), 2);
    assert!(tenure_core::audit::verify(&log).problems.is_empty());
    store.close().await;
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn link(system: &str, account: &str, identity: &str) -> Link {
    Link {
        system: SystemId::new(system).unwrap(),
        account: AccountKey::new(account).unwrap(),
        identity: IdentityId::new(identity).unwrap(),
    }
}

fn key(system: &str, account: &str) -> (SystemId, AccountKey) {
    (
        SystemId::new(system).unwrap(),
        AccountKey::new(account).unwrap(),
    )
}

/// Links are added, re-pointed and removed; reads are ordered.
async fn links_add_remove(db: TestDb) {
    let store = db.store().await;
    assert!(store.links().await.unwrap().is_empty());
    store
        .save_links(
            &[
                link("dir", "ada", "E1"),
                link("crm", "ada.l", "E1"),
                link("crm", "Bob", "E2"),
                link("crm", "ada.l", "E1"), // duplicate
            ],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        store.links().await.unwrap(),
        vec![
            link("crm", "Bob", "E2"),
            link("crm", "ada.l", "E1"),
            link("dir", "ada", "E1"),
        ]
    );

    // re-point, remove one (and one that does not exist), remove-and-add another
    store
        .save_links(
            &[link("crm", "Bob", "E3"), link("dir", "ada", "E9")],
            &[key("crm", "ada.l"), key("crm", "nobody"), key("dir", "ada")],
        )
        .await
        .unwrap();
    assert_eq!(
        store.links().await.unwrap(),
        vec![link("crm", "Bob", "E3"), link("dir", "ada", "E9")]
    );

    // many at once (several chunks)
    let many: Vec<_> = (0..20_000)
        .map(|i| link("big", &format!("acct{i:05}"), &format!("E{i}")))
        .collect();
    store.save_links(&many, &[]).await.unwrap();
    assert_eq!(store.links().await.unwrap().len(), 20_002);
    let gone: Vec<_> = (0..20_000)
        .step_by(2)
        .map(|i| key("big", &format!("acct{i:05}")))
        .collect();
    store.save_links(&[], &gone).await.unwrap();
    assert_eq!(store.links().await.unwrap().len(), 10_002);
    store.save_links(&[], &[]).await.unwrap();
    store.close().await;
}

both!(
    identities_round_trip,
    save_identities_is_atomic,
    links_add_remove
);
