//! The LDAP connector's benchmark (not a test), run by `scripts/bench-ldap`.
//!
//! ```text
//! cargo run --release -p tenure-connectors --example ldap_bench -- provision [ACCOUNTS] [GROUPS_PER_ACCOUNT] [ROUNDS]
//! cargo run --release -p tenure-connectors --example ldap_bench -- read [ENTRIES]
//! ```
//!
//! `provision` (default 10,000 accounts, 2 groups each): against a private
//! `slapd` (durable mdb, the test configuration), provisions the accounts
//! and their group memberships through the connector, in batches of 4,000
//! operations as the engine's executor claims them (every create first, then
//! the memberships the creates released), and then the same entries and
//! memberships on a fresh tree with the raw tools: one `ldapadd` of every
//! entry and one `ldapmodify` adding each membership as a single value. It
//! runs both ROUNDS times (default 3), alternating which goes first, and
//! prints each round, the medians, Tenure's operations per second and the
//! ratio of the times.
//!
//! `read` (default 100,000 entries): loads that many people and 20 groups
//! holding them all with `slapadd`, then times one full reconciliation read
//! (`read_accounts`: a paged search of people and one of groups) and prints
//! the process's peak resident memory (VmHWM). Run it as its own process so
//! that the peak is the read's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/it/ldap_slapd.rs"]
mod ldap_slapd;

use ldap_slapd::{ADMIN_DN, ADMIN_PW, GROUPS, PEOPLE, Slapd, SlapdOptions};
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};
use tenure_connectors::Connector;
use tenure_connectors::ldap::LdapConnector;
use tenure_core::config::Config;
use tenure_core::{AccountKey, Action, EntitlementName, Operation, SystemId};

const BATCH: usize = 4000;
const GROUPS_N: usize = 20;
const PLACEHOLDER: &str = "cn=nobody,dc=example,dc=com";

fn system(url: &str) -> tenure_core::config::SystemConfig {
    let text = format!(
        r#"
[[system]]
id = "directory"
kind = "ldap"
[system.account]
key = "identity.username"
[system.account.attributes]
cn = "identity.name"
sn = "identity.family_name"
email = "identity.email"
[system.settings]
url = "{url}"
bind_dn = "{ADMIN_DN}"
password = {{ file = "ldap-password" }}
people_base = "{PEOPLE}"
groups_base = "{GROUPS}"
attributes = {{ email = "mail" }}
group_placeholder_member = "{PLACEHOLDER}"
{tuning}
"#,
        tuning = std::env::var("LDAP_BENCH_SETTINGS").unwrap_or_default()
    );
    let cfg = Config::parse(vec![("bench.toml".to_owned(), text)]).expect("config");
    cfg.systems[0].item.clone()
}

fn groups_ldif() -> String {
    let mut s = String::new();
    for g in 0..GROUPS_N {
        let _ = write!(
            s,
            "dn: cn=group{g:02},{GROUPS}\nobjectClass: groupOfNames\ncn: group{g:02}\nmember: {PLACEHOLDER}\n\n"
        );
    }
    s
}

fn groups_of(i: usize, per: usize) -> Vec<usize> {
    (0..per).map(|j| (i + j * 7) % GROUPS_N).collect()
}

fn user(i: usize) -> String {
    format!("user{i:06}")
}

fn op(account: &str, action: Action) -> Operation {
    Operation {
        system: SystemId::new("directory").unwrap(),
        identity: None,
        account: AccountKey::new(account).unwrap(),
        action,
        reasons: vec![],
    }
}

fn timed_tool(slapd: &Slapd, tool: &str, ldif: &std::path::Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(tool)
        .args([
            "-x",
            "-H",
            &slapd.url(),
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PW,
            "-f",
        ])
        .arg(ldif)
        .output()
        .expect(tool);
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn count(slapd: &Slapd, filter: &str) -> usize {
    slapd
        .ldapsearch(PEOPLE, filter, &["1.1"])
        .matches("dn: ")
        .count()
}

/// Provisions through the connector on a fresh tree; returns the time taken.
async fn through_tenure(accounts: usize, per: usize) -> Duration {
    let Some(slapd) = Slapd::start("ldap_bench", SlapdOptions::default()) else {
        std::process::exit(2);
    };
    slapd.ldapadd(&groups_ldif());
    std::fs::write(slapd.dir.path().join("ldap-password"), ADMIN_PW).unwrap();
    let c = LdapConnector::new(&system(&slapd.url()), slapd.dir.path())
        .await
        .expect("connector");
    let mut creates = Vec::with_capacity(accounts);
    let mut memberships = Vec::with_capacity(accounts * per);
    for i in 0..accounts {
        let u = user(i);
        creates.push(op(
            &u,
            Action::CreateAccount {
                attributes: [
                    ("cn".to_owned(), format!("User {i}")),
                    ("sn".to_owned(), "Bench".to_owned()),
                    ("email".to_owned(), format!("{u}@example.com")),
                ]
                .into(),
            },
        ));
        for g in groups_of(i, per) {
            memberships.push(op(
                &u,
                Action::AddMembership {
                    entitlement: EntitlementName::new(format!("group{g:02}")).unwrap(),
                },
            ));
        }
    }
    let start = Instant::now();
    for batch in creates.chunks(BATCH).chain(memberships.chunks(BATCH)) {
        let results = c.apply(batch).await;
        if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
            panic!("tenure: an operation failed: {e}");
        }
    }
    let took = start.elapsed();
    assert_eq!(count(&slapd, "(uid=*)"), accounts);
    let read = c.read_accounts().await.expect("read back");
    let held: usize = read.accounts.values().map(|a| a.entitlements.len()).sum();
    assert_eq!(held, accounts * per, "every membership is in the directory");
    c.close().await;
    took
}

/// The same entries and memberships with `ldapadd` and `ldapmodify` on a fresh tree.
fn through_raw_tools(accounts: usize, per: usize) -> Duration {
    let slapd = Slapd::start("ldap_bench", SlapdOptions::default()).unwrap();
    slapd.ldapadd(&groups_ldif());
    let adds = slapd.dir.path().join("adds.ldif");
    let mods = slapd.dir.path().join("mods.ldif");
    let mut a = String::new();
    let mut m = String::new();
    for i in 0..accounts {
        let u = user(i);
        let _ = write!(
            a,
            "dn: uid={u},{PEOPLE}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nuid: {u}\ncn: User {i}\nsn: Bench\nmail: {u}@example.com\n\n"
        );
    }
    for i in 0..accounts {
        for g in groups_of(i, per) {
            let _ = write!(
                m,
                "dn: cn=group{g:02},{GROUPS}\nchangetype: modify\nadd: member\nmember: uid={},{PEOPLE}\n\n",
                user(i)
            );
        }
    }
    std::fs::write(&adds, a).unwrap();
    std::fs::write(&mods, m).unwrap();
    let took = timed_tool(&slapd, "ldapadd", &adds) + timed_tool(&slapd, "ldapmodify", &mods);
    assert_eq!(count(&slapd, "(uid=*)"), accounts);
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Rounds of both, alternating which goes first, so that a change in the
/// machine's load falls on both alike.
async fn provision(accounts: usize, per: usize, rounds: usize) {
    let total_ops = accounts * (1 + per);
    println!(
        "provision: {accounts} accounts, {per} groups each: {total_ops} operations, {rounds} rounds"
    );
    let secs = |d: Duration| d.as_secs_f64();
    let (mut tenure, mut raw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (t, r) = if round % 2 == 0 {
            let t = through_tenure(accounts, per).await;
            (t, through_raw_tools(accounts, per))
        } else {
            let r = through_raw_tools(accounts, per);
            (through_tenure(accounts, per).await, r)
        };
        println!(
            "  round {}: tenure {:.2} s, raw tools {:.2} s, ratio {:.2}x",
            round + 1,
            secs(t),
            secs(r),
            secs(t) / secs(r)
        );
        tenure.push(t);
        raw.push(r);
        ratios.push(secs(t) / secs(r));
    }
    let (t, r) = (median(tenure), median(raw));
    ratios.sort_by(f64::total_cmp);
    println!(
        "  tenure (connector, batches of {BATCH}), median: {:.2} s, {:.0} operations/s",
        secs(t),
        total_ops as f64 / secs(t)
    );
    println!(
        "  raw ldapadd + ldapmodify, median:            {:.2} s, {:.0} operations/s",
        secs(r),
        total_ops as f64 / secs(r)
    );
    println!(
        "  ratio tenure / raw: median {:.2}x, range {:.2}x to {:.2}x (goal: at most 1.5x)",
        ratios.get(ratios.len() / 2).copied().unwrap_or_default(),
        ratios.first().copied().unwrap_or_default(),
        ratios.last().copied().unwrap_or_default()
    );
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn read(entries: usize) {
    let Some(mut slapd) = Slapd::start("ldap_bench", SlapdOptions::default()) else {
        std::process::exit(2);
    };
    let path = slapd.dir.path().join("people.ldif");
    {
        use std::io::Write as _;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..entries {
            let u = user(i);
            write!(
                f,
                "dn: uid={u},{PEOPLE}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nuid: {u}\ncn: User {i}\nsn: Bench\nmail: {u}@example.com\n\n"
            )
            .unwrap();
        }
        for g in 0..GROUPS_N {
            write!(
                f,
                "dn: cn=group{g:02},{GROUPS}\nobjectClass: groupOfNames\ncn: group{g:02}\nmember: {PLACEHOLDER}\n"
            )
            .unwrap();
            for i in (g..entries).step_by(GROUPS_N) {
                writeln!(f, "member: uid={},{PEOPLE}", user(i)).unwrap();
            }
            writeln!(f).unwrap();
        }
    }
    slapd.load_offline(&path);
    std::fs::write(slapd.dir.path().join("ldap-password"), ADMIN_PW).unwrap();
    let before = vm_hwm_kib();
    let c = LdapConnector::new(&system(&slapd.url()), slapd.dir.path())
        .await
        .expect("connector");
    let start = Instant::now();
    let accounts = c.read_accounts().await.expect("read");
    let took = start.elapsed();
    assert_eq!(accounts.accounts.len(), entries);
    let held: usize = accounts
        .accounts
        .values()
        .map(|a| a.entitlements.len())
        .sum();
    assert_eq!(held, entries);
    let peak = vm_hwm_kib();
    println!(
        "read: {entries} entries and {GROUPS_N} groups ({entries} memberships): {:.2} s, {:.0} entries/s",
        took.as_secs_f64(),
        entries as f64 / took.as_secs_f64()
    );
    println!(
        "  peak resident memory of the process: {:.0} MiB (before the read: {:.0} MiB)",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize, default: usize| -> usize {
        args.get(i)
            .map(|s| s.parse().expect("a number"))
            .unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("provision") => provision(n(1, 10_000), n(2, 2), n(3, 3)).await,
        Some("read") => read(n(1, 100_000)).await,
        _ => {
            eprintln!(
                "usage: ldap_bench provision [ACCOUNTS] [GROUPS_PER_ACCOUNT] | read [ENTRIES]"
            );
            std::process::exit(64);
        }
    }
}
