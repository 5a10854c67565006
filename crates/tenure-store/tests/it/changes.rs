//! Change stamps, the plan cursor and due times: what an incremental plan reads.

use crate::{TestDb, both, identity, secs, t0};
use tenure_core::{AccountKey, IdentityId, Link, SystemId};

fn ids(v: &[tenure_core::Identity]) -> Vec<String> {
    v.iter().map(|i| i.id().to_string()).collect()
}

/// Saves stamp what they write; the plan cursor and due times select exactly
/// the identities saved after the last recorded plan or due by now.
async fn changes_and_due_times_select_who_to_plan(db: TestDb) {
    let store = db.store().await;
    let cursor = store.plan_cursor().await.unwrap();
    assert_eq!(cursor.change_seq, 0);
    assert_eq!(cursor.policy, "", "no plan was ever recorded");

    let all: Vec<_> = (0..30).map(identity).collect();
    store.save_identities(&all, vec![]).await.unwrap();
    let s1 = store.change_stamp().await.unwrap();
    assert_eq!(
        store.identities_to_plan(0, s1, t0()).await.unwrap().len(),
        30,
        "everyone saved is to plan"
    );

    // A plan of everyone is recorded; two people have due times, one passed.
    let due = vec![
        (all[3].id().clone(), Some(t0() + secs(3600))),
        (all[4].id().clone(), Some(t0() + secs(86_400))),
        (all[5].id().clone(), None),
    ];
    store
        .record_planned(s1, "policy-a", &due, true)
        .await
        .unwrap();
    let cursor = store.plan_cursor().await.unwrap();
    assert_eq!(
        (cursor.change_seq, cursor.policy.as_str()),
        (s1, "policy-a")
    );
    assert_eq!(
        store.next_due(all[3].id()).await.unwrap(),
        Some(t0() + secs(3600))
    );
    assert_eq!(store.next_due(all[5].id()).await.unwrap(), None);
    assert!(
        store
            .identities_to_plan(s1, s1, t0())
            .await
            .unwrap()
            .is_empty(),
        "nothing changed and nothing is due yet"
    );
    let later = store
        .identities_to_plan(s1, s1, t0() + secs(7200))
        .await
        .unwrap();
    assert_eq!(ids(&later), vec![all[3].id().to_string()], "E3's time came");

    // Two people change: a new stamp, bigger than the cursor.
    let mut changed = vec![identity(10), identity(20)];
    changed[0]
        .record
        .attributes
        .insert("title".into(), "Boss".into());
    changed[1]
        .record
        .attributes
        .insert("title".into(), "Chief".into());
    store.save_identities(&changed, vec![]).await.unwrap();
    let s2 = store.change_stamp().await.unwrap();
    assert!(s2 > s1);
    let now = store.identities_to_plan(s1, s2, t0()).await.unwrap();
    assert_eq!(ids(&now), ids(&changed));
    assert_eq!(now, changed, "read back whole");
    // Saved after the stamp a planner read: left for the next plan.
    assert!(
        store
            .identities_to_plan(s1, s1, t0())
            .await
            .unwrap()
            .is_empty()
    );

    // An incremental plan of those two: the cursor moves, E10 gets a due time,
    // E3's stays (it was not planned), a full plan's `every` clears the others.
    store
        .record_planned(
            s2,
            "policy-a",
            &[(changed[0].id().clone(), Some(t0() + secs(60)))],
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        store.next_due(changed[0].id()).await.unwrap(),
        Some(t0() + secs(60))
    );
    assert_eq!(
        store.next_due(all[3].id()).await.unwrap(),
        Some(t0() + secs(3600))
    );
    let due_later = store
        .identities_to_plan(s2, s2, t0() + secs(86_400))
        .await
        .unwrap();
    assert_eq!(
        ids(&due_later),
        vec![
            changed[0].id().to_string(),
            all[3].id().to_string(),
            all[4].id().to_string()
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    store
        .record_planned(s2, "policy-b", &[], true)
        .await
        .unwrap();
    assert!(
        store
            .identities_to_plan(s2, s2, t0() + secs(10_000_000))
            .await
            .unwrap()
            .is_empty(),
        "a full plan with no due times clears them all"
    );
    assert_eq!(store.plan_cursor().await.unwrap().policy, "policy-b");
}

/// Digests let an import skip unchanged people; lookups by id and by link
/// read only what they are asked for.
async fn digests_and_targeted_reads(db: TestDb) {
    let store = db.store().await;
    let all: Vec<_> = (0..12).map(identity).collect();
    store.save_identities(&all, vec![]).await.unwrap();
    let digests = store.identity_digests().await.unwrap();
    assert_eq!(digests.len(), 12);
    for d in &digests {
        let i = all.iter().find(|i| i.id() == &d.id).unwrap();
        assert_eq!(d.record_hash.as_deref(), Some(i.record.digest().as_str()));
        assert_eq!((d.status, d.suspended), (i.status, i.suspended));
        assert_eq!(d.source, i.source);
    }
    let want = vec![
        all[7].id().clone(),
        all[2].id().clone(),
        IdentityId::new("nobody").unwrap(),
    ];
    let got = store.identities_by_id(&want).await.unwrap();
    assert_eq!(got, vec![all[2].clone(), all[7].clone()]);

    let crm = SystemId::new("crm").unwrap();
    let wiki = SystemId::new("wiki").unwrap();
    let link = |s: &SystemId, a: &str, i: usize| Link {
        system: s.clone(),
        account: AccountKey::new(a).unwrap(),
        identity: all[i].id().clone(),
    };
    let links = vec![
        link(&crm, "ann", 2),
        link(&wiki, "ann", 2),
        link(&crm, "bob", 3),
        link(&crm, "cy", 7),
    ];
    store.save_links(&links, &[]).await.unwrap();
    assert_eq!(store.count_links().await.unwrap(), 4);
    let of = store
        .links_of_identities(&[all[2].id().clone(), all[7].id().clone()])
        .await
        .unwrap();
    assert_eq!(
        of,
        vec![
            link(&crm, "ann", 2),
            link(&crm, "cy", 7),
            link(&wiki, "ann", 2)
        ]
    );
    let bob = AccountKey::new("bob").unwrap();
    let ghost = AccountKey::new("ghost").unwrap();
    let cy = AccountKey::new("cy").unwrap();
    // The last account of the list counts as much as the first.
    let held = store
        .links_of_accounts(&crm, &[&ghost, &bob, &cy])
        .await
        .unwrap();
    assert_eq!(held, vec![link(&crm, "bob", 3), link(&crm, "cy", 7)]);
}

both!(
    changes_and_due_times_select_who_to_plan,
    digests_and_targeted_reads
);
