//! One backend's run, in its own process: the organisation is written, the
//! store created, and the lifecycle timed phase by phase through the engine.

use crate::breakdown;
use crate::org;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tenure_engine::{Engine, FixedClock, NoProgress};
use tenure_sources::synthetic::{generate_csv, mutate_csv};

/// The store a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

impl Backend {
    /// The name used on the command line and in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What a child run needs to know.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// People in the generated export.
    pub identities: usize,
    /// Seed of the generated exports.
    pub seed: u64,
    /// Share of people changed in the incremental export, in percent.
    pub change_percent: f64,
    /// The PostgreSQL server's URL (a database is created on it).
    pub postgres: String,
    /// Whether to time the steps inside the phases.
    pub breakdown: bool,
    /// Whether to keep the work directory.
    pub keep: bool,
    /// Where to create the work directory (default: the temporary directory).
    pub work_dir: Option<PathBuf>,
    /// The last phase to run.
    pub until: Until,
}

/// The last phase a run goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Until {
    /// Full import and full plan only.
    Plan,
    /// Up to the apply of the initial plan.
    Apply,
    /// Every phase.
    All,
}

impl Until {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Until::Plan => "plan",
            Until::Apply => "apply",
            Until::All => "all",
        }
    }
}

/// The benchmark's day: every date in the exports is relative to it.
pub fn today() -> Result<NaiveDate> {
    NaiveDate::from_ymd_opt(2026, 11, 24).context("invalid benchmark date")
}

fn now() -> Result<DateTime<Utc>> {
    Ok(today()?
        .and_hms_opt(9, 0, 0)
        .context("invalid benchmark time")?
        .and_utc())
}

/// Seconds since `t`.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn status_kb(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("cannot read /proc/self/status (memory is measured on Linux only)")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("/proc/self/status has no {field} line"))?;
    line.trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("cannot read {line:?}"))
}

/// The largest peak seen by a [`Probe`] since the last [`Memory::phase`].
static PROBED_PEAK: AtomicU64 = AtomicU64::new(0);

/// Resets the peak resident set size (VmHWM) to the current size: `5`
/// written to `/proc/self/clear_refs`. Best effort: without it the readings
/// are peaks so far, which keeps the overall peak right.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").ok();
}

/// Peak memory, per phase and overall.
///
/// The peak resident set size (VmHWM) is read after each phase and then reset
/// to the current size, so each reading is the peak of one phase; the overall
/// peak is the largest reading, which is the process's VmHWM over its whole
/// run.
pub struct Memory {
    overall: u64,
    phases: serde_json::Map<String, Value>,
}

impl Memory {
    /// Starts measuring.
    pub fn new() -> Self {
        Memory {
            overall: 0,
            phases: serde_json::Map::new(),
        }
    }

    /// Records the peak since the last call as `phase`'s, and returns it (bytes).
    pub fn phase(&mut self, phase: &str) -> Result<u64> {
        let hwm = status_kb("VmHWM:")? * 1024;
        let peak = hwm.max(PROBED_PEAK.swap(0, Ordering::Relaxed));
        self.overall = self.overall.max(peak);
        self.phases.insert(phase.to_owned(), json!(peak));
        reset_peak();
        Ok(peak)
    }

    /// The overall peak (bytes) and the per-phase peaks.
    pub fn finish(mut self) -> Result<(u64, Value)> {
        self.phase("end")?;
        Ok((self.overall, Value::Object(self.phases)))
    }
}

/// How much resident memory one step added at its peak, for `--breakdown`.
pub struct Probe {
    before: u64,
}

impl Probe {
    /// Starts: notes the resident size and resets the peak to it.
    pub fn start() -> Self {
        let before = status_kb("VmRSS:").unwrap_or(0) * 1024;
        let hwm = status_kb("VmHWM:").unwrap_or(0) * 1024;
        PROBED_PEAK.fetch_max(hwm, Ordering::Relaxed);
        reset_peak();
        Probe { before }
    }

    /// The step's peak resident size above the size at its start, in bytes.
    pub fn end(self) -> u64 {
        let hwm = status_kb("VmHWM:").unwrap_or(0) * 1024;
        PROBED_PEAK.fetch_max(hwm, Ordering::Relaxed);
        hwm.saturating_sub(self.before)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

/// `url` with its database (path) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> Result<String> {
    let Some(scheme_end) = url.find("://") else {
        bail!("not a PostgreSQL URL (no `://`)");
    };
    let rest = &url[scheme_end + 3..];
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], &rest[q..]),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    Ok(format!(
        "{}{authority}/{database}{query}",
        &url[..scheme_end + 3]
    ))
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

async fn admin(url: &str, sql: String) -> Result<()> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&mut conn)
        .await
        .with_context(|| format!("{sql} on {}", redact(url)))?;
    conn.close().await.ok();
    Ok(())
}

/// Runs the lifecycle on one backend and returns its measurements.
pub async fn child(backend: Backend, opts: &RunOptions) -> Result<Value> {
    let pid = std::process::id();
    let base = match &opts.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    let dir = base.join(format!("tenure-bench-{}-{pid}", backend.as_str()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (url, database) = match backend {
        Backend::Sqlite => (format!("sqlite:{}", dir.join("tenure.db").display()), None),
        Backend::Postgres => {
            let name = format!("tenure_bench_{pid}");
            admin(&opts.postgres, format!("CREATE DATABASE \"{name}\"")).await?;
            (with_database(&opts.postgres, &name)?, Some(name))
        }
    };
    let result = scenario(backend, opts, &dir, &url).await;
    if let Some(name) = database {
        let dropped = admin(
            &opts.postgres,
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        )
        .await;
        if let Err(e) = dropped {
            eprintln!("warning: the benchmark database {name} was not dropped: {e:#}");
        }
    }
    if opts.keep {
        eprintln!("[{}] kept {}", backend.as_str(), dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("warning: cannot remove {}: {e}", dir.display());
    }
    result
}

fn log(backend: Backend, what: &str) {
    eprintln!("[{}] {what}", backend.as_str());
}

fn counts_json(counts: &std::collections::BTreeMap<&'static str, usize>) -> Value {
    Value::Object(
        counts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect(),
    )
}

/// The result being built, one key at a time.
struct Out(serde_json::Map<String, Value>);

impl Out {
    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_owned(), value.into());
    }
}

async fn scenario(backend: Backend, opts: &RunOptions, dir: &Path, url: &str) -> Result<Value> {
    let today = today()?;
    let n = opts.identities;
    let mut mem = Memory::new();
    let mut out = Out(serde_json::Map::new());
    let mut details = serde_json::Map::new();
    out.set("backend", backend.as_str());
    out.set("identities", n);
    out.set("seed", opts.seed);
    out.set("change_percent", opts.change_percent);

    let t = Instant::now();
    org::write(dir).await?;
    let full_csv = dir.join("hr/full.csv");
    let text = generate_csv(n, opts.seed, today);
    std::fs::write(&full_csv, &text)
        .with_context(|| format!("cannot write {}", full_csv.display()))?;
    let csv_bytes = text.len();
    drop(text);
    let generate_s = secs(t);
    out.set("hr_file_bytes", csv_bytes);
    out.set("generate_s", generate_s);
    log(
        backend,
        &format!(
            "organisation written, {n} people generated ({:.1} MB) in {generate_s:.2} s",
            csv_bytes as f64 / 1e6
        ),
    );

    let clock = Arc::new(FixedClock::new(now()?));
    let t = Instant::now();
    let engine = Engine::open(&dir.join("config"), url, clock.clone(), "bench".into())
        .await
        .context("the benchmark configuration does not load")?;
    let open_s = secs(t);
    let cfg = engine.policy.config();
    let shape = json!({
        "sources": cfg.sources.len(),
        "systems": cfg.systems.len(),
        "roles": cfg.roles.len(),
        "rules": cfg.rules.len(),
        "deprovisioning": cfg.deprovisioning.len(),
    });
    log(backend, &format!("engine open in {open_s:.2} s: {shape}"));
    out.set("configuration", shape);
    out.set("open_s", open_s);
    mem.phase("setup")?;

    phases(
        backend,
        opts,
        dir,
        &engine,
        &mut mem,
        &mut out,
        &mut details,
    )
    .await?;

    engine.store.close().await;
    let (peak, phase_peaks) = mem.finish()?;
    out.set("peak_rss_bytes", peak);
    out.set("phase_peak_rss_bytes", phase_peaks);
    out.set("breakdown", Value::Object(details));
    Ok(Value::Object(out.0))
}

/// The timed phases, up to `opts.until`.
async fn phases(
    backend: Backend,
    opts: &RunOptions,
    dir: &Path,
    engine: &Engine,
    mem: &mut Memory,
    out: &mut Out,
    details: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let today = today()?;
    let n = opts.identities;
    let full_csv = dir.join("hr/full.csv");

    // (a) Full import.
    let t = Instant::now();
    let imported = tenure_engine::import::import(engine, None, Some(&full_csv), false).await?;
    let import_s = secs(t);
    out.set("full_import_s", import_s);
    out.set("full_import_records", imported.records);
    log(
        backend,
        &format!(
            "full import: {} records in {import_s:.2} s, peak {:.0} MiB",
            imported.records,
            mib(mem.phase("full_import")?)
        ),
    );
    drop(imported);
    if opts.breakdown {
        details.insert(
            "full_import".into(),
            breakdown::import(engine, &full_csv, import_s, true).await?,
        );
        mem.phase("breakdown_full_import")?;
    }

    // (b) Full plan.
    let t = Instant::now();
    let planned = engine.plan(&NoProgress).await?;
    let plan_s = secs(t);
    let plan_ops = planned.plan.operations.len();
    let plan_counts = counts_json(&planned.plan.counts());
    out.set("full_plan_s", plan_s);
    out.set("full_plan_operations", plan_ops);
    out.set("full_plan_findings", planned.plan.findings.len());
    log(
        backend,
        &format!(
            "full plan: {plan_ops} operations in {plan_s:.2} s {plan_counts}, peak {:.0} MiB",
            mib(mem.phase("full_plan")?)
        ),
    );
    out.set("full_plan_counts", plan_counts);
    drop(planned);
    if opts.breakdown {
        details.insert("full_plan".into(), breakdown::plan(engine, plan_s).await?);
        mem.phase("breakdown_full_plan")?;
    }
    if opts.until == Until::Plan {
        return Ok(());
    }

    // (c) Apply the initial plan.
    let t = Instant::now();
    let (applied_plan, report, apply_split) = if opts.breakdown {
        let (p, r, split) = breakdown::apply(engine).await?;
        (p, r, Some(split))
    } else {
        let (p, r) = engine.apply(None, false, true, &NoProgress).await?;
        (p, r, None)
    };
    let apply_s = secs(t);
    let apply_ops = applied_plan.plan.operations.len();
    drop(applied_plan);
    if report.executed.failed > 0 || report.failed > 0 || report.still_queued > 0 {
        bail!(
            "the apply did not finish cleanly: {} done, {} failed this run, {} failed for good, {} still queued",
            report.executed.done,
            report.executed.failed,
            report.failed,
            report.still_queued
        );
    }
    let done = report.executed.done;
    let apply_rate = done as f64 / apply_s;
    out.set("apply_s", apply_s);
    out.set("apply_operations", apply_ops);
    out.set("apply_done", done);
    out.set("apply_ops_per_s", apply_rate);
    log(
        backend,
        &format!(
            "apply: {done} of {apply_ops} operations done in {apply_s:.2} s ({apply_rate:.0}/s), peak {:.0} MiB",
            mib(mem.phase("apply")?)
        ),
    );
    if let Some(split) = apply_split {
        details.insert("apply".into(), split);
    }
    if opts.until == Until::Apply {
        return Ok(());
    }

    // (d) The next export, 1% changed: import it, then plan.
    let t = Instant::now();
    let changed_csv = dir.join("hr/changed.csv");
    std::fs::write(
        &changed_csv,
        mutate_csv(n, opts.seed, today, opts.change_percent),
    )
    .with_context(|| format!("cannot write {}", changed_csv.display()))?;
    out.set("mutate_s", secs(t));
    mem.phase("mutate")?;
    let t = Instant::now();
    let incr = tenure_engine::import::import(engine, None, Some(&changed_csv), false).await?;
    let incr_import_s = secs(t);
    let incr_counts: serde_json::Map<String, Value> = incr
        .classification
        .counts()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
        .collect();
    out.set("incremental_import_s", incr_import_s);
    log(
        backend,
        &format!(
            "incremental import: {} records in {incr_import_s:.2} s {}, peak {:.0} MiB",
            incr.records,
            Value::Object(incr_counts.clone()),
            mib(mem.phase("incremental_import")?)
        ),
    );
    out.set("incremental_import_counts", incr_counts);
    drop(incr);
    if opts.breakdown {
        details.insert(
            "incremental_import".into(),
            breakdown::import(engine, &changed_csv, incr_import_s, false).await?,
        );
        mem.phase("breakdown_incremental_import")?;
    }
    let t = Instant::now();
    let planned = engine
        .plan_scoped(tenure_engine::Scope::Changed, &NoProgress)
        .await?;
    let incr_plan_s = secs(t);
    if !planned.plan.changed_only {
        bail!("the incremental plan covered everyone: the apply did not record its plan");
    }
    out.set("incremental_plan_people", planned.mark.due.len());
    let incr_plan_ops = planned.plan.operations.len();
    let incr_plan_counts = counts_json(&planned.plan.counts());
    out.set("incremental_plan_s", incr_plan_s);
    out.set("incremental_plan_operations", incr_plan_ops);
    out.set("incremental_plan_guard_blocked", planned.guard.blocked);
    log(
        backend,
        &format!(
            "incremental plan: {incr_plan_ops} operations in {incr_plan_s:.2} s {incr_plan_counts}, peak {:.0} MiB",
            mib(mem.phase("incremental_plan")?)
        ),
    );
    out.set("incremental_plan_counts", incr_plan_counts);
    // The same plan made the slow way, against every account: after a clean
    // apply both must list exactly the same operations.
    let t = Instant::now();
    let full = engine.plan(&NoProgress).await?;
    let full_s = secs(t);
    let same = full.plan.operations == planned.plan.operations;
    out.set("reconciliation_plan_s", full_s);
    out.set("incremental_equals_reconciliation", same);
    log(
        backend,
        &format!(
            "full reconciliation plan for comparison: {} operations in {full_s:.2} s; same operations as the incremental plan: {same}",
            full.plan.operations.len()
        ),
    );
    if !same {
        bail!(
            "the incremental plan ({} operations) differs from the full plan ({} operations)",
            planned.plan.operations.len(),
            full.plan.operations.len()
        );
    }
    drop(full);
    drop(planned);
    if opts.breakdown {
        details.insert(
            "incremental_plan".into(),
            breakdown::plan(engine, incr_plan_s).await?,
        );
    }
    Ok(())
}
