//! The notification outbox under load (`scripts/bench-notify`): not a test.
//!
//! 1. enqueue: `--notices N` leaver notices, each making one webhook
//!    message per receiver (`--receivers R`), through `Notifier::enqueue` in
//!    batches of 100;
//! 2. deliver: `deliver_due` ticks (limit 500) until the outbox is empty,
//!    every message POSTed, signed, to a local HTTP server on 127.0.0.1;
//! 3. claim with a backlog: `--backlog B` messages due in the future, then
//!    the time of one `deliver_due` tick that finds nothing due (the due
//!    index must make it independent of the backlog).
//!
//! `--backend sqlite|postgres`; PostgreSQL is `TENURE_TEST_POSTGRES` (or
//! postgres://postgres@127.0.0.1:5432/test), in a fresh database dropped
//! afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use chrono::{TimeZone, Utc};
use sqlx::{AnyConnection, AssertSqlSafe, Connection};
use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tenure_core::config::Config;
use tenure_notify::{Dispatcher, Notice, NoticeIdentity, NoticeKind, Notifier, deliver_due};
use tenure_store::{Channel, NewDelivery, Store};

type R<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R<()> {
    let notices: usize = arg("--notices", "1000").parse()?;
    let receivers: usize = arg("--receivers", "10").parse()?;
    let backlog: usize = arg("--backlog", "1000000").parse()?;
    let backend = arg("--backend", "sqlite");

    // The receiver: counts POSTs.
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/hook/{n}",
        axum::routing::post(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("hook-secret"), "bench-secret")?;
    let mut toml = String::from("[notifications]\nmax_attempts = 3\n");
    for n in 0..receivers {
        toml.push_str(&format!(
            "[[webhook]]\nid = \"r{n}\"\nurl = \"http://{addr}/hook/{n}\"\n\
             secret = {{ file = \"hook-secret\" }}\n"
        ));
    }
    let cfg = Config::parse(vec![("bench.toml".into(), toml)])?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let dispatcher = Dispatcher::new(&cfg, dir.path())?;

    let (url, _pg) = match backend.as_str() {
        "sqlite" => (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            None,
        ),
        "postgres" => {
            let base = std::env::var("TENURE_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let name = format!("tenure_notify_bench_{}", std::process::id());
            sqlx::any::install_default_drivers();
            let mut c = AnyConnection::connect(&base).await?;
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await?;
            let url = format!("{}/{name}", base.rsplit_once('/').map_or("", |p| p.0));
            (url, Some((c, name)))
        }
        other => return Err(format!("--backend sqlite|postgres, not {other}").into()),
    };
    let store = Store::open(&url).await?;
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();

    let notice = |i: usize| Notice {
        id: format!("leaver:E{i:06}"),
        kind: NoticeKind::Leaver,
        identity: Some(NoticeIdentity {
            id: format!("E{i:06}"),
            display_name: format!("Person {i}"),
            attributes: BTreeMap::from([("email".into(), format!("p{i}@example.com"))]),
            manager_email: None,
        }),
        system: None,
        detail: "terminated".into(),
        at: now,
    };

    let t = Instant::now();
    let all: Vec<Notice> = (0..notices).map(notice).collect();
    for chunk in all.chunks(100) {
        notifier.enqueue(&store, chunk, now).await?;
    }
    let enqueue = t.elapsed();
    let messages = notices * receivers;

    let t = Instant::now();
    let mut ticks = 0;
    loop {
        let s = deliver_due(&store, now, &dispatcher, 500).await?;
        ticks += 1;
        if s.delivered + s.retried + s.failed + s.postponed == 0 {
            break;
        }
    }
    let deliver = t.elapsed();
    assert_eq!(count.load(Ordering::Relaxed), messages as u64);

    // A backlog due tomorrow, then one empty tick.
    let t = Instant::now();
    let later = now + chrono::Duration::days(1);
    let batch: Vec<NewDelivery> = (0..10_000)
        .map(|i| NewDelivery {
            dedup_key: i.to_string(),
            channel: Channel::Webhook,
            target: "r0".into(),
            event: "leaver".into(),
            subject: None,
            payload: "{}".into(),
        })
        .collect();
    let mut made = 0;
    while made < backlog {
        let n = (backlog - made).min(batch.len());
        let items: Vec<NewDelivery> = batch[..n]
            .iter()
            .map(|d| NewDelivery {
                dedup_key: format!("backlog/{made}/{}", d.dedup_key),
                ..d.clone()
            })
            .collect();
        store.enqueue_deliveries(&items, later).await?;
        made += n;
    }
    let fill = t.elapsed();
    let mut tick_times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let s = deliver_due(&store, now + chrono::Duration::hours(1), &dispatcher, 500).await?;
        tick_times.push(t.elapsed());
        assert_eq!(s.delivered, 0);
    }
    tick_times.sort();

    println!("backend {backend}: {notices} notices x {receivers} webhooks = {messages} messages");
    println!(
        "  enqueue: {:.2} s ({:.0} messages/s)",
        enqueue.as_secs_f64(),
        messages as f64 / enqueue.as_secs_f64()
    );
    println!(
        "  deliver: {:.2} s in {ticks} ticks ({:.0} messages/s, each POSTed, signed, and marked done)",
        deliver.as_secs_f64(),
        messages as f64 / deliver.as_secs_f64()
    );
    println!(
        "  backlog of {backlog} not yet due (filled in {:.1} s): an empty tick takes median {:.2} ms, max {:.2} ms",
        fill.as_secs_f64(),
        tick_times[tick_times.len() / 2].as_secs_f64() * 1e3,
        tick_times[tick_times.len() - 1].as_secs_f64() * 1e3,
    );
    store.close().await;
    if let Some((mut c, name)) = _pg {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
            .execute(&mut c)
            .await?;
    }
    Ok(())
}
