//! Grants: stored with their window, read back by person and by what still
//! counts, revoked once, and every change stamps the holder for the next
//! incremental plan.

use crate::{TestDb, both, event, identity, secs, t0};
use tenure_core::policy::Grant;
use tenure_core::{IdentityId, RoleId};

fn grant(who: &str, role: &str, from: Option<i64>, until: Option<i64>) -> Grant {
    Grant {
        identity: IdentityId::new(who).unwrap(),
        role: RoleId::new(role).unwrap(),
        reason: format!("request for {role}"),
        valid_from: from.map(|s| t0() + secs(s)),
        valid_until: until.map(|s| t0() + secs(s)),
    }
}

async fn grants_are_stored_read_and_revoked(db: TestDb) {
    let store = db.store().await;
    let people: Vec<_> = (0..3).map(identity).collect();
    store.save_identities(&people, vec![]).await.unwrap();
    let who = people[0].id().as_str();
    let other = people[1].id().as_str();
    let before = store.change_stamp().await.unwrap();
    store
        .record_planned(before, "policy", &[], true)
        .await
        .unwrap();

    let ids = store
        .add_grants(
            &[
                grant(who, "sales", None, Some(3_600)),
                grant(who, "finance", Some(7_200), None),
                grant(other, "sales", None, Some(60)),
            ],
            "cli:approver",
            t0(),
            vec![event(1, "cli:approver")],
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids[0] < ids[1] && ids[1] < ids[2]);

    // The holders are stamped: the next incremental plan looks at them only.
    let after = store.change_stamp().await.unwrap();
    assert!(after > before);
    let to_plan: Vec<String> = store
        .identities_to_plan(before, after, t0())
        .await
        .unwrap()
        .iter()
        .map(|i| i.id().to_string())
        .collect();
    assert_eq!(to_plan, vec![who.to_owned(), other.to_owned()]);

    // Read back whole, by person, and by what still counts.
    let mine = store.grants(Some(people[0].id())).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].grant, grant(who, "sales", None, Some(3_600)));
    assert_eq!(mine[0].created_by, "cli:approver");
    assert_eq!(mine[0].created_at, t0());
    assert_eq!(mine[1].grant.valid_from, Some(t0() + secs(7_200)));
    let live = store.live_grants(None, t0() + secs(120)).await.unwrap();
    assert_eq!(
        live.iter().map(|g| g.id).collect::<Vec<_>>(),
        vec![ids[0], ids[1]],
        "the 60-second grant has ended"
    );
    let live = store
        .live_grants(Some(&[people[1].id().clone()]), t0())
        .await
        .unwrap();
    assert_eq!(live.iter().map(|g| g.id).collect::<Vec<_>>(), vec![ids[2]]);
    assert_eq!(store.grant(ids[1]).await.unwrap().unwrap().id, ids[1]);
    assert!(store.grant(999_999).await.unwrap().is_none());

    // Ending between two moments (reminders and ends).
    let ending = store
        .grants_ending(None, t0(), t0() + secs(3_600))
        .await
        .unwrap();
    assert_eq!(
        ending.iter().map(|g| g.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2]]
    );
    let ending = store
        .grants_ending(
            Some(&[people[1].id().clone()]),
            t0() + secs(60),
            t0() + secs(7_200),
        )
        .await
        .unwrap();
    assert!(
        ending.is_empty(),
        "ended exactly at the lower bound: not after it"
    );

    // Revoked once: it stops counting and the holder is stamped again.
    let stamp = store.change_stamp().await.unwrap();
    let r = store
        .revoke_grant(
            ids[0],
            "cli:security",
            t0() + secs(10),
            vec![event(2, "cli:security")],
        )
        .await
        .unwrap();
    assert_eq!(r.revoked_by.as_deref(), Some("cli:security"));
    assert_eq!(r.revoked_at, Some(t0() + secs(10)));
    assert!(store.change_stamp().await.unwrap() > stamp);
    assert!(
        !store
            .grant(ids[0])
            .await
            .unwrap()
            .unwrap()
            .live(t0() + secs(11))
    );
    let live = store.live_grants(None, t0() + secs(11)).await.unwrap();
    assert!(live.iter().all(|g| g.id != ids[0]));
    let again = store
        .revoke_grant(ids[0], "cli:security", t0() + secs(20), vec![])
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("already revoked by cli:security"), "{again}");
    let none = store
        .revoke_grant(424_242, "cli:security", t0(), vec![])
        .await
        .unwrap_err()
        .to_string();
    assert!(none.contains("no grant 424242"), "{none}");
    assert_eq!(
        store.grants(None).await.unwrap().len(),
        3,
        "kept for the record"
    );
    // The audit records went in with the changes.
    let audit = store.audit_page(0, 100).await.unwrap();
    assert_eq!(audit.len(), 2);
}

both!(grants_are_stored_read_and_revoked);
