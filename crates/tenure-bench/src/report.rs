//! The results as a Markdown table with the goals' verdicts, and as JSON.

use serde_json::{Value, json};
use std::fmt::Write as _;

/// A goal of the issue.
struct Goal {
    name: &'static str,
    /// The measured value, from one backend's result.
    value: fn(&Value) -> f64,
    /// Whether the value meets the goal.
    met: fn(f64) -> bool,
    /// How the value is shown.
    show: fn(f64) -> String,
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn goals() -> [Goal; 4] {
    [
        Goal {
            name: "full import + plan < 10 s",
            value: |r| num(r, "full_import_s") + num(r, "full_plan_s"),
            met: |x| x < 10.0,
            show: |x| format!("{x:.2} s"),
        },
        Goal {
            name: "incremental import + plan < 1 s",
            value: |r| num(r, "incremental_import_s") + num(r, "incremental_plan_s"),
            met: |x| x < 1.0,
            show: |x| format!("{x:.2} s"),
        },
        Goal {
            name: "apply ≥ 20,000 operations/s",
            value: |r| num(r, "apply_ops_per_s"),
            met: |x| x >= 20_000.0,
            show: |x| format!("{} ops/s", thousands(x.round() as u64)),
        },
        Goal {
            name: "peak memory < 1 GiB",
            value: |r| num(r, "peak_rss_bytes"),
            met: |x| x < GIB,
            show: |x| format!("{:.0} MiB", x / 1024.0 / 1024.0),
        },
    ]
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn backend_name(r: &Value) -> &'static str {
    match r.get("backend").and_then(Value::as_str) {
        Some("postgres") => "PostgreSQL",
        Some("sqlite") => "SQLite",
        _ => "?",
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

/// Seconds, or "not run" for a phase that did not run.
fn seconds(x: f64) -> String {
    if x.is_nan() {
        "not run".to_owned()
    } else {
        format!("{x:.2} s")
    }
}

/// A phase's time and operation count.
fn timed(r: &Value, time: &str, count: &str) -> String {
    let x = num(r, time);
    if x.is_nan() {
        "not run".to_owned()
    } else {
        format!("{x:.2} s ({} ops)", ops(r, count))
    }
}

fn ops(r: &Value, key: &str) -> String {
    thousands(r.get(key).and_then(Value::as_u64).unwrap_or(0))
}

fn counts(v: Option<&Value>) -> String {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(k, n)| format!("{} {}", thousands(n.as_u64().unwrap_or(0)), k))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The goals' verdicts per backend, for the JSON output.
pub fn goals_json(results: &[Value]) -> Value {
    Value::Array(
        goals()
            .iter()
            .map(|g| {
                let per: serde_json::Map<String, Value> = results
                    .iter()
                    .map(|r| {
                        let x = (g.value)(r);
                        (
                            r.get("backend")
                                .and_then(Value::as_str)
                                .unwrap_or("?")
                                .to_owned(),
                            json!({ "value": x, "met": (g.met)(x) }),
                        )
                    })
                    .collect();
                json!({ "goal": g.name, "results": per })
            })
            .collect(),
    )
}

/// The results as Markdown: the phase table, the goals, the details.
pub fn markdown(results: &[Value], machine: &Value) -> String {
    let mut out = String::new();
    let n = results
        .first()
        .and_then(|r| r.get("identities"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let pct = results
        .first()
        .map_or(f64::NAN, |r| num(r, "change_percent"));
    let _ = writeln!(out, "| phase | {} |", {
        let names: Vec<&str> = results.iter().map(backend_name).collect();
        names.join(" | ")
    });
    let _ = writeln!(out, "|---|{}", "---:|".repeat(results.len()));
    let row = |out: &mut String, label: &str, cell: &dyn Fn(&Value) -> String| {
        let cells: Vec<String> = results.iter().map(cell).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    let secs = |key: &'static str| move |r: &Value| seconds(num(r, key));
    row(
        &mut out,
        &format!("(a) full import, {} people", thousands(n)),
        &secs("full_import_s"),
    );
    row(&mut out, "(b) full plan", &|r| {
        timed(r, "full_plan_s", "full_plan_operations")
    });
    let g = goals();
    let goal_cell = |goal: &Goal| {
        let value = goal.value;
        let met = goal.met;
        let show = goal.show;
        move |r: &Value| {
            let x = value(r);
            if x.is_nan() {
                "not run".to_owned()
            } else {
                format!("{} ({})", show(x), verdict(met(x)))
            }
        }
    };
    row(
        &mut out,
        "**full import + plan** (goal < 10 s)",
        &goal_cell(&g[0]),
    );
    row(&mut out, "(c) apply of the initial plan", &|r| {
        timed(r, "apply_s", "apply_done")
    });
    row(
        &mut out,
        "**apply rate** (goal ≥ 20,000 ops/s)",
        &goal_cell(&g[2]),
    );
    row(
        &mut out,
        &format!("(d) incremental import, {pct}% changed"),
        &secs("incremental_import_s"),
    );
    row(&mut out, "(d) incremental plan", &|r| {
        timed(r, "incremental_plan_s", "incremental_plan_operations")
    });
    row(
        &mut out,
        "**incremental import + plan** (goal < 1 s)",
        &goal_cell(&g[1]),
    );
    row(
        &mut out,
        "**peak memory**, VmHWM of the process (goal < 1 GiB)",
        &goal_cell(&g[3]),
    );

    let _ = writeln!(out, "\nGoals:\n");
    for goal in &g {
        let per: Vec<String> = results
            .iter()
            .map(|r| {
                let x = (goal.value)(r);
                if x.is_nan() {
                    format!("{} not run", backend_name(r))
                } else {
                    format!(
                        "{} {} ({})",
                        backend_name(r),
                        verdict((goal.met)(x)),
                        (goal.show)(x)
                    )
                }
            })
            .collect();
        let _ = writeln!(out, "- {}: {}", goal.name, per.join("; "));
    }

    let _ = writeln!(out, "\nDetails:\n");
    if let Some(r) = results.first() {
        let c = r.get("configuration").cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "- organisation: {} source, {} SQL systems (SQLite files), {} roles, {} birthright rules, {} deprovisioning policies; HR file {:.1} MB",
            c["sources"],
            c["systems"],
            c["roles"],
            c["rules"],
            c["deprovisioning"],
            num(r, "hr_file_bytes") / 1e6
        );
        for (label, key) in [
            ("initial plan", "full_plan_counts"),
            ("incremental export", "incremental_import_counts"),
            ("incremental plan", "incremental_plan_counts"),
        ] {
            if r.get(key).is_some() {
                let _ = writeln!(out, "- {label}: {}", counts(r.get(key)));
            }
        }
    }
    for r in results {
        let run = r.get("run").cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "- {} run: {:.0} s wall, {:.0} CPU-s used by the benchmark process, {:.0} CPU-s by other processes{} (of {:.0} available), 1-minute load average {:.2} mean, {:.2} max",
            backend_name(r),
            num(&run, "wall_s"),
            num(&run, "cpu_s"),
            num(&run, "other_processes_cpu_s"),
            if r.get("backend").and_then(Value::as_str) == Some("postgres") {
                " (including the PostgreSQL server)"
            } else {
                ""
            },
            num(&run, "wall_s") * num(machine, "cores"),
            num(&run, "load_1min_mean"),
            num(&run, "load_1min_max"),
        );
    }
    for r in results {
        let _ = writeln!(
            out,
            "- {}: engine open (migrations, policy compilation) {:.2} s; generating the export {:.2} s{} (not counted in the phases)",
            backend_name(r),
            num(r, "open_s"),
            num(r, "generate_s"),
            if r.get("mutate_s").is_some() {
                format!(" and the changed export {:.2} s", num(r, "mutate_s"))
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        out,
        "- commit {}; machine: {} cores, {} memory, load average {} before and {} after the run",
        machine["commit"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["memory"].as_str().unwrap_or("?"),
        machine["load_average_before"].as_str().unwrap_or("?"),
        machine["load_average_after"].as_str().unwrap_or("?"),
    );

    for r in results {
        let Some(b) = r.get("breakdown").and_then(Value::as_object) else {
            continue;
        };
        for (phase, d) in b {
            let total = num(d, "total_s");
            let _ = writeln!(
                out,
                "\nBreakdown, {} — {phase} ({total:.2} s):\n\n| step | s | share | memory added at peak |\n|---|---:|---:|---:|",
                backend_name(r)
            );
            for s in d
                .get("steps")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let t = num(s, "s");
                let counted = s.get("counted").and_then(Value::as_bool).unwrap_or(true);
                let share = if counted {
                    format!("{:.0}%", 100.0 * t / total)
                } else {
                    "—".to_owned()
                };
                let mem = s
                    .get("mem_bytes")
                    .and_then(Value::as_u64)
                    .map_or_else(String::new, |b| format!("{:.0} MiB", b as f64 / 1048576.0));
                let _ = writeln!(
                    out,
                    "| {} | {t:.3} | {share} | {mem} |",
                    s.get("step").and_then(Value::as_str).unwrap_or("?"),
                );
            }
        }
    }
    out
}
