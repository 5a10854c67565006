//! `tenure`: the command line of the Tenure identity lifecycle engine.
//!
//! A thin layer over `tenure-engine`: it parses arguments, opens the engine,
//! prints results for people (tables, plans) or for programs (`--json`,
//! `--format csv|json`), and turns errors into messages and exit codes.
//! It holds no lifecycle logic of its own.

mod demo;
mod grant;
mod ops;
mod output;
mod progress;
mod serve;
mod token;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tenure_engine::{Clock, Engine, EngineError, FixedClock, SystemClock};

/// The scope `--changed` or `--identity` asks for.
fn scope(changed: bool, identities: &[String]) -> Result<tenure_engine::Scope> {
    if !identities.is_empty() {
        return Ok(tenure_engine::Scope::Identities(
            identities
                .iter()
                .map(|i| parse_identity(i))
                .collect::<Result<_>>()?,
        ));
    }
    Ok(if changed {
        tenure_engine::Scope::Changed
    } else {
        tenure_engine::Scope::Everyone
    })
}

fn parse_identity(id: &str) -> Result<tenure_core::IdentityId> {
    tenure_core::IdentityId::new(id).map_err(|e| anyhow::anyhow!("identity {id:?}: {e}"))
}

/// Exit code when the mass-change guard refused, or a saved plan is stale.
const EXIT_REFUSED: u8 = 3;
/// Exit code when the audit log fails verification.
const EXIT_TAMPERED: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "tenure",
    version,
    about = "Identity lifecycle engine: joiners, movers and leavers, planned and provable"
)]
struct Cli {
    /// The configuration directory (every *.toml file in it is read).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "TENURE_CONFIG",
        default_value = "config"
    )]
    config: PathBuf,
    /// Where Tenure keeps its state: a SQLite file (sqlite:tenure.db) or postgres://… URL.
    #[arg(
        long,
        global = true,
        env = "TENURE_DATABASE_URL",
        default_value = "sqlite:tenure.db"
    )]
    database: String,
    /// Who is acting, recorded in the audit log (default cli:$USER).
    #[arg(long, global = true, env = "TENURE_ACTOR")]
    actor: Option<String>,
    /// Pretend it is this moment (RFC 3339, or a date meaning 09:00 UTC that day). For tests and demos.
    #[arg(long, global = true, env = "TENURE_NOW", hide = true)]
    now: Option<String>,
    /// How long a claimed operation stays this process's before another may take it over (seconds).
    #[arg(
        long,
        global = true,
        env = "TENURE_LEASE_SECONDS",
        default_value_t = 30,
        hide = true
    )]
    lease_seconds: u64,
    /// How many queued operations one claim takes at most (each system's lane
    /// starts at 500 and doubles while its batches run fast).
    #[arg(
        long,
        global = true,
        env = "TENURE_BATCH",
        default_value_t = tenure_engine::executor::BATCH,
        hide = true
    )]
    batch: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the configuration directory; report every problem with file and line.
    Check,
    /// Import an HR export (atomic: a bad file changes nothing).
    Import {
        /// The file (default: the source's configured path).
        file: Option<PathBuf>,
        /// Which source it comes from (default: the only one).
        #[arg(long)]
        source: Option<String>,
        /// Apply even if more people would leave than the mass-change guard allows.
        #[arg(long)]
        allow_mass_change: bool,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what would change, without changing anything.
    Plan {
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Also save the plan to this file, for `tenure apply FILE`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Plan only for the people who changed, or whose dates came, since the
        /// last applied plan, reading only their accounts (fast; no orphans are
        /// looked for). Without it, a plan is a full reconciliation.
        #[arg(long)]
        changed: bool,
        /// Plan only for this person (repeatable), against their own accounts.
        #[arg(long = "identity", value_name = "ID", conflicts_with = "changed")]
        identities: Vec<String>,
    },
    /// Make the systems match policy: finish queued work, plan, and execute.
    Apply {
        /// A plan saved with `tenure plan --out`: applied only if it still matches the state.
        plan: Option<PathBuf>,
        /// Apply even if more accounts would be deprovisioned than the mass-change guard allows.
        #[arg(long)]
        allow_mass_change: bool,
        /// Only queue the plan's operations, for `tenure work` (or the service) to execute.
        #[arg(long)]
        queue_only: bool,
        /// Plan only for the people who changed, or whose dates came, since the
        /// last applied plan (see `tenure plan --changed`).
        #[arg(long, conflicts_with = "plan")]
        changed: bool,
        /// Apply only for this person (repeatable), against their own accounts.
        #[arg(long = "identity", value_name = "ID", conflicts_with_all = ["plan", "changed"])]
        identities: Vec<String>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Execute queued operations until none is runnable (several processes may share a PostgreSQL queue).
    Work,
    /// Emergency suspend: disable a person on every system at once, ahead of
    /// all other work, and report each system's confirmation.
    Suspend {
        /// The identity (the source's person id).
        identity: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Only queue the operations, for `tenure work` or the service.
        #[arg(long)]
        queue_only: bool,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A person's lifecycle timeline: events, every operation on every system
    /// (done, pending or failed, with the rule that caused it) and the
    /// deprovisioning schedule.
    Status {
        /// The identity (the source's person id).
        identity: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Place a legal hold: the person's accounts are never deleted (nor their
    /// data removed) until it is released.
    Hold {
        /// The identity (the source's person id).
        identity: String,
        /// Why: a case reference (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Grants: access given by people outside the birthright rules, with a
    /// validity window (add, list, revoke).
    Grant {
        #[command(subcommand)]
        command: grant::GrantCommand,
    },
    /// Release a legal hold: deprovisioning continues where policy says.
    Release {
        /// The identity (the source's person id).
        identity: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Undo a suspend: the person's access is restored as policy says.
    Resume {
        /// The identity (the source's person id).
        identity: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Only queue the operations, for `tenure work` or the service.
        #[arg(long)]
        queue_only: bool,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Why does this person have this access? Reads the system's account of
    /// this one person and says, for the account and each entitlement, the
    /// rule or grant → role path that justifies it, or that nothing does
    /// (and what a plan would do about it).
    Explain {
        /// The identity (the source's person id).
        identity: String,
        /// The system's id in the configuration.
        system: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reports on access, orphaned accounts and leavers.
    Report {
        /// Which report.
        #[arg(value_enum)]
        kind: ReportKind,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Read every account of one system and correlate them to identities
    /// (linked, correlated now, orphaned, ambiguous); nothing is changed.
    Discover {
        /// The system's id in the configuration.
        system: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Each system's health (consecutive failures, quarantine); with `lift
    /// SYSTEM --reason TEXT`, end a quarantine by hand.
    Quarantine {
        #[command(subcommand)]
        command: Option<QuarantineCommand>,
    },
    /// The operation queue: counts, and operations that failed.
    Queue {
        /// Put failed operations back in the queue.
        #[arg(long)]
        retry_failed: bool,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Serve Tenure's HTTP endpoints: the SCIM 2.0 service provider at /scim/v2.
    Serve(serve::ServeArgs),
    /// Operator commands for the SCIM source (the deactivation guard's override).
    Scim {
        #[command(subcommand)]
        command: serve::ScimCommand,
    },
    /// Bearer tokens for `tenure serve`: create (the secret is shown once), list, revoke.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Run the whole lifecycle on the example organisation (SQLite, nothing to install).
    Demo {
        /// Where to put the demo's files (emptied first if it is an earlier demo).
        #[arg(long, default_value = "tenure-demo")]
        dir: PathBuf,
        /// Print every plan in full.
        #[arg(long)]
        full: bool,
        /// Only create the directory (configuration, HR exports, the applications' empty
        /// databases), to walk through the commands yourself.
        #[arg(long)]
        prepare_only: bool,
    },
}

#[derive(Subcommand, Debug)]
enum QuarantineCommand {
    /// End a system's quarantine now: its queued operations run again at once.
    Lift {
        /// The system's id in the configuration.
        system: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain; name any edited, removed, inserted or reordered record.
    Verify,
    /// Write the log as JSON lines.
    Export {
        /// The file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ReportKind {
    /// Who holds which account and entitlement on which system, and why.
    Access,
    /// Accounts no identity justifies (and ambiguous matches).
    Orphans,
    /// Leavers who still hold anything anywhere.
    Leavers,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// A table for people.
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON.
    Json,
}

fn parse_now(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").with_context(|| {
        format!("--now {s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date")
    })?;
    Ok(d.and_hms_opt(9, 0, 0).unwrap_or_default().and_utc())
}

fn default_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

async fn open(cli: &Cli, clock: Arc<dyn Clock>) -> Result<Engine> {
    let actor = cli.actor.clone().unwrap_or_else(default_actor);
    let mut engine = Engine::open(&cli.config, &cli.database, clock, actor).await?;
    engine.lease = std::time::Duration::from_secs(cli.lease_seconds);
    engine.batch = cli.batch.max(1);
    Ok(engine)
}

/// mimalloc rather than the system allocator: a plan of hundreds of
/// thousands of operations is built on one thread and executed on others,
/// and the system allocator's per-thread arenas kept a fifth more memory
/// resident than the work needed (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TENURE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The command runs as a task on the runtime's threads, like the tasks it
    // starts (the executor's lanes): the main thread only waits. Memory freed
    // by one thread is then reused by the same few allocating threads.
    let outcome = rt.block_on(async move {
        match tokio::spawn(run(cli)).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(anyhow::anyhow!("the command's task stopped: {e}")),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            let refused = e.downcast_ref::<EngineError>().is_some_and(|e| {
                matches!(
                    e,
                    EngineError::MassChange { .. } | EngineError::StaleSavedPlan { .. }
                )
            });
            eprintln!("error: {e:#}");
            if refused {
                ExitCode::from(EXIT_REFUSED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let clock: Arc<dyn Clock> = match &cli.now {
        Some(s) => Arc::new(FixedClock::new(parse_now(s)?)),
        None => Arc::new(SystemClock),
    };
    let progress = progress::Bars::new();
    match &cli.command {
        Command::Serve(args) => {
            let engine = open(&cli, clock).await?;
            serve::serve(engine, args).await?;
        }
        Command::Scim { command } => {
            let engine = open(&cli, clock).await?;
            serve::scim_command(&engine, command).await?;
        }
        Command::Token { command } => {
            token::run(&cli.database, clock.now(), command).await?;
        }
        Command::Check => {
            let policy = tenure_engine::load::load_policy(&cli.config)?;
            let c = policy.config();
            tenure_notify::check_templates(c, &cli.config)
                .context("the notification templates are not valid")?;
            println!(
                "{}: valid — {} source(s), {} system(s), {} role(s), {} rule(s), {} deprovisioning polic{}",
                cli.config.display(),
                c.sources.len(),
                c.systems.len(),
                c.roles.len(),
                c.rules.len(),
                c.deprovisioning.len(),
                if c.deprovisioning.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            );
        }
        Command::Import {
            file,
            source,
            allow_mass_change,
            json,
        } => {
            let engine = open(&cli, clock).await?;
            let r = tenure_engine::import::import(
                &engine,
                source.as_deref(),
                file.as_deref(),
                *allow_mass_change,
            )
            .await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output::import_json(&r))?
                );
            } else {
                print!("{}", output::import_text(&r));
            }
        }
        Command::Plan {
            json,
            out,
            changed,
            identities,
        } => {
            let engine = open(&cli, clock).await?;
            let scope = scope(*changed, identities)?;
            let traces = match &scope {
                tenure_engine::Scope::Identities(ids) => {
                    tenure_engine::explain::traces(&engine, ids).await?
                }
                _ => Vec::new(),
            };
            let planned = engine.plan_scoped(scope, &progress).await?;
            if let Some(path) = out {
                let text = serde_json::to_string_pretty(&planned.plan)?;
                std::fs::write(path, text)
                    .with_context(|| format!("cannot write the plan to {}", path.display()))?;
            }
            if *json {
                let mut v = serde_json::to_value(&planned.plan)?;
                if !traces.is_empty()
                    && let Some(o) = v.as_object_mut()
                {
                    o.insert("trace".into(), serde_json::to_value(&traces)?);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for t in &traces {
                    println!("{}", tenure_core::render::trace_text(t));
                }
                print!("{}", tenure_core::render::plan_text(&planned.plan));
                if let Some(note) = output::scope_note(*changed, &planned) {
                    println!("{note}");
                }
                println!(
                    "Mass-change guard: {}{}",
                    planned.guard,
                    if planned.guard.blocked {
                        " — apply will refuse without --allow-mass-change"
                    } else {
                        ""
                    }
                );
                if let Some(path) = out {
                    println!(
                        "Saved to {}; apply exactly this plan with `tenure apply {}`.",
                        path.display(),
                        path.display()
                    );
                }
            }
        }
        Command::Apply {
            plan,
            allow_mass_change,
            queue_only,
            json,
            changed,
            identities,
        } => {
            let engine = open(&cli, clock).await?;
            let saved = match plan {
                Some(p) => Some(read_plan(p)?),
                None => None,
            };
            let scope = scope(*changed, identities)?;
            let traces = match &scope {
                tenure_engine::Scope::Identities(ids) if saved.is_none() => {
                    tenure_engine::explain::traces(&engine, ids).await?
                }
                _ => Vec::new(),
            };
            let (planned, report) = engine
                .apply_scoped(
                    scope,
                    saved.as_ref(),
                    *allow_mass_change,
                    !*queue_only,
                    &progress,
                )
                .await?;
            if *json {
                let mut v = output::apply_json(&planned, &report);
                if !traces.is_empty()
                    && let Some(o) = v.as_object_mut()
                {
                    o.insert("trace".into(), serde_json::to_value(&traces)?);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for t in &traces {
                    println!("{}", tenure_core::render::trace_text(t));
                }
                if !traces.is_empty() {
                    println!("{}", tenure_core::render::plan_text(&planned.plan));
                }
                print!("{}", output::apply_text(&planned, &report));
            }
            if report.failed > 0 || report.executed.failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Explain {
            identity,
            system,
            json,
        } => {
            let engine = open(&cli, clock).await?;
            let id = parse_identity(identity)?;
            let sys = tenure_core::SystemId::new(system.as_str())
                .map_err(|e| anyhow::anyhow!("system {system:?}: {e}"))?;
            let e = tenure_engine::explain::explain(&engine, &id, &sys, &progress).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                print!("{}", output::explain_text(&e));
            }
        }
        Command::Report { kind, format } => {
            let engine = open(&cli, clock).await?;
            let text = match kind {
                ReportKind::Access => output::render(
                    &tenure_engine::reports::access(&engine, &progress).await?,
                    *format == Format::Json,
                    *format == Format::Csv,
                    output::access_table,
                )?,
                ReportKind::Orphans => output::render(
                    &tenure_engine::reports::orphans(&engine, &progress).await?,
                    *format == Format::Json,
                    *format == Format::Csv,
                    output::orphans_table,
                )?,
                ReportKind::Leavers => output::render(
                    &tenure_engine::reports::leavers(&engine, &progress).await?,
                    *format == Format::Json,
                    *format == Format::Csv,
                    output::leavers_table,
                )?,
            };
            print!("{text}");
        }
        Command::Discover { system, format } => {
            let engine = open(&cli, clock).await?;
            let id = tenure_core::SystemId::new(system.as_str())
                .map_err(|e| anyhow::anyhow!("system {system:?}: {e}"))?;
            let rows = tenure_engine::reports::discover(&engine, &id, &progress).await?;
            let text = output::render(
                &rows,
                *format == Format::Json,
                *format == Format::Csv,
                output::discovered_table,
            )?;
            print!("{text}");
            if *format == Format::Table {
                print!("{}", output::discovered_summary(system, &rows));
            }
        }
        Command::Work => {
            let engine = open(&cli, clock).await?;
            let stats = engine.execute(&progress).await?;
            let c = engine.store.queue_counts().await?;
            println!(
                "{} operation(s) confirmed, {} failed; queue now: {} queued, {} running, {} failed",
                stats.done, stats.failed, c.queued, c.running, c.failed
            );
            if stats.failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Suspend {
            identity,
            reason,
            queue_only,
            json,
        }
        | Command::Resume {
            identity,
            reason,
            queue_only,
            json,
        } => {
            let suspend = matches!(cli.command, Command::Suspend { .. });
            let engine = open(&cli, clock).await?;
            let id = parse_identity(identity)?;
            let report = tenure_engine::suspend::set_suspended(
                &engine,
                &id,
                suspend,
                reason,
                !*queue_only,
                &progress,
            )
            .await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", output::suspend_text(&report, *queue_only));
            }
            if !*queue_only && !report.complete() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Hold { identity, reason } | Command::Release { identity, reason } => {
            let hold = matches!(cli.command, Command::Hold { .. });
            let engine = open(&cli, clock).await?;
            let id = parse_identity(identity)?;
            tenure_engine::suspend::set_legal_hold(&engine, &engine.actor, &id, hold, reason)
                .await?;
            if hold {
                println!(
                    "Legal hold placed on {id}: its accounts will not be deleted until `tenure release {id}`."
                );
            } else {
                println!("Legal hold on {id} released: deprovisioning continues as policy says.");
            }
        }
        Command::Grant { command } => {
            let engine = open(&cli, clock).await?;
            grant::run(&engine, command).await?;
        }
        Command::Quarantine { command } => {
            let engine = open(&cli, clock).await?;
            if let Some(QuarantineCommand::Lift { system, reason }) = command {
                let id = tenure_core::SystemId::new(system.as_str())
                    .map_err(|e| anyhow::anyhow!("system {system:?}: {e}"))?;
                tenure_engine::executor::lift_quarantine(&engine, &engine.actor, &id, reason)
                    .await?;
                println!("Quarantine of {id} lifted: its queued operations run again.");
            }
            let health = engine.store.system_health().await?;
            let mut s = String::new();
            for sys in engine.connectors.keys() {
                let h = health.iter().find(|h| &h.system == sys);
                let state = match h {
                    Some(h) if h.quarantined_since.is_some() => format!(
                        "QUARANTINED since {}, next try {}",
                        h.quarantined_since
                            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                            .unwrap_or_default(),
                        h.retry_at
                            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                            .unwrap_or_default()
                    ),
                    Some(h) if h.failures > 0 => {
                        format!("{} failed batch(es) in a row", h.failures)
                    }
                    _ => "healthy".to_owned(),
                };
                let err = h
                    .and_then(|h| h.last_error.as_deref())
                    .map(|e| format!("  (last error: {e})"))
                    .unwrap_or_default();
                s.push_str(&format!("{sys:<12} {state}{err}\n"));
            }
            print!("{s}");
        }
        Command::Status { identity, json } => {
            let engine = open(&cli, clock).await?;
            let t = tenure_engine::timeline::timeline(&engine, &parse_identity(identity)?).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print!("{}", output::timeline_text(&t));
            }
        }
        Command::Queue { retry_failed } => {
            let engine = open(&cli, clock.clone()).await?;
            if *retry_failed {
                let event = engine.event(
                    "queue.retry_failed",
                    "queue".into(),
                    "failed operations queued again by an operator".into(),
                    serde_json::json!({}),
                );
                let n = engine.store.retry_failed(clock.now(), vec![event]).await?;
                println!("{n} failed operation(s) queued again");
            }
            print!("{}", output::queue_text(&engine).await?);
        }
        Command::Audit { command } => {
            let store = tenure_store::Store::open(&cli.database).await?;
            match command {
                AuditCommand::Verify => {
                    let v = output::verify(&store).await?;
                    print!("{}", output::verify_text(&v));
                    if !v.problems.is_empty() {
                        return Ok(ExitCode::from(EXIT_TAMPERED));
                    }
                }
                AuditCommand::Export { out } => output::export(&store, out.as_deref()).await?,
            }
        }
        Command::Demo {
            dir,
            full,
            prepare_only,
        } => {
            if *prepare_only {
                demo::prepare(dir).await?;
                println!(
                    "Prepared {}: try `tenure --config {}/config --database sqlite:{}/tenure.db import`",
                    dir.display(),
                    dir.display(),
                    dir.display()
                );
            } else {
                demo::run(dir, *full).await?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_plan(path: &Path) -> Result<tenure_core::Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan {}", path.display()))?;
    let plan: tenure_core::Plan =
        serde_json::from_str(&text).map_err(|e| EngineError::BadPlanFile {
            path: path.display().to_string(),
            message: format!("line {}, column {}: {e}", e.line(), e.column()),
        })?;
    if plan.format != tenure_core::plan::PLAN_FORMAT {
        return Err(EngineError::BadPlanFile {
            path: path.display().to_string(),
            message: format!(
                "plan format {} is not supported (this Tenure writes format {})",
                plan.format,
                tenure_core::plan::PLAN_FORMAT
            ),
        }
        .into());
    }
    Ok(plan)
}
