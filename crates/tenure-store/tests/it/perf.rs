//! Bulk sizes: a 100,000-identity import and a 500,000-operation plan.
//!
//! These check correctness at scale (every row stored, claimed and completed
//! as it should be). They are not timed tests: the timings are only printed
//! (on stderr, past the test harness's capture); `scripts/bench` measures.

use crate::{TestDb, both, create, event, identity, op, plan, t0};
use std::io::Write as _;
use std::time::{Duration, Instant};
use tenure_core::Operation;

fn report(db: &TestDb, what: &str, took: Duration) {
    let _ = writeln!(
        std::io::stderr(),
        "TIMING [{:?}] {what}: {:.2} s",
        db.backend,
        took.as_secs_f64()
    );
}

async fn bulk_import_and_enqueue(db: TestDb) {
    let store = db.store().await;

    let people: Vec<_> = (0..100_000).map(identity).collect();
    let events: Vec<_> = (0..100_000).map(|i| event(i, "cli:import")).collect();
    let started = Instant::now();
    store.save_identities(&people, events).await.unwrap();
    let took = started.elapsed();
    report(
        &db,
        "save_identities: 100,000 identities + 100,000 audit records",
        took,
    );
    assert_eq!(store.count_identities().await.unwrap(), 100_000);

    let started = Instant::now();
    let loaded = store.identities().await.unwrap();
    report(&db, "identities(): load 100,000", started.elapsed());
    assert_eq!(loaded.len(), 100_000);

    // 500,000 operations: 100,000 creates, each followed by 4 memberships
    let ops: Vec<Operation> = (0..100_000)
        .flat_map(|i| {
            let account = format!("user{i:06}");
            std::iter::once(op("crm", &account, create())).chain(
                ["staff", "sales", "vpn", "wiki"]
                    .into_iter()
                    .map(move |g| op("crm", &format!("user{i:06}"), crate::add(g))),
            )
        })
        .collect();
    let big = plan(ops);
    let started = Instant::now();
    let id = store.enqueue_plan(&big, 0, vec![]).await.unwrap();
    let took = started.elapsed();
    report(&db, "enqueue_plan: 500,000 operations", took);

    // claims stay fast with a deep queue: only creates are runnable at first
    let started = Instant::now();
    let batch = store
        .claim("perf", t0(), Duration::from_secs(60), 4_000)
        .await
        .unwrap();
    report(&db, "claim: 4,000 of 500,000", started.elapsed());
    assert_eq!(batch.len(), 4_000);
    assert!(batch.iter().all(|q| q.operation.action.name() == "create"));
    let started = Instant::now();
    store
        .complete(
            "perf",
            t0(),
            &batch.iter().collect::<Vec<_>>(),
            &[],
            tenure_store::RetryPolicy::default(),
        )
        .await
        .unwrap();
    report(
        &db,
        "complete: 4,000 done (+ audit, + unblocking)",
        started.elapsed(),
    );
    let counts = store.queue_counts().await.unwrap();
    assert_eq!(counts.done, 4_000);
    assert_eq!(counts.queued, 496_000);
    let next = store
        .claim("perf", t0(), Duration::from_secs(60), 4_000)
        .await
        .unwrap();
    // ids order: the memberships of the first accounts come first again
    assert_eq!(next[0].operation.action.name(), "add_membership");
    assert_eq!(next.len(), 4_000);
    let _ = id;
    store.close().await;
}

both!(bulk_import_and_enqueue);
