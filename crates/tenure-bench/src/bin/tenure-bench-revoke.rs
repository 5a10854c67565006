//! `tenure-bench-revoke`: time to revoke, and the scheduler's cost.
//!
//! **Time to revoke**: an organisation of `--people` people (1,000 by
//! default) with an account on each of ten SQL applications (ten SQLite
//! files, one membership each), provisioned first. Then, measured from the
//! moment the leaver is known to every system confirming the disable:
//!
//! - *HR import*: an export in which `--leavers` employees (100) are
//!   terminated today is imported and applied the way the service does it
//!   (an incremental plan, executed at once); per leaver, from the start of
//!   the import to the last of their ten confirmations;
//! - *suspend*: `--leavers` other people suspended one after the other
//!   (`tenure suspend`); per person, from the request to the last of their
//!   ten confirmations.
//!
//! **Scheduler cost**: a store holding `--scheduled` identities (1,000,000)
//! that each have a scheduled step pending, 100 of them due now: the time to
//! find the due ones (what every tick does), over 50 runs.
//!
//! With `--ldap`, the organisation also has an account (and one group
//! membership) in an OpenLDAP directory: a private `slapd` on loopback,
//! started and stopped by the benchmark the way the LDAP tests start one
//! (`crates/tenure-connectors/tests/it/ldap_slapd.rs`; needs slapd and
//! ldap-utils, `scripts/install-ldap-test-deps`), disabled with the ppolicy
//! overlay's lock. Each revocation then waits for eleven confirmations.
//!
//! Results are printed as Markdown; record them by hand in BENCHMARKS.md.
//! Run it with `scripts/bench-revoke`.

use anyhow::{Context, Result, bail};
use chrono::{NaiveDate, Utc};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tenure_engine::{ApplyOptions, Engine, NoProgress, Scope, SystemClock};

// The LDAP tests' private slapd: it panics when it cannot start, which for a
// benchmark is a clear enough stop.
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used, missing_docs)]
#[path = "../../../tenure-connectors/tests/it/ldap_slapd.rs"]
mod ldap_slapd;

/// The SQL applications.
const SYSTEMS: usize = 10;
/// The entry groups hold when their last member goes (groupOfNames needs one).
const PLACEHOLDER: &str = "cn=nobody,dc=example,dc=com";

/// Time to revoke over ten SQL applications, and the scheduler's cost with a million steps pending.
#[derive(Debug, Parser)]
#[command(name = "tenure-bench-revoke")]
struct Args {
    /// People in the organisation.
    #[arg(long, default_value_t = 1_000)]
    people: usize,
    /// Leavers (HR import) and suspends measured, each.
    #[arg(long, default_value_t = 100)]
    leavers: usize,
    /// Identities with a scheduled step, for the scheduler's cost (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    scheduled: usize,
    /// Also measure the scheduler's cost on this PostgreSQL server (a fresh
    /// database is created there and dropped afterwards).
    #[arg(long, env = "TENURE_TEST_POSTGRES", hide_env_values = true)]
    postgres: Option<String>,
    /// Where the work directory is created (default: the system's temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also provision and revoke on an OpenLDAP directory (a private slapd
    /// started by the benchmark): ten SQL applications and one LDAP system.
    #[arg(long)]
    ldap: bool,
}

/// The LDAP system of `--ldap`, on the private server at `url`.
fn ldap_system(dir: &Path, url: &str) -> Result<String> {
    use ldap_slapd::{ADMIN_DN, ADMIN_PW, GROUPS, PEOPLE};
    std::fs::write(
        dir.join("config/directory-password"),
        format!("{ADMIN_PW}\n"),
    )?;
    Ok(format!(
        r#"
[[system]]
id = "directory"
kind = "ldap"
entitlements = ["users"]
[system.account]
key = "identity.email.split('@')[0]"
[system.account.attributes]
cn = "identity.given_name + ' ' + identity.family_name"
sn = "identity.family_name"
email = "identity.email"
[system.settings]
url = "{url}"
bind_dn = "{ADMIN_DN}"
password = {{ file = "directory-password" }}
people_base = "{PEOPLE}"
groups_base = "{GROUPS}"
attributes = {{ email = "mail" }}
disable_method = "ppolicy"
group_placeholder_member = "{PLACEHOLDER}"
"#
    ))
}

/// Starts the private directory with the group `users`.
fn start_slapd() -> Result<ldap_slapd::Slapd> {
    let Some(slapd) = ldap_slapd::Slapd::start("tenure-bench-revoke --ldap", Default::default())
    else {
        bail!(
            "--ldap needs OpenLDAP's slapd and ldap-utils: install them with scripts/install-ldap-test-deps"
        );
    };
    slapd.ldapadd(&format!(
        "dn: cn=users,{}\nobjectClass: groupOfNames\ncn: users\nmember: {PLACEHOLDER}\n",
        ldap_slapd::GROUPS
    ));
    Ok(slapd)
}

fn config(dir: &Path, ldap_url: Option<&str>) -> Result<usize> {
    for sub in ["config", "hr", "apps"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let source = tenure_sources::synthetic::SYNTHETIC_SOURCE_TOML
        .replace("path = \"hr.csv\"", "path = \"../hr/current.csv\"");
    let mut systems = String::new();
    let mut accounts = Vec::new();
    for n in 1..=SYSTEMS {
        let id = format!("app{n:02}");
        accounts.push(format!("\"{id}\""));
        systems.push_str(&format!(
            r#"
[[system]]
id = "{id}"
kind = "sql"
entitlements = ["users"]
[system.account]
key = "identity.email.split('@')[0]"
[system.account.attributes]
email = "identity.email"
name = "identity.given_name + ' ' + identity.family_name"
[system.settings]
url = "sqlite:../apps/{id}.db"
accounts_table = "users"
key_column = "login"
enabled_column = "active"
attribute_columns = {{ email = "email", name = "name" }}
memberships_table = "members"
membership_account_column = "login"
membership_entitlement_column = "grp"
"#
        ));
    }
    let mut entitlements: Vec<String> = (1..=SYSTEMS)
        .map(|n| format!("\"app{n:02}:users\""))
        .collect();
    let mut count = SYSTEMS;
    if let Some(url) = ldap_url {
        systems.push_str(&ldap_system(dir, url)?);
        accounts.push("\"directory\"".to_owned());
        entitlements.push("\"directory:users\"".to_owned());
        count += 1;
    }
    let policy = format!(
        r#"[guard]
max_deprovision_percent = 50
min_count = 5

[[deprovisioning]]
id = "everyone"
when = "true"
mode = "staged"
[[deprovisioning.step]]
after = "0d"
action = "disable"
[[deprovisioning.step]]
after = "30d"
action = "delete"

[[role]]
id = "staff"
accounts = [{}]
entitlements = [{}]

[[rule]]
id = "everyone"
when = "true"
roles = ["staff"]
"#,
        accounts.join(", "),
        entitlements.join(", ")
    );
    std::fs::write(dir.join("config/source.toml"), source)?;
    std::fs::write(dir.join("config/systems.toml"), systems)?;
    std::fs::write(dir.join("config/policy.toml"), policy)?;
    Ok(count)
}

async fn create_apps(dir: &Path) -> Result<()> {
    sqlx::any::install_default_drivers();
    for n in 1..=SYSTEMS {
        let path = dir.join(format!("apps/app{n:02}.db"));
        let pool = sqlx::AnyPool::connect(&format!("sqlite:{}?mode=rwc", path.display())).await?;
        for s in [
            "CREATE TABLE users (login TEXT PRIMARY KEY, email TEXT, name TEXT, active INTEGER NOT NULL DEFAULT 1)",
            "CREATE TABLE members (login TEXT NOT NULL, grp TEXT NOT NULL, PRIMARY KEY (login, grp))",
        ] {
            sqlx::query(s).execute(&pool).await?;
        }
        pool.close().await;
    }
    Ok(())
}

/// The export with `leavers` started full-time employees terminated `today`;
/// returns it and their ids.
fn terminate(
    csv_text: &str,
    leavers: usize,
    skip: usize,
    today: NaiveDate,
) -> Result<(String, Vec<String>)> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .context(name.to_owned())
    };
    let (id, kind, hire, end) = (
        col("employee_id")?,
        col("worker_type")?,
        col("hire_date")?,
        col("termination_date")?,
    );
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(&headers)?;
    let mut chosen = Vec::new();
    let mut eligible = 0usize;
    for row in reader.records() {
        let row = row?;
        let mut fields: Vec<String> = row.iter().map(str::to_owned).collect();
        let started = fields
            .get(hire)
            .is_some_and(|h| h.as_str() < today.to_string().as_str());
        if chosen.len() < leavers && fields.get(kind).is_some_and(|k| k == "Full-time") && started {
            eligible += 1;
            if eligible > skip {
                if let Some(f) = fields.get_mut(end) {
                    *f = today.to_string();
                }
                chosen.push(fields.get(id).cloned().unwrap_or_default());
            }
        }
        out.write_record(&fields)?;
    }
    if chosen.len() < leavers {
        bail!("only {} people can leave; use more --people", chosen.len());
    }
    Ok((String::from_utf8(out.into_inner()?)?, chosen))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted
        .get(i.min(sorted.len() - 1))
        .copied()
        .unwrap_or(f64::NAN)
}

fn summary(name: &str, mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
        v.len(),
        percentile(&v, 50.0) * 1000.0,
        percentile(&v, 99.0) * 1000.0,
        v.last().copied().unwrap_or(f64::NAN) * 1000.0
    )
}

async fn time_to_revoke(args: &Args, dir: &Path, ldap_url: Option<&str>) -> Result<Vec<String>> {
    let systems = config(dir, ldap_url)?;
    create_apps(dir).await?;
    let today = Utc::now().date_naive();
    let export = tenure_sources::synthetic::generate_csv(args.people, 1, today);
    std::fs::write(dir.join("hr/current.csv"), &export)?;
    let db = format!("sqlite:{}", dir.join("tenure.db").display());
    let engine = Engine::open(
        &dir.join("config"),
        &db,
        Arc::new(SystemClock),
        "bench".into(),
    )
    .await?;
    tenure_engine::import::import(&engine, None, None, false).await?;
    let (p, r) = engine.apply(None, false, true, &NoProgress).await?;
    if r.failed > 0 || r.still_queued > 0 {
        bail!("provisioning did not finish: {r:?}");
    }
    eprintln!(
        "provisioned {} operations for {} people on {systems} systems",
        p.plan.operations.len(),
        args.people
    );

    // HR import: leavers terminated today, imported and applied as the service does.
    let (next, leavers) = terminate(&export, args.leavers, 0, today)?;
    std::fs::write(dir.join("hr/current.csv"), next)?;
    let started = Utc::now();
    let t = Instant::now();
    tenure_engine::import::import(&engine, None, None, true).await?;
    let (_, report) = engine
        .apply_with(
            ApplyOptions {
                scope: Scope::Changed,
                allow_mass_change: true,
                execute: true,
                priority: 0,
                finish_queued_first: false,
            },
            None,
            &NoProgress,
        )
        .await?;
    let whole = t.elapsed().as_secs_f64();
    let Some(plan) = report.plan_id else {
        bail!("the leavers' plan was empty")
    };
    let mut last: std::collections::HashMap<String, chrono::DateTime<Utc>> = Default::default();
    for op in engine.store.operations(Some(plan)).await? {
        let (Some(id), Some(done)) = (op.operation.identity.clone(), op.done_at) else {
            bail!("operation {} was not confirmed: {:?}", op.id, op.last_error);
        };
        let e = last.entry(id.to_string()).or_insert(done);
        *e = (*e).max(done);
    }
    let hr: Vec<f64> = leavers
        .iter()
        .map(|id| {
            last.get(id)
                .map(|d| (*d - started).as_seconds_f64())
                .context(format!("leaver {id} had no operation"))
        })
        .collect::<Result<_>>()?;
    eprintln!(
        "HR import of {} leavers: {whole:.3} s in all",
        leavers.len()
    );

    // Suspends, one after the other.
    let (_, others) = terminate(&export, args.leavers, args.leavers, today)?;
    let mut suspend = Vec::new();
    let mut end_to_end = Vec::new();
    for id in &others {
        let id = tenure_core::IdentityId::new(id.as_str())?;
        let t = Instant::now();
        let r = tenure_engine::suspend::set_suspended(
            &engine,
            &id,
            true,
            "benchmark",
            true,
            &NoProgress,
        )
        .await?;
        end_to_end.push(t.elapsed().as_secs_f64());
        if !r.complete() || r.systems.len() != systems {
            bail!("suspend of {id} incomplete: {r:?}");
        }
        suspend.push(
            r.systems
                .iter()
                .filter_map(|s| s.confirmed_after_s)
                .fold(0.0, f64::max),
        );
    }
    Ok(vec![
        "| path | leavers | p50 | p99 | max |".to_owned(),
        "|---|---:|---:|---:|---:|".to_owned(),
        summary("HR import → every system confirmed the disable", hr),
        summary(
            "suspend → every system confirmed (engine's own times)",
            suspend,
        ),
        summary("suspend command, whole call", end_to_end),
    ])
}

async fn scheduler_cost(url: &str, n: usize) -> Result<String> {
    use sqlx::Connection;
    let store = tenure_store::Store::open(url).await?;
    let now = Utc::now();
    let now_us = now.timestamp_micros();
    let day = 86_400_000_000i64;
    // n identities, each with a step due in the next 60 days; 100 due now.
    let (sql, raw) = match store.dialect() {
        tenure_store::Dialect::Sqlite => (
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
                 INSERT INTO identities (id, source, employment_type, start_date, attributes, groups_json, status, suspended, change_seq, next_due) \
                 SELECT printf('E%08d', i), 'hr', 'employee', '2020-01-01', '{{}}', '[]', 'leaver', 0, 1, \
                 CASE WHEN i % {step} = 0 THEN {due} ELSE {later} + (i % 60) * {day} END FROM n",
                step = n / 100,
                due = now_us - 1,
                later = now_us + day,
            ),
            url.to_owned(),
        ),
        tenure_store::Dialect::Postgres => (
            format!(
                "INSERT INTO identities (id, source, employment_type, start_date, attributes, groups_json, status, suspended, change_seq, next_due) \
                 SELECT 'E' || lpad(i::text, 8, '0'), 'hr', 'employee', '2020-01-01', '{{}}', '[]', 'leaver', 0, 1, \
                 CASE WHEN i % {step} = 0 THEN {due}::bigint ELSE {later}::bigint + (i % 60) * {day}::bigint END FROM generate_series(1, {n}) i",
                step = n / 100,
                due = now_us - 1,
                later = now_us + day,
            ),
            url.to_owned(),
        ),
    };
    let t = Instant::now();
    let mut c = sqlx::AnyConnection::connect(&raw).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await?;
    if store.dialect() == tenure_store::Dialect::Postgres {
        sqlx::query("ANALYZE identities").execute(&mut c).await?;
    }
    let stamp = store.change_stamp().await?;
    store.record_planned(stamp, "bench", &[], false).await?;
    eprintln!(
        "{n} scheduled identities written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..50 {
        let t = Instant::now();
        found = store.identities_to_plan(stamp, stamp, now).await?.len();
        times.push(t.elapsed().as_secs_f64());
    }
    if found != 100 {
        bail!("expected 100 due identities, found {found}");
    }
    times.sort_by(f64::total_cmp);
    Ok(format!(
        "| {} | {n} | {found} | {:.2} ms | {:.2} ms |",
        store.dialect().as_str(),
        percentile(&times, 50.0) * 1000.0,
        times.last().copied().unwrap_or(f64::NAN) * 1000.0
    ))
}

/// The allocator the `tenure` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let base = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("tenure-revoke-")
        .tempdir_in(&base)?;
    let slapd = if args.ldap {
        Some(start_slapd()?)
    } else {
        None
    };
    println!(
        "## Time to revoke: {} people, {SYSTEMS} SQL applications{}, {} leavers and {} suspends\n",
        args.people,
        if slapd.is_some() {
            " and an OpenLDAP directory"
        } else {
            ""
        },
        args.leavers,
        args.leavers
    );
    let url = slapd.as_ref().map(|s| s.url());
    for line in time_to_revoke(&args, dir.path(), url.as_deref()).await? {
        println!("{line}");
    }
    if args.scheduled > 0 {
        println!(
            "\n## Finding the due steps among {} scheduled (50 runs)\n",
            args.scheduled
        );
        println!("| store | scheduled | due | p50 | max |");
        println!("|---|---:|---:|---:|---:|");
        let url = format!("sqlite:{}", dir.path().join("scheduler.db").display());
        println!("{}", scheduler_cost(&url, args.scheduled).await?);
        if let Some(pg) = &args.postgres {
            let name = format!("tenure_bench_sched_{}", std::process::id());
            use sqlx::Connection;
            let mut admin = sqlx::AnyConnection::connect(pg).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await?;
            let url = match pg.rsplit_once('/') {
                Some((head, _)) => format!("{head}/{name}"),
                None => bail!("--postgres {pg} has no database name"),
            };
            let r = scheduler_cost(&url, args.scheduled).await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await?;
            println!("{}", r?);
        }
    }
    Ok(())
}
