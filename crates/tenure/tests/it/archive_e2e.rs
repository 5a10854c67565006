//! A staged deprovisioning pipeline through the engine, with time moved by
//! the test: disable at once, memberships after a day, the leaver's data
//! archived after 7 days (the wiki's pages transferred to the manager in its
//! own database, the CRM's archived by a signed webhook), accounts deleted
//! after 30 days except in the CRM, where an override only disables. Each
//! step is checked in the applications' real databases, and the plan is
//! empty after each.

use crate::support::{Org, at};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use std::sync::{Arc, Mutex};
use tenure_engine::service::Scheduler;
use tenure_engine::{Engine, FixedClock, NoProgress};

const SECRET: &str = "archive-webhook-secret";

/// What the webhook receiver got: (signature valid, body) per request.
type Received = Arc<Mutex<Vec<(bool, serde_json::Value)>>>;

/// A webhook receiver on `listener` that checks the signature (with its own
/// clock, as a real receiver does) and answers 200, or 401 when it is wrong.
fn receiver(listener: tokio::net::TcpListener, got: Received) {
    let app = axum::Router::new().route(
        "/archive",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let got = got.clone();
            async move {
                let sig = headers
                    .get(tenure_notify::webhook::SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let ok = tenure_notify::webhook::verify_signature(
                    SECRET.as_bytes(),
                    sig,
                    &body,
                    Utc::now().timestamp(),
                    300,
                );
                let v: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                got.lock().unwrap().push((ok, v));
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
}

/// The example organisation with the pipeline, the wiki transferring pages to
/// the manager, and the CRM archiving through a webhook on `port`. Adele
/// Goldberg (E1021, Sales, managed by Ada Lovelace) leaves on 1 December.
fn prepare(port: u16) -> Org {
    let org = Org::new();
    let cfg = org.path("config/tenure.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        "path = \"../hr/2026-11-01.csv\"",
        "path = \"../hr/current.csv\"",
    );
    let steps = "[[deprovisioning.step]]\nafter = \"30d\"\naction = \"delete\"\n";
    assert!(text.contains(steps));
    let text = text.replace(
        steps,
        &format!(
            "[[deprovisioning.step]]\nafter = \"7d\"\naction = \"archive\"\n\n{steps}\n\
             # Never delete in the CRM, only disable.\n\
             [[deprovisioning.override]]\nsystem = \"crm\"\naction = \"delete\"\ninstead = \"disable\"\n"
        ),
    );
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[[webhook]]\nid = \"archiver\"\nurl = \"http://127.0.0.1:{port}/archive\"\n\
             secret = {{ file = \"archive-secret\" }}\nevents = [\"quarantine\"]\ntimeout_seconds = 5\n"
        ),
    )
    .unwrap();
    std::fs::write(org.path("config/archive-secret"), format!("{SECRET}\n")).unwrap();
    let sys = org.path("config/systems.toml");
    let text = std::fs::read_to_string(&sys).unwrap();
    let text = text
        .replacen(
            "membership_entitlement_column = \"group_name\"\n",
            "membership_entitlement_column = \"group_name\"\ntransfer_table = \"pages\"\ntransfer_owner_column = \"author\"\n",
            1,
        )
        .replacen(
            "id = \"crm\"\n",
            "id = \"crm\"\narchive_webhook = \"archiver\"\n",
            1,
        );
    std::fs::write(&sys, text).unwrap();
    let hr = std::fs::read_to_string(org.path("hr/2026-11-01.csv")).unwrap();
    let adele = "E1021,Adele,Goldberg,adele.goldberg@acme.example,Sales,Sales Representative,London,Full-time,E1001,2022-03-10,";
    assert!(hr.contains(adele));
    std::fs::write(
        org.path("hr/current.csv"),
        hr.replace(adele, &format!("{adele}2026-12-01")),
    )
    .unwrap();
    org
}

async fn app(org: &Org, db: &str) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let url = format!("sqlite:{}", org.path(&format!("apps/{db}.db")).display());
    sqlx::SqliteConnection::connect(&url).await.unwrap()
}

async fn rows(org: &Org, db: &str, sql: &'static str) -> Vec<(String, i64)> {
    sqlx::query_as(sql)
        .fetch_all(&mut app(org, db).await)
        .await
        .unwrap()
}

async fn exec(org: &Org, db: &str, sql: &'static str) {
    sqlx::query(sql)
        .execute(&mut app(org, db).await)
        .await
        .unwrap();
}

/// The full plan's operations (as `system account action`) and findings.
async fn full_plan(engine: &Engine) -> (Vec<String>, Vec<String>) {
    let p = engine.plan(&NoProgress).await.unwrap().plan;
    (
        p.operations
            .iter()
            .map(|o| format!("{} {} {}", o.system, o.account, o.action.name()))
            .collect(),
        p.findings
            .iter()
            .map(tenure_core::render::finding_text)
            .collect(),
    )
}

/// Adele's account rows: (key, enabled) in the wiki and the CRM.
async fn adele(org: &Org) -> (Vec<(String, i64)>, Vec<(String, i64)>) {
    (
        rows(
            org,
            "wiki",
            "SELECT login, active FROM users WHERE login = 'adele.goldberg'",
        )
        .await,
        rows(
            org,
            "crm",
            "SELECT username, enabled FROM crm_users WHERE username = 'adele.goldberg'",
        )
        .await,
    )
}

async fn memberships(org: &Org) -> (i64, i64) {
    let w = rows(
        org,
        "wiki",
        "SELECT login, COUNT(*) FROM group_members WHERE login = 'adele.goldberg' GROUP BY login",
    )
    .await;
    let c = rows(
        org,
        "crm",
        "SELECT username, COUNT(*) FROM crm_user_roles WHERE username = 'adele.goldberg' GROUP BY username",
    )
    .await;
    (w.first().map_or(0, |r| r.1), c.first().map_or(0, |r| r.1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_pipeline_disables_strips_archives_and_deletes_with_an_override() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    receiver(listener, got.clone());
    let org = prepare(port);
    // The wiki's own table of pages, each with its author's login.
    exec(
        &org,
        "wiki",
        "CREATE TABLE pages (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author TEXT NOT NULL)",
    )
    .await;
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let engine = org.engine(&clock).await;
    let sched = Scheduler::new(&engine);

    // Provisioned; Adele writes pages in the wiki, as does Ada and someone else.
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert!(
        t.planned > 0 && t.executed.done as usize == t.planned,
        "{t:?}"
    );
    exec(
        &org,
        "wiki",
        "INSERT INTO pages (title, author) VALUES ('Q4 pipeline', 'adele.goldberg'), ('Leads', 'adele.goldberg'), ('Pricing', 'alovelace'), ('Kernel', 'alan.turing')",
    )
    .await;
    let (ops, _) = full_plan(&engine).await;
    assert!(ops.is_empty(), "{ops:?}");
    assert_eq!(
        adele(&org).await,
        (
            vec![("adele.goldberg".into(), 1)],
            vec![("adele.goldberg".into(), 1)]
        )
    );
    assert_eq!(memberships(&org).await, (2, 1));

    // Day 0: disabled everywhere, memberships kept.
    clock.set(at(2026, 12, 1, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty() && t.planned > 0, "{t:?}");
    assert_eq!(
        adele(&org).await,
        (
            vec![("adele.goldberg".into(), 0)],
            vec![("adele.goldberg".into(), 0)]
        )
    );
    assert_eq!(memberships(&org).await, (2, 1));
    assert!(full_plan(&engine).await.0.is_empty(), "converged on day 0");

    // Day 1: memberships removed.
    clock.set(at(2026, 12, 2, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty() && t.planned == 3, "{t:?}");
    assert_eq!(memberships(&org).await, (0, 0));
    assert!(full_plan(&engine).await.0.is_empty(), "converged on day 1");
    assert!(got.lock().unwrap().is_empty(), "nothing archived yet");

    // Day 7: the archive. The wiki's pages go to Ada, her manager (her
    // account there existed before Tenure and was correlated: `alovelace`); the CRM's
    // webhook gets one signed request for Adele's account.
    clock.set(at(2026, 12, 8, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!((t.planned, t.executed.done), (2, 2), "{t:?}");
    assert_eq!(
        rows(
            &org,
            "wiki",
            "SELECT title, id FROM pages WHERE author = 'alovelace' ORDER BY title"
        )
        .await
        .into_iter()
        .map(|r| r.0)
        .collect::<Vec<_>>(),
        ["Leads", "Pricing", "Q4 pipeline"]
    );
    assert_eq!(
        rows(
            &org,
            "wiki",
            "SELECT author, COUNT(*) FROM pages GROUP BY author ORDER BY author"
        )
        .await,
        vec![("alan.turing".into(), 1), ("alovelace".into(), 3)]
    );
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        let (valid, body) = &got[0];
        assert!(valid, "the signature verifies");
        assert_eq!(body["type"], "archive");
        assert_eq!(body["system"], "crm");
        assert_eq!(body["account"], "adele.goldberg");
        assert_eq!(body["identity"], "E1021");
    }
    // Converged: no repeated archive, on the next tick or in a full plan.
    let (ops, findings) = full_plan(&engine).await;
    assert!(ops.is_empty(), "{ops:?}");
    assert!(
        !findings.iter().any(|f| f.contains("E1021")),
        "{findings:?}"
    );
    clock.set(at(2026, 12, 9, 9));
    let t = sched.tick().await;
    assert_eq!((t.planned, t.executed.done), (0, 0), "{t:?}");
    assert_eq!(got.lock().unwrap().len(), 1);

    // Day 30: the wiki account is deleted; the CRM's stays, disabled (the override).
    clock.set(at(2026, 12, 31, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!((t.planned, t.executed.done), (1, 1), "{t:?}");
    assert_eq!(
        adele(&org).await,
        (vec![], vec![("adele.goldberg".into(), 0)])
    );
    let (ops, _) = full_plan(&engine).await;
    assert!(ops.is_empty(), "converged on day 30: {ops:?}");
    assert_eq!(
        rows(
            &org,
            "wiki",
            "SELECT author, COUNT(*) FROM pages GROUP BY author ORDER BY author"
        )
        .await,
        vec![("alan.turing".into(), 1), ("alovelace".into(), 3)],
        "data transferred stays transferred"
    );

    // The timeline shows the pipeline and the override.
    let tl =
        tenure_engine::timeline::timeline(&engine, &tenure_core::IdentityId::new("E1021").unwrap())
            .await
            .unwrap();
    let steps: Vec<(String, Vec<String>)> = tl
        .schedule
        .iter()
        .map(|s| (s.step.clone(), s.overrides.clone()))
        .collect();
    assert_eq!(
        steps,
        [
            ("disable".to_owned(), vec![]),
            ("remove_memberships".to_owned(), vec![]),
            ("archive".to_owned(), vec![]),
            ("delete".to_owned(), vec!["crm: disable".to_owned()]),
        ]
    );
    assert!(
        tl.operations
            .iter()
            .any(|o| o.system == "crm" && o.action == "archive" && o.state == "done"),
        "{:?}",
        tl.operations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_webhook_that_is_down_leaves_the_archive_queued_until_it_answers() {
    // A port nobody listens on (yet).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let org = prepare(port);
    // The wiki's own table of pages, each with its author's login.
    exec(
        &org,
        "wiki",
        "CREATE TABLE pages (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author TEXT NOT NULL)",
    )
    .await;
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let engine = org.engine(&clock).await;
    let sched = Scheduler::new(&engine);
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");

    clock.set(at(2026, 12, 8, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    let ops = engine
        .store
        .operations_of_identity(&tenure_core::IdentityId::new("E1021").unwrap())
        .await
        .unwrap();
    let archive: Vec<_> = ops
        .iter()
        .filter(|q| q.operation.action.name() == "archive")
        .collect();
    // The wiki's archive is done (nothing to transfer: it read as archived and
    // was never planned); the CRM's waits, queued, with the error.
    assert_eq!(archive.len(), 1, "{ops:?}");
    assert_eq!(archive[0].operation.system.as_str(), "crm");
    assert_eq!(archive[0].state.as_str(), "queued", "{:?}", archive[0]);
    assert!(
        archive[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("archive webhook archiver")),
        "{:?}",
        archive[0].last_error
    );
    // A plan does not queue it twice.
    let p = engine.plan(&NoProgress).await.unwrap().plan;
    assert!(
        !p.operations.iter().any(|o| o.action.name() == "archive"),
        "{:?}",
        p.operations
    );

    // The receiver comes back; after the backoff the archive is done.
    let got: Received = Arc::default();
    receiver(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
        got.clone(),
    );
    clock.set(at(2026, 12, 8, 12));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(t.executed.done, 1, "{t:?}");
    assert_eq!(got.lock().unwrap().len(), 1);
    assert!(got.lock().unwrap()[0].0);
    let ops = engine
        .store
        .operations_of_identity(&tenure_core::IdentityId::new("E1021").unwrap())
        .await
        .unwrap();
    assert!(
        ops.iter()
            .any(|q| q.operation.action.name() == "archive" && q.state.as_str() == "done")
    );
    let (ops, _) = full_plan(&engine).await;
    assert!(ops.is_empty(), "{ops:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehire_after_the_archive_gets_access_back_and_the_data_stays_transferred() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    receiver(listener, got.clone());
    let org = prepare(port);
    exec(
        &org,
        "wiki",
        "CREATE TABLE pages (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author TEXT NOT NULL)",
    )
    .await;
    exec(
        &org,
        "wiki",
        "INSERT INTO pages (title, author) VALUES ('Q4 pipeline', 'adele.goldberg')",
    )
    .await;
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let engine = org.engine(&clock).await;
    let sched = Scheduler::new(&engine);
    assert!(sched.tick().await.errors.is_empty());
    clock.set(at(2026, 12, 8, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(got.lock().unwrap().len(), 1, "archived through the webhook");
    assert_eq!(
        engine
            .store
            .archived_accounts(&tenure_core::SystemId::new("crm").unwrap())
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["adele.goldberg"]
    );

    // HR takes the termination back: Adele is active again.
    let hr = std::fs::read_to_string(org.path("hr/current.csv")).unwrap();
    std::fs::write(
        org.path("hr/current.csv"),
        hr.replace("2022-03-10,2026-12-01", "2022-03-10,"),
    )
    .unwrap();
    clock.set(at(2026, 12, 10, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(t.imported.len(), 1, "{t:?}");
    assert_eq!(
        adele(&org).await,
        (
            vec![("adele.goldberg".into(), 1)],
            vec![("adele.goldberg".into(), 1)]
        ),
        "enabled again"
    );
    assert_eq!(memberships(&org).await, (2, 1), "granted again");
    assert_eq!(
        rows(
            &org,
            "wiki",
            "SELECT author, COUNT(*) FROM pages GROUP BY author"
        )
        .await,
        vec![("alovelace".into(), 1)],
        "data transferred stays transferred"
    );
    assert!(
        engine
            .store
            .archived_accounts(&tenure_core::SystemId::new("crm").unwrap())
            .await
            .unwrap()
            .is_empty(),
        "in use again: a later leave archives again"
    );
    assert!(full_plan(&engine).await.0.is_empty());
    assert_eq!(got.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_the_receiver_refuses_fails_visibly_and_is_not_done() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    receiver(listener, got.clone());
    let org = prepare(port);
    // Tenure signs with another key than the receiver expects: 401.
    std::fs::write(org.path("config/archive-secret"), "not-the-receivers-key\n").unwrap();
    exec(
        &org,
        "wiki",
        "CREATE TABLE pages (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author TEXT NOT NULL)",
    )
    .await;
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let engine = org.engine(&clock).await;
    let sched = Scheduler::new(&engine);
    assert!(sched.tick().await.errors.is_empty());
    clock.set(at(2026, 12, 8, 9));
    sched.tick().await;
    assert_eq!(got.lock().unwrap().len(), 1);
    assert!(!got.lock().unwrap()[0].0, "the signature did not verify");
    let ops = engine
        .store
        .operations_of_identity(&tenure_core::IdentityId::new("E1021").unwrap())
        .await
        .unwrap();
    let archive = ops
        .iter()
        .find(|q| q.operation.action.name() == "archive")
        .unwrap();
    assert_eq!(archive.state.as_str(), "failed", "{archive:?}");
    assert!(
        archive
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("401")),
        "{archive:?}"
    );
    assert!(
        engine
            .store
            .archived_accounts(&tenure_core::SystemId::new("crm").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}
