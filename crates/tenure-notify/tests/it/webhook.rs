//! Webhooks: signing, delivery, retries with backoff, failure, restarts.

use crate::support::{
    ConfigDir, HOOK_SECRET, Receiver, TestDb, TestResult, both, closed_port, notice, secs, t0,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tenure_notify::{DeliveryStats, Dispatcher, NoticeKind, Notifier, deliver_due};
use tenure_store::DeliveryState;

fn hooks(hooks: &[(&str, &str, &str)], extra: &str) -> String {
    let mut t = format!("[notifications]\nmax_attempts = 3\nretry_seconds = 10\n{extra}\n");
    for (id, url, events) in hooks {
        t.push_str(&format!(
            "[[webhook]]\nid = \"{id}\"\nurl = \"{url}\"\nsecret = {{ file = \"secrets/hook\" }}\n\
             events = {events}\ntimeout_seconds = 5\n"
        ));
    }
    t
}

/// Recomputes the signature as a receiver would, with nothing from Tenure.
fn check_signature(header: &str, body: &[u8], now: i64) -> Result<(), String> {
    let (t, v1) = header
        .split_once(',')
        .ok_or_else(|| format!("bad header {header}"))?;
    let t: i64 = t
        .strip_prefix("t=")
        .and_then(|t| t.parse().ok())
        .ok_or("no t=")?;
    let v1 = v1.strip_prefix("v1=").ok_or("no v1=")?;
    if (now - t).abs() > 300 {
        return Err(format!("timestamp {t} is not near {now}"));
    }
    let mut m =
        Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).map_err(|e| e.to_string())?;
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    m.verify_slice(&hex::decode(v1).map_err(|e| e.to_string())?)
        .map_err(|_| "signature does not match".to_owned())
}

/// A leaver is POSTed to the subscribed webhook only, signed over the
/// timestamp and body, with a delivery id; enqueueing it again sends nothing.
async fn signed_and_delivered_once(db: TestDb) -> TestResult {
    let siem = Receiver::start(&[(204, "")]).await?;
    let hr = Receiver::start(&[(200, "")]).await?;
    let dir = ConfigDir::new(&hooks(
        &[
            ("siem", &siem.url, "[\"leaver\", \"suspended\"]"),
            ("hr", &hr.url, "[\"joiner\"]"),
        ],
        "",
    ))?;
    let cfg = dir.config()?;
    let store = db.store().await?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let dispatcher = Dispatcher::new(&cfg, dir.path())?;

    let n = notice("leaver:E1042:2026-11-24", NoticeKind::Leaver, t0());
    let e = notifier
        .enqueue(&store, std::slice::from_ref(&n), t0())
        .await?;
    assert_eq!((e.added, e.skipped.len()), (1, 0), "{e:?}");
    let stats = deliver_due(&store, t0() + secs(2), &dispatcher, 100).await?;
    assert_eq!(
        stats,
        DeliveryStats {
            delivered: 1,
            ..Default::default()
        }
    );
    assert!(hr.received().is_empty(), "hr is not subscribed to leavers");
    let got = siem.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    let sig = r
        .headers
        .get("tenure-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Tenure-Signature")?;
    check_signature(sig, &r.body, (t0() + secs(2)).timestamp())?;
    assert!(sig.starts_with(&format!("t={},", (t0() + secs(2)).timestamp())));
    let id = r
        .headers
        .get("tenure-delivery")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Tenure-Delivery")?;
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body)?;
    assert_eq!(body["id"], id);
    assert_eq!(body["event_id"], "leaver:E1042:2026-11-24");
    assert_eq!(body["type"], "leaver");
    assert_eq!(body["at"], "2026-11-24T09:00:00Z");
    assert_eq!(body["identity"]["id"], "E1042");
    assert_eq!(body["identity"]["attributes"]["email"], "ada@example.com");
    assert_eq!(body["detail"], "terminated by HR");
    // a tampered body does not verify
    assert!(check_signature(sig, b"{}", (t0() + secs(2)).timestamp()).is_err());

    // the same notice again (a retried step): nothing new
    let again = notifier.enqueue(&store, &[n], t0() + secs(3)).await?;
    assert_eq!(again.added, 0);
    let stats = deliver_due(&store, t0() + secs(4), &dispatcher, 100).await?;
    assert_eq!(stats, DeliveryStats::default());
    assert_eq!(siem.received().len(), 1);
    Ok(())
}

/// A receiver that is down is retried with exponential backoff as the clock
/// moves, becomes visible as failed after the last attempt, and never holds
/// up the other receiver.
async fn down_receiver_backs_off_then_fails_alone(db: TestDb) -> TestResult {
    let up = Receiver::start(&[(200, "")]).await?;
    let down = format!("http://127.0.0.1:{}/hook", closed_port().await?);
    let dir = ConfigDir::new(&hooks(&[("up", &up.url, "[]"), ("down", &down, "[]")], ""))?;
    let cfg = dir.config()?;
    let store = db.store().await?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let dispatcher = Dispatcher::new(&cfg, dir.path())?;
    let notices = [
        notice("n1", NoticeKind::Leaver, t0()),
        notice("n2", NoticeKind::Suspended, t0()),
    ];
    assert_eq!(notifier.enqueue(&store, &notices, t0()).await?.added, 4);

    let mut now = t0();
    let s = deliver_due(&store, now, &dispatcher, 100).await?;
    // up: both delivered; down: the first attempt failed, the second was not tried
    assert_eq!(
        (s.delivered, s.retried, s.postponed, s.failed),
        (2, 1, 1, 0)
    );
    assert_eq!(up.received().len(), 2);

    // not due before the backoff (10 s), then 20 s, then failed (3 attempts)
    let mut waits = Vec::new();
    for _ in 0..10 {
        let pending = store.deliveries(Some(DeliveryState::Pending), 10).await?;
        let Some(next) = pending.iter().map(|d| d.next_attempt_at).min() else {
            break;
        };
        let early = deliver_due(&store, next - secs(1), &dispatcher, 100).await?;
        assert_eq!(
            early,
            DeliveryStats::default(),
            "nothing is due before {next}"
        );
        waits.push((next - now).num_seconds());
        now = next;
        deliver_due(&store, now, &dispatcher, 100).await?;
    }
    // the first message: 10 s, 20 s, failed; the second (its attempts not
    // counted while postponed) the same way after it
    assert_eq!(waits[..2], [10, 20], "{waits:?}");
    let failed = store.deliveries(Some(DeliveryState::Failed), 10).await?;
    assert_eq!(failed.len(), 2, "both messages to the down receiver fail");
    for f in &failed {
        assert_eq!(f.target, "down");
        assert_eq!(f.attempts, 3);
        let e = f.last_error.as_deref().unwrap_or("");
        assert!(e.contains("cannot connect"), "{e}");
    }
    let c = store.delivery_counts().await?;
    assert_eq!((c.pending, c.done, c.failed), (0, 2, 2));
    Ok(())
}

/// What answers mean: 4xx fails at once, 408/429/5xx are retried, 2xx is done.
async fn status_codes(db: TestDb) -> TestResult {
    let flaky = Receiver::start(&[(503, "busy"), (429, ""), (408, ""), (200, "")]).await?;
    let strict = Receiver::start(&[(422, "{\"error\":\"unknown field\"}")]).await?;
    let dir = ConfigDir::new(&hooks(
        &[("flaky", &flaky.url, "[]"), ("strict", &strict.url, "[]")],
        "",
    ))?;
    let cfg = dir.config()?;
    let store = db.store().await?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let dispatcher = Dispatcher::new(&cfg, dir.path())?;
    notifier
        .enqueue(&store, &[notice("n1", NoticeKind::Joiner, t0())], t0())
        .await?;
    let s = deliver_due(&store, t0(), &dispatcher, 100).await?;
    assert_eq!((s.failed, s.retried), (1, 1));
    let failed = store.deliveries(Some(DeliveryState::Failed), 10).await?;
    assert_eq!(failed[0].target, "strict");
    let e = failed[0].last_error.clone().unwrap_or_default();
    assert!(e.contains("422") && e.contains("unknown field"), "{e}");
    assert_eq!(failed[0].attempts, 1, "a refusal is not retried");

    // flaky: 503, then 429, then... max_attempts is 3, so the 408 is the last
    let mut now = t0();
    for _ in 0..2 {
        now += secs(3600);
        deliver_due(&store, now, &dispatcher, 100).await?;
    }
    assert_eq!(flaky.received().len(), 3);
    let c = store.delivery_counts().await?;
    assert_eq!((c.pending, c.failed), (0, 2), "out of attempts");
    // an operator retries: the receiver now answers 200
    assert_eq!(store.retry_failed_deliveries(now).await?, 2);
    strict.answer(200, "");
    let s = deliver_due(&store, now, &dispatcher, 100).await?;
    assert_eq!(s.delivered, 2);
    Ok(())
}

/// Deliveries live in the store: a new process (new store handle, new
/// dispatcher) delivers what the old one enqueued, and a claim whose process
/// died is delivered after its lease.
async fn survives_a_restart(db: TestDb) -> TestResult {
    let r = Receiver::start(&[(200, "")]).await?;
    let dir = ConfigDir::new(&hooks(&[("r", &r.url, "[]")], ""))?;
    let cfg = dir.config()?;
    {
        let store = db.store().await?;
        let notifier = Notifier::new(&cfg, dir.path())?;
        notifier
            .enqueue(
                &store,
                &[
                    notice("a", NoticeKind::Leaver, t0()),
                    notice("b", NoticeKind::Leaver, t0()),
                ],
                t0(),
            )
            .await?;
        // a process claims and dies before sending
        let claimed = store
            .claim_deliveries(t0(), tenure_notify::CLAIM_LEASE, 1)
            .await?;
        assert_eq!(claimed.len(), 1);
        store.close().await;
    }
    let store = db.store().await?;
    let dispatcher = Dispatcher::new(&cfg, dir.path())?;
    let s = deliver_due(&store, t0() + secs(1), &dispatcher, 100).await?;
    assert_eq!(s.delivered, 1, "the unclaimed one");
    let lease = chrono::Duration::from_std(tenure_notify::CLAIM_LEASE)?;
    let s = deliver_due(&store, t0() + lease, &dispatcher, 100).await?;
    assert_eq!(s.delivered, 1, "the dead process's claim, after its lease");
    assert_eq!(r.received().len(), 2);
    Ok(())
}

/// Two processes delivering from one store at once: every message is sent
/// exactly once.
async fn two_processes_send_each_message_once(db: TestDb) -> TestResult {
    let r = Receiver::start(&[(200, "")]).await?;
    let dir = ConfigDir::new(&hooks(&[("r", &r.url, "[]")], ""))?;
    let cfg = dir.config()?;
    let a = db.store().await?;
    let b = db.store().await?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let notices: Vec<_> = (0..60)
        .map(|i| notice(&format!("n{i}"), NoticeKind::Leaver, t0()))
        .collect();
    assert_eq!(notifier.enqueue(&a, &notices, t0()).await?.added, 60);
    let work = |store: tenure_store::Store| {
        let cfg = cfg.clone();
        let path = dir.path().to_path_buf();
        tokio::spawn(async move {
            let d = Dispatcher::new(&cfg, &path).map_err(|e| e.to_string())?;
            let mut sent = 0;
            loop {
                let s = deliver_due(&store, t0(), &d, 7)
                    .await
                    .map_err(|e| e.to_string())?;
                if s.delivered == 0 {
                    return Ok::<u64, String>(sent);
                }
                sent += s.delivered;
            }
        })
    };
    let (x, y) = tokio::join!(work(a), work(b));
    assert_eq!(x?? + y??, 60);
    let mut ids: Vec<String> = r
        .received()
        .iter()
        .filter_map(|g| {
            g.headers
                .get("tenure-delivery")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(ids.len(), 60);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60, "no message was sent twice");
    Ok(())
}

both!(
    two_processes_send_each_message_once,
    signed_and_delivered_once,
    down_receiver_backs_off_then_fails_alone,
    status_codes,
    survives_a_restart,
);

/// Configuration problems are named: a secret that cannot be read.
#[tokio::test]
async fn a_missing_secret_file_is_named() -> TestResult {
    let dir = ConfigDir::new(
        "[[webhook]]\nid = \"x\"\nurl = \"https://x.example/h\"\nsecret = { file = \"secrets/nope\" }\n",
    )?;
    let cfg = dir.config()?;
    let Err(e) = Dispatcher::new(&cfg, dir.path()) else {
        return Err("must fail".into());
    };
    let m = e.to_string();
    assert!(
        m.contains("webhook x: secret") && m.contains("secrets/nope"),
        "{m}"
    );
    Ok(())
}
