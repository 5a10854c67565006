//! `tenure-bench`: Tenure's lifecycle benchmark.
//!
//! Generates a synthetic HR export (100,000 people by default), writes a
//! benchmark organisation (5 SQL applications in SQLite files, 21 roles, 20
//! birthright rules, deprovisioning policies) and times, through the engine:
//! the full import, the full plan, the apply of that plan into the
//! applications, and an incremental import with 1% of people changed followed
//! by its plan. Each store backend (SQLite, PostgreSQL) runs in its own child
//! process, so that its peak memory is its own. The result is a Markdown table
//! (and JSON with `--json FILE`) with a verdict for each goal.
//!
//! Run it with `scripts/bench` (a release build).

mod breakdown;
mod org;
mod report;
mod run;

use anyhow::{Context, Result, bail};
use clap::Parser;
use run::{Backend, RunOptions, Until};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Which backends to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backends {
    Sqlite,
    Postgres,
    Both,
}

/// Tenure's lifecycle benchmark: import, plan, apply, incremental import and plan.
#[derive(Debug, Parser)]
#[command(name = "tenure-bench", version)]
struct Args {
    /// How many people the generated HR export holds.
    #[arg(long, default_value_t = 100_000)]
    identities: usize,
    /// Which store backends to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: Backends,
    /// PostgreSQL server for the postgres backend: a fresh database
    /// `tenure_bench_<pid>` is created on it and dropped afterwards.
    #[arg(
        long,
        env = "TENURE_TEST_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        hide_env_values = true
    )]
    postgres: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed of the generated exports.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of people changed in the incremental export, in percent.
    #[arg(long, default_value_t = 1.0)]
    change_percent: f64,
    /// The last phase to run: `plan` (full import and plan only), `apply`, or `all`.
    #[arg(long, value_enum, default_value = "all")]
    until: Until,
    /// Also time the steps inside each phase (slower; the phase times stay valid,
    /// peak memory includes the extra work).
    #[arg(long)]
    breakdown: bool,
    /// Keep the work directories (configuration, exports, application databases).
    #[arg(long)]
    keep: bool,
    /// Where the work directories are created (default: the system's temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Internal: run one backend in this process and print its results as JSON.
    #[arg(long, value_enum, hide = true)]
    child: Option<Backend>,
}

impl Args {
    fn options(&self) -> RunOptions {
        RunOptions {
            identities: self.identities,
            seed: self.seed,
            change_percent: self.change_percent,
            postgres: self.postgres.clone(),
            breakdown: self.breakdown,
            keep: self.keep,
            work_dir: self.work_dir.clone(),
            until: self.until,
        }
    }
}

/// The line before a child's JSON result on its standard output.
const RESULT_MARKER: &str = "TENURE-BENCH-RESULT";

/// The allocator the `tenure` binary uses, so that memory is measured as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(backend) = args.child {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the Tokio runtime")?;
        let options = args.options();
        let result = rt.block_on(async move {
            tokio::spawn(async move { run::child(backend, &options).await })
                .await
                .context("the benchmark's task failed")?
        })?;
        println!("{RESULT_MARKER}");
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }
    parent(&args)
}

/// Runs one backend in a child process (this executable again, with `--child`).
fn spawn(backend: Backend, args: &Args) -> Result<Value> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--child")
        .arg(backend.as_str())
        .arg("--identities")
        .arg(args.identities.to_string())
        .arg("--seed")
        .arg(args.seed.to_string())
        .arg("--change-percent")
        .arg(args.change_percent.to_string())
        .arg("--postgres")
        .arg(&args.postgres)
        .arg("--until")
        .arg(args.until.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if args.breakdown {
        cmd.arg("--breakdown");
    }
    if args.keep {
        cmd.arg("--keep");
    }
    if let Some(d) = &args.work_dir {
        cmd.arg("--work-dir").arg(d);
    }
    let before = Cpu::now();
    let wall = std::time::Instant::now();
    let sampler = LoadSampler::start();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run the {} benchmark", backend.as_str()))?;
    let loads = sampler.stop();
    let wall = wall.elapsed().as_secs_f64();
    let after = Cpu::now();
    if !out.status.success() {
        bail!(
            "the {} benchmark failed ({}); its messages are above",
            backend.as_str(),
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .split_once(RESULT_MARKER)
        .map(|(_, rest)| rest.trim())
        .with_context(|| format!("the {} benchmark printed no result", backend.as_str()))?;
    let mut result: Value = serde_json::from_str(json)
        .with_context(|| format!("the {} benchmark's result is not JSON", backend.as_str()))?;
    let busy = after.busy - before.busy;
    let own = after.children - before.children;
    let max_load = loads.iter().copied().fold(f64::NAN, f64::max);
    let mean_load = loads.iter().sum::<f64>() / loads.len().max(1) as f64;
    result["run"] = json!({
        "wall_s": wall,
        "cpu_s": own,
        "machine_busy_cpu_s": busy,
        "other_processes_cpu_s": (busy - own).max(0.0),
        "load_1min_mean": mean_load,
        "load_1min_max": max_load,
    });
    Ok(result)
}

/// CPU time: the whole machine's busy time and this process's waited-for children's.
struct Cpu {
    busy: f64,
    children: f64,
}

/// Clock ticks per second in /proc (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

impl Cpu {
    fn now() -> Cpu {
        let busy = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.to_owned();
                let v: Vec<f64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                let total: f64 = v.iter().take(8).sum();
                let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
                Some((total - idle) / USER_HZ)
            })
            .unwrap_or(f64::NAN);
        // Fields 16 and 17 of /proc/self/stat: cutime, cstime (counted from the
        // field after the command name, which may contain spaces).
        let children = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_owned();
                let f: Vec<&str> = rest.split_whitespace().collect();
                let cutime: f64 = f.get(13)?.parse().ok()?;
                let cstime: f64 = f.get(14)?.parse().ok()?;
                Some((cutime + cstime) / USER_HZ)
            })
            .unwrap_or(f64::NAN);
        Cpu { busy, children }
    }
}

/// Samples the 1-minute load average every 5 seconds while a child runs.
struct LoadSampler {
    stop: std::sync::mpsc::Sender<()>,
    handle: std::thread::JoinHandle<Vec<f64>>,
}

impl LoadSampler {
    fn start() -> LoadSampler {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                if let Some(l) = std::fs::read_to_string("/proc/loadavg")
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
                {
                    samples.push(l);
                }
                match rx.recv_timeout(std::time::Duration::from_secs(5)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return samples,
                }
            }
        });
        LoadSampler { stop, handle }
    }

    fn stop(self) -> Vec<f64> {
        self.stop.send(()).ok();
        self.handle.join().unwrap_or_default()
    }
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn memory_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".into(),
            |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0),
        )
}

/// The source's git commit, if this runs in a checkout (`+changes` when
/// tracked files differ from it).
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{c}+changes"),
            _ => c,
        },
        None => "unknown".into(),
    }
}

fn parent(args: &Args) -> Result<()> {
    let backends: Vec<Backend> = match args.backend {
        Backends::Sqlite => vec![Backend::Sqlite],
        Backends::Postgres => vec![Backend::Postgres],
        Backends::Both => vec![Backend::Sqlite, Backend::Postgres],
    };
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let machine = json!({
        "commit": commit(),
        "cores": cores,
        "memory": memory_total(),
        "load_average_before": load_average(),
    });
    eprintln!(
        "tenure-bench: {} identities, backends: {}, {cores} cores, {} memory, load average {}",
        args.identities,
        backends
            .iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        machine["memory"].as_str().unwrap_or_default(),
        machine["load_average_before"].as_str().unwrap_or_default(),
    );
    if backends.contains(&Backend::Postgres) {
        eprintln!("PostgreSQL server: {}", run::redact(&args.postgres));
    }
    let mut results = Vec::new();
    for b in backends {
        results.push(spawn(b, args)?);
    }
    let mut machine = machine;
    machine["load_average_after"] = json!(load_average());
    let text = report::markdown(&results, &machine);
    println!("{text}");
    if let Some(path) = &args.json {
        let doc = json!({
            "benchmark": "lifecycle",
            "identities": args.identities,
            "seed": args.seed,
            "change_percent": args.change_percent,
            "machine": machine,
            "goals": report::goals_json(&results),
            "results": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}
