//! Plans and the operation queue.

use crate::{TestDb, add, all_audit, both, create, event, op, plan, secs, t0};
use std::collections::BTreeSet;
use std::time::Duration;
use tenure_core::{Action, Operation};
use tenure_store::{OpState, PlanId, QueueCounts, QueuedOperation, RetryPolicy, Store};

const LEASE: Duration = Duration::from_secs(60);
const RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_secs(10),
    max_attempts: 3,
};

fn ids(ops: &[QueuedOperation]) -> Vec<i64> {
    ops.iter().map(|o| o.id).collect()
}

fn actions(ops: &[QueuedOperation]) -> Vec<(String, String)> {
    ops.iter()
        .map(|o| {
            (
                o.operation.account.to_string(),
                o.operation.action.name().to_owned(),
            )
        })
        .collect()
}

fn pair(account: &str, action: &str) -> (String, String) {
    (account.to_owned(), action.to_owned())
}

/// A plan round-trips; claims follow priority, then id, and never run an
/// operation before the previous one on the same account is done.
async fn enqueue_and_claim_order(db: TestDb) {
    let store = db.store().await;
    let ops = vec![
        op("crm", "ada", create()),
        op("crm", "ada", add("sales")),
        op("crm", "ada", add("staff")),
        op("crm", "bob", create()),
        op("dir", "ada", create()), // another system: independent of crm/ada
        op("crm", "cy", Action::DisableAccount),
    ];
    let low = plan(ops.clone());
    let low_id = store
        .enqueue_plan(&low, 0, vec![event(1, "cli:plan")])
        .await
        .unwrap();
    let high = plan(vec![op("crm", "urgent", Action::DeleteAccount)]);
    let high_id = store.enqueue_plan(&high, 10, vec![]).await.unwrap();
    assert_ne!(low_id, high_id);

    // the plan round-trips (the operations are stored as queue rows)
    assert_eq!(store.plan(low_id).await.unwrap(), Some(low.clone()));
    assert_eq!(store.plan(high_id).await.unwrap(), Some(high));
    assert_eq!(store.plan(PlanId(9_999)).await.unwrap(), None);

    let queued = store.operations(Some(low_id)).await.unwrap();
    assert_eq!(queued.len(), 6);
    for (n, q) in queued.iter().enumerate() {
        assert_eq!(q.plan, low_id);
        assert_eq!(q.seq as usize, n);
        assert_eq!(q.operation, ops[n]);
        assert_eq!(q.idempotency_key, ops[n].key());
        assert_eq!(q.state, OpState::Queued);
        assert_eq!(q.attempts, 0);
        assert_eq!(q.last_error, None);
        assert_eq!(q.done_at, None);
    }
    assert_eq!(store.operations(None).await.unwrap().len(), 7);
    assert_eq!(
        store.queue_counts().await.unwrap(),
        QueueCounts {
            queued: 7,
            ..Default::default()
        }
    );
    assert_eq!(all_audit(&store).await.len(), 1);

    // first claim: priority first, then id; ada's memberships wait for ada's create
    let now = t0();
    let first = store.claim("w1", now, LEASE, 100).await.unwrap();
    assert_eq!(
        actions(&first),
        vec![
            pair("urgent", "delete"),
            pair("ada", "create"),
            pair("bob", "create"),
            pair("ada", "create"),
            pair("cy", "disable"),
        ]
    );
    assert!(first.iter().all(|q| q.state == OpState::Running));
    assert!(store.claim("w2", now, LEASE, 100).await.unwrap().is_empty());
    assert_eq!(
        store.queue_counts().await.unwrap(),
        QueueCounts {
            queued: 2,
            running: 5,
            ..Default::default()
        }
    );

    // the limit is respected
    let crm_ada_create = &first[1];
    store
        .complete("w1", now, &[crm_ada_create], &[], RETRY)
        .await
        .unwrap();
    let second = store.claim("w1", now, LEASE, 1).await.unwrap();
    assert_eq!(actions(&second), vec![pair("ada", "add_membership")]);
    assert_eq!(
        second[0].operation.action,
        Action::AddMembership {
            entitlement: tenure_core::EntitlementName::new("sales").unwrap()
        }
    );
    // staff waits for sales
    assert!(store.claim("w1", now, LEASE, 10).await.unwrap().is_empty());
    store
        .complete("w1", now, &[&second[0]], &[], RETRY)
        .await
        .unwrap();
    let third = store.claim("w1", now, LEASE, 10).await.unwrap();
    assert_eq!(actions(&third), vec![pair("ada", "add_membership")]);
    store
        .complete(
            "w1",
            now + secs(1),
            &[&third[0], &first[0], &first[2], &first[3], &first[4]],
            &[],
            RETRY,
        )
        .await
        .unwrap();
    assert_eq!(
        store.queue_counts().await.unwrap(),
        QueueCounts {
            done: 7,
            ..Default::default()
        }
    );
    let done = store.operations(None).await.unwrap();
    assert!(
        done.iter()
            .all(|q| q.state == OpState::Done && q.done_at.is_some())
    );
    assert!(store.claim("w1", now, LEASE, 10).await.unwrap().is_empty());
    store.close().await;
}

/// Claims from two handles (two processes) in parallel never overlap and
/// together get everything.
async fn concurrent_claimers(db: TestDb) {
    let a = db.store().await;
    let b = db.store().await;
    let ops: Vec<Operation> = (0..600)
        .map(|i| op("crm", &format!("user{i:04}"), create()))
        .collect();
    a.enqueue_plan(&plan(ops[..300].to_vec()), 0, vec![])
        .await
        .unwrap();
    b.enqueue_plan(&plan(ops[300..].to_vec()), 5, vec![])
        .await
        .unwrap();

    async fn drain(store: Store, worker: &'static str) -> Vec<i64> {
        let mut got = Vec::new();
        loop {
            let batch = store.claim(worker, t0(), LEASE, 17).await.unwrap();
            if batch.is_empty() {
                break got;
            }
            let ids = ids(&batch);
            got.extend(&ids);
            // complete only some right away: running rows must not be claimed again
            if got.len() % 2 == 0 {
                store
                    .complete(worker, t0(), &batch.iter().collect::<Vec<_>>(), &[], RETRY)
                    .await
                    .unwrap();
            }
            tokio::task::yield_now().await;
        }
    }
    let (ga, gb) = tokio::join!(
        tokio::spawn(drain(a.clone(), "worker-a")),
        tokio::spawn(drain(b.clone(), "worker-b")),
    );
    let (ga, gb) = (ga.unwrap(), gb.unwrap());
    let sa: BTreeSet<i64> = ga.iter().copied().collect();
    let sb: BTreeSet<i64> = gb.iter().copied().collect();
    assert_eq!(sa.len(), ga.len(), "a claimed an operation twice");
    assert_eq!(sb.len(), gb.len(), "b claimed an operation twice");
    assert!(
        sa.is_disjoint(&sb),
        "both claimed {:?}",
        sa.intersection(&sb).collect::<Vec<_>>()
    );
    let all: BTreeSet<i64> = ids(&a.operations(None).await.unwrap())
        .into_iter()
        .collect();
    assert_eq!(sa.union(&sb).copied().collect::<BTreeSet<_>>(), all);
    if db.backend == crate::Backend::Postgres {
        // Row locks, not a database lock: both really claim in parallel. (SQLite
        // serialises writers, and one busy claimer may well take everything.)
        assert!(
            !ga.is_empty() && !gb.is_empty(),
            "one claimer got nothing: {} / {}",
            ga.len(),
            gb.len()
        );
    }
    a.close().await;
    b.close().await;
}

/// A running operation whose lease expired (its worker died) is claimed
/// again; the old worker can then no longer complete it.
async fn expired_lease_is_claimable_again(db: TestDb) {
    let store = db.store().await;
    store
        .enqueue_plan(&plan(vec![op("crm", "ada", create())]), 0, vec![])
        .await
        .unwrap();
    let mine = store
        .claim("dead", t0(), Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    // lease still valid
    assert!(
        store
            .claim("alive", t0() + secs(29), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // expired
    let again = store
        .claim("alive", t0() + secs(30), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(ids(&again), ids(&mine));
    assert_eq!(again[0].state, OpState::Running);

    // the dead worker comes back: its completion is ignored
    store
        .complete("dead", t0() + secs(31), &refs(&mine), &[], RETRY)
        .await
        .unwrap();
    let row = &store.operations(None).await.unwrap()[0];
    assert_eq!(row.state, OpState::Running);
    assert!(all_audit(&store).await.is_empty());
    // the new owner completes it
    store
        .complete("alive", t0() + secs(32), &refs(&again), &[], RETRY)
        .await
        .unwrap();
    let row = &store.operations(None).await.unwrap()[0];
    assert_eq!(row.state, OpState::Done);
    assert_eq!(row.done_at, Some(t0() + secs(32)));
    store.close().await;
}

/// The claim indexes hold every pending row (running and blocked ones too):
/// a claim reads past rows another worker runs and rows waiting for their
/// dependency, takes the queued ones after them in order, and a row released
/// by its dependency's completion comes back in its place.
async fn claims_read_past_running_and_blocked_rows(db: TestDb) {
    let store = db.store().await;
    store
        .enqueue_plan(
            &plan(vec![
                op("crm", "ada", create()),
                op("crm", "ada", add("sales")),
                op("crm", "bob", create()),
                op("crm", "cy", create()),
            ]),
            0,
            vec![],
        )
        .await
        .unwrap();
    let first = store.claim("w1", t0(), LEASE, 1).await.unwrap();
    assert_eq!(actions(&first), vec![pair("ada", "create")]);
    // ada's create runs (w1), her membership waits for it: bob comes next
    let second = store.claim("w2", t0(), LEASE, 1).await.unwrap();
    assert_eq!(actions(&second), vec![pair("bob", "create")]);
    store
        .complete("w1", t0(), &refs(&first), &[], RETRY)
        .await
        .unwrap();
    // released, ada's membership is claimed before cy's create (its place in
    // the order); bob's create still runs and is read past
    let third = store.claim("w3", t0(), LEASE, 10).await.unwrap();
    assert_eq!(
        actions(&third),
        vec![pair("ada", "add_membership"), pair("cy", "create")]
    );
    let counts = store.queue_counts().await.unwrap();
    assert_eq!((counts.running, counts.done), (3, 1));
    assert!(store.claim("w4", t0(), LEASE, 10).await.unwrap().is_empty());
    // a failure given up on leaves the claim indexes; an operator's retry
    // brings it back
    let refuse = RetryPolicy {
        max_attempts: 1,
        ..RETRY
    };
    store
        .complete("w2", t0(), &[], &[(&second[0], "refused".into())], refuse)
        .await
        .unwrap();
    assert!(store.claim("w4", t0(), LEASE, 10).await.unwrap().is_empty());
    assert_eq!(store.retry_failed(t0(), vec![]).await.unwrap(), 1);
    let retried = store.claim("w4", t0(), LEASE, 10).await.unwrap();
    assert_eq!(actions(&retried), vec![pair("bob", "create")]);
    store.close().await;
}

fn refs(ops: &[QueuedOperation]) -> Vec<&QueuedOperation> {
    ops.iter().collect()
}

/// complete(): done, failed with backoff, failed for good after
/// max_attempts, retry_failed, and the audit records of each.
async fn complete_done_failed_backoff(db: TestDb) {
    let store = db.store().await;
    let ops = vec![op("crm", "ada", create()), op("crm", "ada", add("sales"))];
    let plan_id = store
        .enqueue_plan(&plan(ops.clone()), 0, vec![])
        .await
        .unwrap();
    let mut now = t0();

    // three failures: backoff 10 s, 20 s, then failed for good
    for (attempt, wait) in [(1u32, Some(10)), (2, Some(20)), (3, None)] {
        let claimed = store.claim("w", now, LEASE, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt}");
        assert_eq!(claimed[0].attempts, attempt - 1);
        let id = claimed[0].id;
        store
            .complete(
                "w",
                now,
                &[],
                &[(&claimed[0], format!("timeout #{attempt}"))],
                RETRY,
            )
            .await
            .unwrap();
        let row = store
            .operations(Some(plan_id))
            .await
            .unwrap()
            .into_iter()
            .find(|q| q.id == id)
            .unwrap();
        assert_eq!(row.attempts, attempt);
        assert_eq!(
            row.last_error.as_deref(),
            Some(format!("timeout #{attempt}").as_str())
        );
        match wait {
            Some(w) => {
                assert_eq!(row.state, OpState::Queued);
                assert_eq!(row.not_before, now + secs(w));
                // not before its time
                assert!(
                    store
                        .claim("w", now + secs(w - 1), LEASE, 10)
                        .await
                        .unwrap()
                        .is_empty()
                );
                now += secs(w);
            }
            None => {
                assert_eq!(row.state, OpState::Failed);
                assert!(
                    store
                        .claim("w", now + secs(100_000), LEASE, 10)
                        .await
                        .unwrap()
                        .is_empty()
                );
            }
        }
    }
    assert_eq!(
        store.queue_counts().await.unwrap(),
        QueueCounts {
            queued: 1, // the membership, waiting for the create
            failed: 1,
            ..Default::default()
        }
    );
    let log = all_audit(&store).await;
    assert_eq!(log.len(), 3);
    for (n, r) in log.iter().enumerate() {
        assert_eq!(r.event.action, "operation.failed");
        assert_eq!(r.event.actor, "tenure");
        assert_eq!(r.event.subject, "system:crm/account:ada");
        assert_eq!(r.event.reason, format!("timeout #{}", n + 1));
        let detail: serde_json::Value = serde_json::from_str(&r.event.detail).unwrap();
        assert_eq!(detail["idempotency_key"], ops[0].key());
        assert_eq!(detail["plan"], plan_id.0);
        assert_eq!(detail["attempts"], n as u64 + 1);
        assert_eq!(detail["final"], n == 2);
        let op: Operation = serde_json::from_value(detail["operation"].clone()).unwrap();
        assert_eq!(op, ops[0]);
    }

    // an operator retries: queued again from now, attempts reset
    now += secs(500);
    let before = store.audit_page(0, 100_000).await.unwrap().len();
    assert_eq!(
        store
            .retry_failed(now, vec![retry_event(now)])
            .await
            .unwrap(),
        1
    );
    let after = store.audit_page(0, 100_000).await.unwrap();
    assert_eq!(after.len(), before + 1, "the retry is audited");
    assert_eq!(after.last().unwrap().event.action, "queue.retry_failed");
    assert_eq!(
        store
            .retry_failed(now, vec![retry_event(now)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.audit_page(0, 100_000).await.unwrap().len(),
        after.len(),
        "nothing retried, nothing audited"
    );
    let claimed = store.claim("w", now, LEASE, 10).await.unwrap();
    assert_eq!(actions(&claimed), vec![pair("ada", "create")]);
    assert_eq!(claimed[0].attempts, 0);
    store
        .complete("w", now, &refs(&claimed), &[], RETRY)
        .await
        .unwrap();
    // now the membership runs; a done and a failure in one call
    let claimed = store.claim("w", now, LEASE, 10).await.unwrap();
    assert_eq!(actions(&claimed), vec![pair("ada", "add_membership")]);
    store
        .complete(
            "w",
            now,
            &refs(&claimed),
            &[(&claimed[0], "ignored: already done".into())],
            RETRY,
        )
        .await
        .unwrap();
    let rows = store.operations(Some(plan_id)).await.unwrap();
    assert!(rows.iter().all(|q| q.state == OpState::Done));
    assert_eq!(rows[0].done_at, Some(now));
    assert_eq!(rows[0].last_error.as_deref(), Some("timeout #3"));

    let log = all_audit(&store).await;
    // three failures, the operator's retry, two done
    assert_eq!(log.len(), 6);
    assert_eq!(log[3].event.action, "queue.retry_failed");
    let done = &log[4];
    assert_eq!(done.event.action, "operation.done");
    assert_eq!(done.event.actor, "tenure");
    assert_eq!(done.event.subject, "system:crm/account:ada");
    assert_eq!(done.event.at, now);
    let detail: serde_json::Value = serde_json::from_str(&done.event.detail).unwrap();
    assert_eq!(detail["plan"], plan_id.0);
    assert_eq!(detail["idempotency_key"], ops[0].key());
    assert_eq!(
        serde_json::from_value::<Operation>(detail["operation"].clone()).unwrap(),
        ops[0]
    );
    assert_eq!(log[5].event.action, "operation.done");
    assert!(tenure_core::audit::verify(&log).problems.is_empty());

    // backoff is capped at an hour
    let many = RetryPolicy {
        base: Duration::from_secs(1000),
        max_attempts: 10,
    };
    store
        .enqueue_plan(&plan(vec![op("crm", "zed", create())]), 0, vec![])
        .await
        .unwrap();
    let mut t = now;
    for _ in 0..4 {
        let c = store.claim("w", t, LEASE, 10).await.unwrap();
        assert_eq!(c.len(), 1);
        store
            .complete("w", t, &[], &[(&c[0], "down".into())], many)
            .await
            .unwrap();
        let row = store
            .operations(None)
            .await
            .unwrap()
            .into_iter()
            .find(|q| q.id == c[0].id)
            .unwrap();
        assert!(row.not_before - t <= secs(3600));
        t = row.not_before;
    }
    let row = store.operations(None).await.unwrap().pop().unwrap();
    assert_eq!(row.attempts, 4);
    store.close().await;
}

/// A worker that does not hold the claim changes nothing, in any way.
async fn complete_without_claim_changes_nothing(db: TestDb) {
    let store = db.store().await;
    store
        .enqueue_plan(
            &plan(vec![op("crm", "ada", create()), op("crm", "bob", create())]),
            0,
            vec![],
        )
        .await
        .unwrap();
    let claimed = store.claim("owner", t0(), LEASE, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let before = store.operations(None).await.unwrap();
    let unclaimed = before.iter().find(|q| q.id != claimed[0].id).unwrap();
    let mut ghost = claimed[0].clone();
    ghost.id = 424_242;
    let mut ghost2 = claimed[0].clone();
    ghost2.id = 424_243;

    store
        .complete(
            "intruder",
            t0(),
            &[&claimed[0], unclaimed, &ghost],
            &[
                (&claimed[0], "nope".into()),
                (unclaimed, "nope".into()),
                (&ghost2, "nope".into()),
            ],
            RETRY,
        )
        .await
        .unwrap();
    // nor may the owner complete what it never claimed
    store
        .complete(
            "owner",
            t0(),
            &[unclaimed],
            &[(unclaimed, "nope".into())],
            RETRY,
        )
        .await
        .unwrap();
    assert_eq!(store.operations(None).await.unwrap(), before);
    assert!(all_audit(&store).await.is_empty());
    store
        .complete("owner", t0(), &[], &[], RETRY)
        .await
        .unwrap();
    store.close().await;
}

/// A lane claims its own system's operations only, in order, with the same
/// dependencies as a claim over every system; lanes of different systems
/// never take each other's operations.
async fn claims_per_system(db: TestDb) {
    let store = db.store().await;
    store
        .enqueue_plan(
            &plan(vec![
                op("crm", "ada", create()),
                op("crm", "ada", add("sales")),
                op("crm", "bob", create()),
                op("wiki", "ada", create()),
                op("wiki", "ada", add("docs")),
            ]),
            0,
            vec![],
        )
        .await
        .unwrap();
    let crm = tenure_core::SystemId::new("crm").unwrap();
    let wiki = tenure_core::SystemId::new("wiki").unwrap();
    let hr = tenure_core::SystemId::new("hr").unwrap();
    let now = t0();
    let w = store
        .claim_system("w", now, LEASE, 10, &wiki)
        .await
        .unwrap();
    assert_eq!(actions(&w), vec![pair("ada", "create")]);
    assert!(w.iter().all(|q| q.operation.system == wiki));
    let c = store.claim_system("c", now, LEASE, 1, &crm).await.unwrap();
    assert_eq!(actions(&c), vec![pair("ada", "create")]);
    assert_eq!(c[0].operation.system, crm);
    let c2 = store.claim_system("c", now, LEASE, 10, &crm).await.unwrap();
    assert_eq!(actions(&c2), vec![pair("bob", "create")]);
    assert!(
        store
            .claim_system("x", now, LEASE, 10, &hr)
            .await
            .unwrap()
            .is_empty()
    );
    // the wiki's membership becomes runnable for the wiki lane only
    store
        .complete("w", now, &refs(&w), &[], RETRY)
        .await
        .unwrap();
    assert!(
        store
            .claim_system("c", now, LEASE, 10, &crm)
            .await
            .unwrap()
            .is_empty()
    );
    let w2 = store
        .claim_system("w", now, LEASE, 10, &wiki)
        .await
        .unwrap();
    assert_eq!(actions(&w2), vec![pair("ada", "add_membership")]);
    // an expired lease is taken back by a lane too
    let later = now + LEASE + secs(1);
    let again = store
        .claim_system("c2", later, LEASE, 10, &crm)
        .await
        .unwrap();
    assert_eq!(ids(&again), [ids(&c), ids(&c2)].concat());
    store.close().await;
}

both!(
    claims_per_system,
    enqueue_and_claim_order,
    concurrent_claimers,
    expired_lease_is_claimable_again,
    claims_read_past_running_and_blocked_rows,
    complete_done_failed_backoff,
    complete_without_claim_changes_nothing
);

fn retry_event(now: chrono::DateTime<chrono::Utc>) -> tenure_core::audit::AuditEvent {
    tenure_core::audit::AuditEvent {
        at: now,
        actor: "cli:tester".into(),
        action: "queue.retry_failed".into(),
        subject: "queue".into(),
        reason: "test".into(),
        detail: "{}".into(),
    }
}
