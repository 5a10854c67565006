//! `tenure demo`: the whole lifecycle on the example organisation, on embedded
//! SQLite, with nothing to install.
//!
//! The example (Acme Corp, `examples/acme/` in the repository) is compiled
//! into the binary, so the demo runs from anywhere. It runs on a fixed clock
//! (1 November 2026, then 24 November 2026) so that its output is the same
//! every time and the dates in its HR files mean what the text says.

use crate::output;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::sync::Arc;
use tenure_engine::{Engine, FixedClock, NoProgress};

const FILES: &[(&str, &str)] = &[
    (
        "config/tenure.toml",
        include_str!("../../../examples/acme/config/tenure.toml"),
    ),
    (
        "config/systems.toml",
        include_str!("../../../examples/acme/config/systems.toml"),
    ),
    (
        "config/roles.toml",
        include_str!("../../../examples/acme/config/roles.toml"),
    ),
    (
        "config/rules.toml",
        include_str!("../../../examples/acme/config/rules.toml"),
    ),
    (
        "hr/2026-11-01.csv",
        include_str!("../../../examples/acme/hr/2026-11-01.csv"),
    ),
    (
        "hr/2026-11-24.csv",
        include_str!("../../../examples/acme/hr/2026-11-24.csv"),
    ),
];

/// The applications' own tables, and what was in them before Tenure.
const APPS: &[(&str, &[&str])] = &[
    (
        "apps/wiki.db",
        &[
            "CREATE TABLE users (login TEXT PRIMARY KEY, email TEXT, display_name TEXT, active INTEGER NOT NULL DEFAULT 1)",
            "CREATE TABLE group_members (login TEXT NOT NULL, group_name TEXT NOT NULL, PRIMARY KEY (login, group_name))",
            // Ada had a wiki account before Tenure: correlation finds it by e-mail.
            "INSERT INTO users VALUES ('alovelace', 'ada.lovelace@acme.example', 'Ada L.', 1)",
            "INSERT INTO group_members VALUES ('alovelace', 'all-staff')",
        ],
    ),
    (
        "apps/crm.db",
        &[
            "CREATE TABLE crm_users (username TEXT PRIMARY KEY, email TEXT, full_name TEXT, region TEXT, enabled INTEGER NOT NULL DEFAULT 1)",
            "CREATE TABLE crm_user_roles (username TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (username, role))",
            // An account nobody remembers: an orphan, reported and left alone.
            "INSERT INTO crm_users VALUES ('old-admin', 'admin@acme.example', 'Former administrator', 'London', 1)",
            "INSERT INTO crm_user_roles VALUES ('old-admin', 'sales-manager')",
        ],
    ),
    (
        "apps/ledger.db",
        &[
            "CREATE TABLE ledger_users (employee_no TEXT PRIMARY KEY, name TEXT, cost_center TEXT)",
            "CREATE TABLE ledger_permissions (employee_no TEXT NOT NULL, permission TEXT NOT NULL, PRIMARY KEY (employee_no, permission))",
        ],
    ),
];

const MARKER: &str = ".tenure-demo";

fn at(date: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap_or_default()
        .and_hms_opt(9, 0, 0)
        .unwrap_or_default()
        .and_utc()
}

fn heading(n: usize, title: &str, command: &str) {
    println!("\n━━ {n}. {title}");
    if !command.is_empty() {
        println!("$ {command}\n");
    }
}

fn abbreviate(text: &str, full: bool, max: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if full || lines.len() <= max {
        return text.to_owned();
    }
    let summary = lines
        .iter()
        .rposition(|l| l.starts_with("Summary:"))
        .unwrap_or(lines.len());
    let mut out: Vec<String> = lines.iter().take(max).map(|l| (*l).to_owned()).collect();
    out.push(format!(
        "    … {} more lines (run the demo with --full to see everything)",
        summary.saturating_sub(max)
    ));
    out.extend(lines.iter().skip(summary.max(max)).map(|l| (*l).to_owned()));
    out.join("\n") + "\n"
}

/// Creates the demo directory: configuration, HR exports, the applications' databases.
pub async fn prepare(dir: &Path) -> Result<()> {
    if dir.exists() {
        if dir.join(MARKER).exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot clear the earlier demo in {}", dir.display()))?;
        } else if std::fs::read_dir(dir)?.next().is_some() {
            bail!(
                "{} exists and is not a Tenure demo directory; choose another with --dir",
                dir.display()
            );
        }
    }
    for sub in ["config", "hr", "apps"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::write(
        dir.join(MARKER),
        "created by `tenure demo`; removed by the next demo run\n",
    )?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text)?;
    }
    sqlx::any::install_default_drivers();
    for (file, statements) in APPS {
        let url = format!("sqlite:{}?mode=rwc", dir.join(file).display());
        let pool = sqlx::AnyPool::connect(&url)
            .await
            .with_context(|| format!("cannot create {file}"))?;
        for s in *statements {
            sqlx::query(*s)
                .execute(&pool)
                .await
                .with_context(|| format!("{file}: {s}"))?;
        }
        pool.close().await;
    }
    Ok(())
}

/// Runs the demo.
pub async fn run(dir: &Path, full: bool) -> Result<()> {
    prepare(dir).await?;
    let config = dir.join("config");
    let db = format!("sqlite:{}", dir.join("tenure.db").display());
    let clock = Arc::new(FixedClock::new(at("2026-11-01")));
    let engine = Engine::open(&config, &db, clock.clone(), "cli:demo".into()).await?;
    let quiet = NoProgress;
    let cmd = |c: &str| format!("tenure --config {} --database {db} {c}", config.display());

    println!(
        "Tenure demo: Acme Corp, 50 people, three applications (a wiki, a sales CRM, a finance ledger)."
    );
    println!(
        "Everything is in {} — configuration, HR exports, the applications' databases and Tenure's own.",
        dir.display()
    );
    println!(
        "The demo runs on a fixed clock so its output is always the same: first 1 November 2026, then 24 November."
    );

    heading(1, "Check the configuration (policy as code)", &cmd("check"));
    let c = engine.policy.config();
    println!(
        "valid: {} source, {} systems, {} roles, {} birthright rules, {} deprovisioning policies",
        c.sources.len(),
        c.systems.len(),
        c.roles.len(),
        c.rules.len(),
        c.deprovisioning.len()
    );

    heading(
        2,
        "1 November: import the HR export",
        &cmd("import hr/2026-11-01.csv"),
    );
    let r =
        tenure_engine::import::import(&engine, None, Some(&dir.join("hr/2026-11-01.csv")), false)
            .await?;
    print!("{}", output::import_text(&r));

    heading(
        3,
        "The plan: what Tenure will change, and why — nothing has changed yet",
        &cmd("plan"),
    );
    let planned = engine.plan(&quiet).await?;
    print!(
        "{}",
        abbreviate(&tenure_core::render::plan_text(&planned.plan), full, 45)
    );

    heading(
        4,
        "Apply it: every operation is queued durably, executed, and confirmed by its system",
        &cmd("apply"),
    );
    let (p, a) = engine.apply(None, false, true, &quiet).await?;
    print!("{}", output::apply_text(&p, &a));

    clock.set(at("2026-11-24"));
    heading(
        5,
        "24 November: the next HR export — joiners, movers and leavers",
        &cmd("--now 2026-11-24 import hr/2026-11-24.csv"),
    );
    let r =
        tenure_engine::import::import(&engine, None, Some(&dir.join("hr/2026-11-24.csv")), false)
            .await?;
    print!("{}", output::import_text(&r));

    heading(6, "The plan for 24 November", &cmd("--now 2026-11-24 plan"));
    let planned = engine.plan(&quiet).await?;
    print!("{}", tenure_core::render::plan_text(&planned.plan));
    println!("Mass-change guard: {}", planned.guard);

    heading(7, "Apply it", &cmd("--now 2026-11-24 apply"));
    let (p, a) = engine.apply(None, false, true, &quiet).await?;
    print!("{}", output::apply_text(&p, &a));

    heading(
        8,
        "Access report: who holds what, where, and why",
        &cmd("--now 2026-11-24 report access"),
    );
    let rows = tenure_engine::reports::access(&engine, &quiet).await?;
    let people: std::collections::BTreeSet<&str> = [
        "E1001", "E1006", "E1016", "E1025", "E1030", "E1041", "E1051", "E1052", "E1053",
    ]
    .into_iter()
    .collect();
    let shown: Vec<_> = rows
        .iter()
        .filter(|r| full || people.contains(r.identity.as_str()))
        .cloned()
        .collect();
    print!(
        "{}",
        output::render(&shown, false, false, output::access_table)?
    );
    if !full {
        println!(
            "({} of {} rows: the people this demo follows; the full report has everyone)",
            shown.len(),
            rows.len()
        );
    }

    heading(
        9,
        "Leavers who still hold anything, and what happens next",
        &cmd("--now 2026-11-24 report leavers"),
    );
    let rows = tenure_engine::reports::leavers(&engine, &quiet).await?;
    print!(
        "{}",
        output::render(&rows, false, false, output::leavers_table)?
    );

    heading(
        10,
        "Orphaned accounts: found, reported, never deleted unless policy says so",
        &cmd("--now 2026-11-24 report orphans"),
    );
    let rows = tenure_engine::reports::orphans(&engine, &quiet).await?;
    print!(
        "{}",
        output::render(&rows, false, false, output::orphans_table)?
    );

    heading(
        11,
        "Verify the audit log: every import, plan and operation, hash-chained",
        &cmd("audit verify"),
    );
    let v = output::verify(&engine.store).await?;
    print!("{}", output::verify_text(&v));

    println!(
        "\nExplore further with the same state (`tenure` is this program; from the source tree, `cargo run --release --`):"
    );
    println!(
        "  {}",
        cmd("--now 2026-12-15 plan    # three weeks later: the staged deprovisioning moves on")
    );
    println!("  {}", cmd("--now 2026-11-24 report access --format csv"));
    println!("  tenure --database {db} audit export");
    engine.store.close().await;
    Ok(())
}
