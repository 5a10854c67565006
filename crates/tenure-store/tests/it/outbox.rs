//! The notification outbox.

use crate::{TestDb, both, secs, t0};
use std::time::Duration;
use tenure_store::{Channel, Delivery, DeliveryCounts, DeliveryState, NewDelivery, RetryPolicy};

const LEASE: Duration = Duration::from_secs(60);
const RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_secs(10),
    max_attempts: 3,
};

fn msg(key: &str, target: &str) -> NewDelivery {
    NewDelivery {
        dedup_key: key.to_owned(),
        channel: Channel::Webhook,
        target: target.to_owned(),
        event: "leaver".to_owned(),
        subject: Some("identity:E1".to_owned()),
        payload: format!("{{\"key\":\"{key}\"}}"),
    }
}

fn keys(d: &[Delivery]) -> Vec<&str> {
    d.iter().map(|d| d.dedup_key.as_str()).collect()
}

/// Enqueue is idempotent per key; claims take due rows oldest first, lease
/// them, and count the attempt; done rows are never claimed again.
async fn enqueue_claim_done(db: TestDb) {
    let store = db.store().await;
    let added = store
        .enqueue_deliveries(&[msg("a", "siem"), msg("b", "siem")], t0())
        .await
        .unwrap();
    assert_eq!(added, 2);
    let again = store
        .enqueue_deliveries(&[msg("a", "siem"), msg("c", "hr")], t0() + secs(1))
        .await
        .unwrap();
    assert_eq!(again, 1, "a key already there adds nothing");

    // c is due only at t0+1s
    let claimed = store.claim_deliveries(t0(), LEASE, 10).await.unwrap();
    assert_eq!(keys(&claimed), ["a", "b"]);
    assert!(claimed.iter().all(|d| d.attempts == 1));
    assert_eq!(claimed[0].next_attempt_at, t0() + secs(60), "leased");
    assert_eq!(claimed[0].payload, "{\"key\":\"a\"}");
    assert_eq!(claimed[0].subject.as_deref(), Some("identity:E1"));
    assert_eq!(claimed[0].channel, Channel::Webhook);

    // leased rows are not claimed again while the lease runs
    let next = store
        .claim_deliveries(t0() + secs(5), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(keys(&next), ["c"]);

    store
        .delivery_done(claimed[0].id, t0() + secs(6))
        .await
        .unwrap();
    // the claimer of b died: after the lease, b is claimed again
    let later = store
        .claim_deliveries(t0() + secs(61), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(keys(&later), ["b"]);
    assert_eq!(later[0].attempts, 2);

    let done = store
        .deliveries(Some(DeliveryState::Done), 10)
        .await
        .unwrap();
    assert_eq!(keys(&done), ["a"]);
    assert_eq!(done[0].delivered_at, Some(t0() + secs(6)));
    assert_eq!(
        store.delivery_counts().await.unwrap(),
        DeliveryCounts {
            pending: 2,
            done: 1,
            failed: 0
        }
    );
}

/// Failed attempts back off exponentially, then the row is failed and
/// visible; an operator's retry brings it back; a refusal fails at once.
async fn backoff_then_failed(db: TestDb) {
    let store = db.store().await;
    store
        .enqueue_deliveries(&[msg("a", "down")], t0())
        .await
        .unwrap();
    let mut now = t0();
    let mut waits = Vec::new();
    loop {
        let claimed = store.claim_deliveries(now, LEASE, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "due at {now}");
        let state = store
            .delivery_retry(&claimed[0], now, "connection refused", RETRY)
            .await
            .unwrap();
        if state == DeliveryState::Failed {
            break;
        }
        let row = &store.deliveries(None, 10).await.unwrap()[0];
        let wait = row.next_attempt_at - now;
        // not due a moment before its time
        assert!(
            store
                .claim_deliveries(now + wait - secs(1), LEASE, 10)
                .await
                .unwrap()
                .is_empty()
        );
        waits.push(wait.num_seconds());
        now += wait;
    }
    assert_eq!(
        waits,
        [10, 20],
        "10 s, doubling, then failed after 3 attempts"
    );
    let failed = store
        .deliveries(Some(DeliveryState::Failed), 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 3);
    assert_eq!(failed[0].last_error.as_deref(), Some("connection refused"));
    assert!(
        store
            .claim_deliveries(now + secs(86_400), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(store.retry_failed_deliveries(now).await.unwrap(), 1);
    let back = store.claim_deliveries(now, LEASE, 10).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].attempts, 1);
    store
        .delivery_refused(back[0].id, "400 invalid_audience")
        .await
        .unwrap();
    let c = store.delivery_counts().await.unwrap();
    assert_eq!((c.pending, c.failed), (0, 1));
}

/// A postponed delivery gives its attempt back.
async fn postpone_keeps_attempts(db: TestDb) {
    let store = db.store().await;
    store
        .enqueue_deliveries(&[msg("a", "x")], t0())
        .await
        .unwrap();
    let c = store.claim_deliveries(t0(), LEASE, 1).await.unwrap();
    store
        .delivery_postpone(&c[0], t0() + secs(30), "not attempted: x is down")
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries(t0() + secs(29), LEASE, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let c = store
        .claim_deliveries(t0() + secs(30), LEASE, 1)
        .await
        .unwrap();
    assert_eq!(c[0].attempts, 1);
}

/// Several claimers at once (processes sharing the database): every row is
/// claimed exactly once.
async fn concurrent_claims_take_each_row_once(db: TestDb) {
    let store = db.store().await;
    let items: Vec<NewDelivery> = (0..200).map(|i| msg(&format!("k{i:03}"), "t")).collect();
    store.enqueue_deliveries(&items, t0()).await.unwrap();
    let other = db.store().await;
    let mut tasks = Vec::new();
    for n in 0..4 {
        let s = if n % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = s.claim_deliveries(t0(), LEASE, 7).await.unwrap();
                if c.is_empty() {
                    break;
                }
                mine.extend(c.into_iter().map(|d| d.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (200, 200));
}

both!(
    enqueue_claim_done,
    backoff_then_failed,
    postpone_keeps_attempts,
    concurrent_claims_take_each_row_once,
);
