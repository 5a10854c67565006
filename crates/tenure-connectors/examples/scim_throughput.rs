//! SCIM connector benchmark (`scripts/bench-scim`): operations per second
//! through the connector against a local scim2-server, and how many HTTP
//! requests a plan of 1,000 changes costs.
//!
//! ```text
//! cargo run --release -p tenure-connectors --example scim_throughput -- [USERS] [CONCURRENCY]
//! ```
//!
//! Starts its own scim2-server (from `TENURE_TEST_SCIM_VENV`, default
//! `/opt/tenure-test-venv`) on a free loopback port and stops it at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tenure_connectors::Connector;
use tenure_connectors::scim::ScimConnector;
use tenure_core::config::Config;
use tenure_core::plan::AttributeChange;
use tenure_core::{AccountKey, Action, EntitlementName, IdentityId, Operation, SystemId};

const TOKEN: &str = "bench-token";

fn op(i: usize, action: Action) -> Operation {
    Operation {
        system: SystemId::new("app").unwrap(),
        identity: Some(IdentityId::new(format!("E{i:06}")).unwrap()),
        account: AccountKey::new(format!("user{i:06}")).unwrap(),
        action,
        reasons: vec![],
    }
}

fn ent(s: &str) -> EntitlementName {
    EntitlementName::new(s).unwrap()
}

fn update(i: usize, before: &str, after: &str) -> Operation {
    op(
        i,
        Action::UpdateAccount {
            changes: [(
                "department".to_owned(),
                AttributeChange {
                    before: Some(before.to_owned()),
                    after: after.to_owned(),
                },
            )]
            .into_iter()
            .collect(),
        },
    )
}

async fn phase(c: &ScimConnector, name: &str, ops: Vec<Operation>) {
    let before = c.requests();
    let t = Instant::now();
    let results = c.apply(&ops).await;
    let secs = t.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("{name}: first failure: {e}");
    }
    println!(
        "{name:<18} {:>6} ops  {:>7.2} s  {:>8.1} ops/s  {:>6} requests  {failed} failed",
        ops.len(),
        secs,
        ops.len() as f64 / secs,
        c.requests() - before
    );
}

fn system(base: &str, concurrency: usize) -> tenure_core::config::SystemConfig {
    let text = format!(
        r#"
[[system]]
id = "app"
kind = "scim"
entitlements = ["staff", "sales"]
[system.account]
key = "identity.username"
attributes = {{ display_name = "identity.name", email = "identity.email", department = "identity.department" }}
[system.settings]
base_url = "{base}"
auth = {{ type = "bearer", token = {{ file = "token" }} }}
requests_per_second = 0
max_concurrency = {concurrency}
page_size = 500
[system.settings.attributes]
display_name = "displayName"
email = 'emails[type eq "work"].value'
department = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
"#
    );
    let cfg = Config::parse(vec![("bench.toml".to_owned(), text)]).unwrap();
    cfg.systems[0].item.clone()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let venv = std::env::var_os("TENURE_TEST_SCIM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tenure-test-venv"));
    let bin = venv.join("bin/scim2-server");
    assert!(
        bin.is_file(),
        "{} missing: run scripts/install-scim-test-deps",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(&bin)
        .args([
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--bearer-token",
            TOKEN,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/v2");
    let sys = system(&base, concurrency);
    // Wait for the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = ScimConnector::new(&sys, dir.path()).await.unwrap();
        if probe.read_accounts().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "scim2-server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The groups the entitlements are (Tenure does not create groups).
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
        .build()
        .unwrap();
    for g in ["staff", "sales"] {
        let r = client
            .post(format!("{base}/Groups"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
            .body(format!(r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"{g}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }

    println!("scim2-server 0.8.3 on loopback, {n} users, max_concurrency {concurrency}");
    let c = ScimConnector::new(&sys, dir.path()).await.unwrap();
    let attrs = |i: usize| {
        [
            ("display_name".to_owned(), format!("User {i}")),
            ("email".to_owned(), format!("user{i:06}@example.com")),
            ("department".to_owned(), "Sales".to_owned()),
        ]
        .into_iter()
        .collect()
    };
    phase(
        &c,
        "create",
        (0..n)
            .map(|i| {
                op(
                    i,
                    Action::CreateAccount {
                        attributes: attrs(i),
                    },
                )
            })
            .collect(),
    )
    .await;
    phase(
        &c,
        "add membership",
        (0..n)
            .map(|i| {
                op(
                    i,
                    Action::AddMembership {
                        entitlement: ent("staff"),
                    },
                )
            })
            .collect(),
    )
    .await;
    phase(
        &c,
        "update",
        (0..n).map(|i| update(i, "Sales", "Ops")).collect(),
    )
    .await;
    phase(
        &c,
        "disable",
        (0..n).map(|i| op(i, Action::DisableAccount)).collect(),
    )
    .await;

    // A plan of 1,000 changes, as `tenure apply` runs it: read, then apply.
    let c = ScimConnector::new(&sys, dir.path()).await.unwrap();
    let t = Instant::now();
    let read = c.read_accounts().await.unwrap();
    println!(
        "read (reconcile)   {:>6} accounts {:>6.2} s  {:>6} requests (discovery 3, pages of 500)",
        read.accounts.len(),
        t.elapsed().as_secs_f64(),
        c.requests()
    );
    let m = n.min(250);
    let mut plan = Vec::new();
    for i in 0..m {
        plan.push(op(i, Action::EnableAccount));
        plan.push(update(i, "Ops", "Finance"));
        plan.push(op(
            i,
            Action::AddMembership {
                entitlement: ent("sales"),
            },
        ));
        plan.push(op(
            i,
            Action::RemoveMembership {
                entitlement: ent("staff"),
            },
        ));
    }
    let before = c.requests();
    phase(&c, "plan of changes", plan.clone()).await;
    println!(
        "requests per change: {:.3} ({} requests for {} changes)",
        (c.requests() - before) as f64 / plan.len() as f64,
        c.requests() - before,
        plan.len()
    );
    let _ = child.kill();
    let _ = child.wait();
}
