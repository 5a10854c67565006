//! Crashes and concurrency: a real `kill -9` in the middle of an apply, and two
//! processes sharing one PostgreSQL queue.

use crate::support::{Org, write};
use sqlx::Connection;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn synthetic_org(n: usize) -> Org {
    let org = Org::new();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let csv = tenure_sources::synthetic::generate_csv(n, 42, today);
    write(&org.path("hr/big.csv"), &csv);
    org
}

async fn scalar(url: &str, sql: &'static str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let v: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    v
}

/// Every queued operation done, each with exactly one `operation.done` record.
fn assert_each_operation_done_once(org: &Org, total: i64) {
    let audit = org.audit();
    let keys: Vec<(i64, i64)> = audit
        .iter()
        .filter(|r| r["action"] == "operation.done")
        .map(|r| {
            let d: serde_json::Value = serde_json::from_str(r["detail"].as_str().unwrap()).unwrap();
            (d["plan"].as_i64().unwrap(), d["seq"].as_i64().unwrap())
        })
        .collect();
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "an operation was recorded done twice"
    );
    assert_eq!(
        keys.len() as i64,
        total,
        "every queued operation is recorded done"
    );
    org.run(&["audit", "verify"]).ok();
}

#[test]
fn killing_apply_midway_loses_nothing_and_a_rerun_finishes() {
    let org = synthetic_org(6000);
    org.import("2026-11-01", "hr/big.csv");
    let mut child = org
        .command(&[
            "--now",
            "2026-11-01",
            "--lease-seconds",
            "1",
            "--batch",
            "300",
            "apply",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let count = |state: &'static str| -> i64 {
        let sql = match state {
            "done" => "SELECT COUNT(*) FROM operations WHERE state = 'done'",
            "running" => "SELECT COUNT(*) FROM operations WHERE state = 'running'",
            _ => "SELECT COUNT(*) FROM operations",
        };
        rt.block_on(scalar(&org.database, sql))
    };
    // Kill it in the middle of a batch: some operations claimed and running, so the
    // rerun must take over claims of a dead process (after the lease, in real time,
    // whatever --now says). Polling for a claim in flight and then killing races
    // with batches that finish in milliseconds, so once work is under way the wiki's
    // database is locked, as a hung system would be: the wiki's lane is then stuck
    // inside a claimed batch (its connector waits 5 s for the lock) when the kill comes.
    loop {
        if count("done") >= 600 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "apply finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "apply made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let wiki = format!("sqlite:{}", org.path("apps/wiki.db").display());
    let lock = rt.block_on(async {
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&wiki).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut c)
            .await
            .unwrap();
        c
    });
    let locked = Instant::now();
    while count("running") == 0 || locked.elapsed() < Duration::from_millis(500) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "apply finished before it could be killed"
        );
        assert!(
            locked.elapsed() < Duration::from_secs(3),
            "no claim in flight while the wiki was locked"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let (total, done) = (count("all"), count("done"));
    assert!(
        done < total,
        "the kill came too late to test anything ({done} of {total} done)"
    );
    assert!(count("running") > 0, "the dead process left claims behind");
    rt.block_on(lock.close()).unwrap(); // the hung system answers again

    // Start again: the dead process's claims expire, the rest is executed, nothing twice.
    let mut rerun = org
        .command(&[
            "--now",
            "2026-11-01",
            "--lease-seconds",
            "1",
            "apply",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let began = Instant::now();
    let status = loop {
        if let Some(status) = rerun.try_wait().unwrap() {
            break status;
        }
        if began.elapsed() > Duration::from_secs(90) {
            rerun.kill().unwrap();
            panic!("the rerun is stuck: it did not take over the dead process's claims");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: Option<&mut dyn std::io::Read>| {
        let mut text = String::new();
        if let Some(p) = p {
            p.read_to_string(&mut text).unwrap();
        }
        text
    };
    let stdout = read(rerun.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
    let stderr = read(rerun.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
    assert!(status.success(), "the rerun failed\n{stdout}\n{stderr}");
    let r = crate::support::Run {
        code: 0,
        stdout,
        stderr,
    };
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["resumed"]["done"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        org.pending_operations("2026-11-01"),
        0,
        "the systems match policy"
    );
    let total = rt.block_on(scalar(&org.database, "SELECT COUNT(*) FROM operations"));
    let done = rt.block_on(scalar(
        &org.database,
        "SELECT COUNT(*) FROM operations WHERE state = 'done'",
    ));
    assert_eq!(done, total);
    assert_each_operation_done_once(&org, total);
}

#[test]
fn two_processes_share_one_postgres_queue_without_doing_anything_twice() {
    let Ok(base) = std::env::var("TENURE_TEST_POSTGRES") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "TENURE_TEST_POSTGRES is not set, and CI runs every variant"
        );
        eprintln!("TENURE_TEST_POSTGRES is not set: the two-process PostgreSQL test is skipped");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = format!(
        "tenure_cli_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    });
    // Dropped on every exit, a failed assertion included: the shared server keeps nothing.
    let _drop = DropDatabase {
        base: base.clone(),
        name: name.clone(),
    };
    let url = match base.rfind('/') {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => panic!("TENURE_TEST_POSTGRES must end in /database"),
    };
    let mut org = synthetic_org(3000);
    org.database = url.clone();
    org.import("2026-11-01", "hr/big.csv");
    org.run(&["--now", "2026-11-01", "apply", "--queue-only"])
        .ok();
    let total = rt.block_on(scalar(&url, "SELECT COUNT(*) FROM operations"));
    assert!(total > 5000, "{total}");

    let spawn = || {
        org.command(&["--now", "2026-11-01", "--batch", "250", "work"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let done = rt.block_on(scalar(
        &url,
        "SELECT COUNT(*) FROM operations WHERE state = 'done'",
    ));
    assert_eq!(done, total);
    let confirmed = |o: &std::process::Output| -> i64 {
        let out = String::from_utf8_lossy(&o.stdout);
        out.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"))
    };
    let (ca, cb) = (confirmed(&a), confirmed(&b));
    assert!(
        ca > 0 && cb > 0,
        "both processes took a share of the work ({ca} and {cb})"
    );
    assert_eq!(ca + cb, total, "together they did everything, once");
    assert_each_operation_done_once(&org, total);
    assert_eq!(org.pending_operations("2026-11-01"), 0);
}

/// Drops a test database when it goes out of scope.
pub struct DropDatabase {
    pub base: String,
    pub name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // A fresh thread: this may run while a panic unwinds through a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Runtime::new() else {
                return;
            };
            rt.block_on(async {
                sqlx::any::install_default_drivers();
                if let Ok(admin) = sqlx::AnyPool::connect(&base).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Spawns `tenure serve` on a free port; returns the child and the port.
fn spawn_serve(org: &Org) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = org
        .command(&[
            "--now",
            "2026-11-01",
            "--lease-seconds",
            "1",
            "--batch",
            "300",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .trim_start_matches("listening on http://127.0.0.1:")
        .parse()
        .unwrap_or_else(|_| panic!("unexpected first line {line:?}"));
    (child, port)
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

#[test]
fn killing_the_service_midway_loses_nothing_and_a_restart_finishes() {
    let org = synthetic_org(6000);
    let cfg = org.path("config/tenure.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "path = \"../hr/2026-11-01.csv\"",
        "path = \"../hr/big.csv\"",
    );
    write(&cfg, &text);
    let (mut child, _) = spawn_serve(&org);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let count = |sql: &'static str| rt.block_on(scalar(&org.database, sql));
    let started = Instant::now();
    // Killed in the middle of the scheduler's first round, with claims outstanding.
    loop {
        let done = count("SELECT COUNT(*) FROM operations WHERE state = 'done'");
        let running = count("SELECT COUNT(*) FROM operations WHERE state = 'running'");
        if done >= 600 && running > 0 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the service made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let total = count("SELECT COUNT(*) FROM operations");
    let done = count("SELECT COUNT(*) FROM operations WHERE state = 'done'");
    assert!(done < total, "the kill came too late ({done} of {total})");

    // Restarted, it takes the dead claims over and finishes everything, once.
    let (mut child, port) = spawn_serve(&org);
    let began = Instant::now();
    loop {
        let done = count("SELECT COUNT(*) FROM operations WHERE state = 'done'");
        if ready(port) && done == total {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the restarted service did not finish ({done} of {total})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_each_operation_done_once(&org, total);
    assert_eq!(org.pending_operations("2026-11-01"), 0, "converged");
}
