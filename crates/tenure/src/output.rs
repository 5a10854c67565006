//! Output for people (tables, summaries) and for programs (JSON, CSV).

use anyhow::Result;
use serde::Serialize;
use std::fmt::Write;
use tenure_core::audit::{Verification, Verifier};
use tenure_core::events::ChangeKind;
use tenure_engine::Engine;
use tenure_engine::engine::{ApplyReport, Planned};
use tenure_engine::import::ImportReport;
use tenure_engine::reports::{AccessRow, DiscoveredRow, LeaverRow, OrphanRow};
use tenure_store::Store;

/// A plain text table with aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: &mut dyn Iterator<Item = String>| {
        let cells: Vec<String> = cells.collect();
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        let _ = writeln!(s, "{}", l.trim_end());
    };
    line(&mut s, &mut headers.iter().map(|h| h.to_uppercase()));
    for r in rows {
        line(&mut s, &mut r.iter().cloned());
    }
    s
}

/// Column headers and cells of a table.
pub type Cells = (Vec<&'static str>, Vec<Vec<String>>);

/// Renders report rows as a table, CSV or JSON.
pub fn render<T: Serialize>(
    rows: &[T],
    json: bool,
    csv_out: bool,
    to_table: fn(&[T]) -> Cells,
) -> Result<String> {
    if json {
        return Ok(serde_json::to_string_pretty(rows)? + "\n");
    }
    let (headers, cells) = to_table(rows);
    if csv_out {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&headers)?;
        for r in &cells {
            w.write_record(r)?;
        }
        return Ok(String::from_utf8(
            w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
        )?);
    }
    if cells.is_empty() {
        return Ok("(none)\n".to_owned());
    }
    Ok(table(&headers, &cells))
}

fn yes(b: bool) -> String {
    if b {
        "enabled".into()
    } else {
        "disabled".into()
    }
}

/// The access report as a table.
pub fn access_table(rows: &[AccessRow]) -> Cells {
    (
        vec![
            "identity",
            "name",
            "status",
            "system",
            "account",
            "state",
            "entitlements",
            "why",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.identity.clone(),
                    r.name.clone(),
                    r.status.clone(),
                    r.system.clone(),
                    r.account.clone(),
                    yes(r.enabled),
                    r.entitlements.join(","),
                    r.why.clone(),
                ]
            })
            .collect(),
    )
}

/// The orphans report as a table.
pub fn orphans_table(rows: &[OrphanRow]) -> Cells {
    (
        vec!["system", "account", "state", "entitlements", "finding"],
        rows.iter()
            .map(|r| {
                vec![
                    r.system.clone(),
                    r.account.clone(),
                    yes(r.enabled),
                    r.entitlements.join(","),
                    r.finding.clone(),
                ]
            })
            .collect(),
    )
}

/// What `tenure discover` found, as a table.
pub fn discovered_table(rows: &[DiscoveredRow]) -> Cells {
    (
        vec![
            "account",
            "state",
            "status",
            "identity",
            "name",
            "entitlements",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.account.clone(),
                    yes(r.enabled),
                    r.status.clone(),
                    r.identity.clone(),
                    r.name.clone(),
                    r.entitlements.join(","),
                ]
            })
            .collect(),
    )
}

/// The one-line summary under `tenure discover`'s table.
pub fn discovered_summary(system: &str, rows: &[DiscoveredRow]) -> String {
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    let groups: std::collections::BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.entitlements.iter().map(String::as_str))
        .collect();
    format!(
        "system {system}: {} account(s): {} linked, {} correlated now, {} orphaned, {} ambiguous; {} managed group(s) held. Nothing was changed.\n",
        rows.len(),
        count("linked"),
        count("correlated"),
        count("orphaned"),
        count("ambiguous"),
        groups.len()
    )
}

/// The leavers report as a table.
pub fn leavers_table(rows: &[LeaverRow]) -> Cells {
    (
        vec![
            "identity",
            "name",
            "end date",
            "policy",
            "system",
            "account",
            "state",
            "entitlements",
            "next step",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.identity.clone(),
                    r.name.clone(),
                    r.end_date.map(|d| d.to_string()).unwrap_or_default(),
                    r.policy.clone(),
                    r.system.clone(),
                    r.account.clone(),
                    yes(r.enabled),
                    r.entitlements.to_string(),
                    r.next_step
                        .map(|(a, at)| {
                            format!("{} on {}", a.as_str(), at.format("%Y-%m-%d %H:%M UTC"))
                        })
                        .unwrap_or_else(|| "—".into()),
                ]
            })
            .collect(),
    )
}

/// An import's outcome for people.
pub fn import_text(r: &ImportReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Imported {} records from {} (source {}).",
        r.records, r.file, r.source
    );
    let counts = r.classification.counts();
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(s, "  {}", parts.join(", "));
    for c in r
        .classification
        .changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Unchanged)
    {
        let what = match c.kind {
            ChangeKind::Joiner => format!("joiner ({})", c.after),
            _ => c.kind.to_string(),
        };
        let fields: Vec<String> = c
            .fields
            .iter()
            .map(|f| {
                let b = if f.before.is_empty() {
                    "(none)"
                } else {
                    &f.before
                };
                let a = if f.after.is_empty() {
                    "(none)"
                } else {
                    &f.after
                };
                format!("{}: {b} → {a}", f.field)
            })
            .collect();
        let note = c
            .note
            .as_deref()
            .map(|n| format!(" [{n}]"))
            .unwrap_or_default();
        if counts.get(&ChangeKind::Joiner).copied().unwrap_or(0) > 20
            && c.kind == ChangeKind::Joiner
        {
            continue;
        }
        let _ = writeln!(
            s,
            "  {:<18} {}{}{}",
            what,
            c.id,
            if fields.is_empty() {
                String::new()
            } else {
                format!("  {}", fields.join("; "))
            },
            note
        );
    }
    if r.overridden {
        let _ = writeln!(
            s,
            "  Mass-change guard overridden: {} (recorded in the audit log)",
            r.guard
        );
    }
    s
}

/// An import's outcome for programs.
pub fn import_json(r: &ImportReport) -> serde_json::Value {
    serde_json::json!({
        "source": r.source,
        "file": r.file,
        "records": r.records,
        "counts": r.classification.counts(),
        "changes": r.classification.changes.iter().filter(|c| c.kind != ChangeKind::Unchanged).collect::<Vec<_>>(),
        "guard": r.guard,
        "overridden": r.overridden,
    })
}

/// An apply's outcome for people.
pub fn apply_text(p: &Planned, r: &ApplyReport) -> String {
    let mut s = String::new();
    if r.resumed.done + r.resumed.failed > 0 {
        let _ = writeln!(
            s,
            "Finished {} operation(s) left from an earlier run ({} failed).",
            r.resumed.done, r.resumed.failed
        );
    }
    match r.plan_id {
        None if p.plan.changed_only => {
            let _ = writeln!(
                s,
                "Nothing to do for the {} people who changed since the last applied plan.",
                p.mark.due.len()
            );
        }
        None => {
            let _ = writeln!(s, "Nothing to do: every system matches policy.");
        }
        Some(id) if r.executed == Default::default() && r.still_queued > 0 => {
            let _ = writeln!(
                s,
                "Queued plan {id} ({} operations) for `tenure work` to execute.",
                p.plan.operations.len()
            );
        }
        Some(id) => {
            let _ = writeln!(
                s,
                "Applied plan {} ({}): {} confirmed by their systems, {} failed.",
                id,
                p.plan.counts_text(),
                r.executed.done,
                r.executed.failed
            );
        }
    }
    if r.still_queued > 0 {
        let _ = writeln!(
            s,
            "{} operation(s) are waiting to be retried; run `tenure apply` again later, or see `tenure queue`.",
            r.still_queued
        );
    }
    if r.failed > 0 {
        let _ = writeln!(
            s,
            "{} operation(s) failed for good and need attention: see `tenure queue`.",
            r.failed
        );
    }
    if p.guard.blocked {
        let _ = writeln!(
            s,
            "Mass-change guard overridden: {} (recorded in the audit log).",
            p.guard
        );
    }
    s
}

/// An apply's outcome for programs.
pub fn apply_json(p: &Planned, r: &ApplyReport) -> serde_json::Value {
    serde_json::json!({
        "plan": r.plan_id.map(|p| p.to_string()),
        "fingerprint": p.plan.fingerprint,
        "counts": p.plan.counts(),
        "resumed": { "done": r.resumed.done, "failed": r.resumed.failed },
        "executed": { "done": r.executed.done, "failed": r.executed.failed },
        "still_queued": r.still_queued,
        "failed": r.failed,
        "guard": p.guard,
    })
}

/// The queue's state.
pub async fn queue_text(engine: &Engine) -> Result<String> {
    let c = engine.store.queue_counts().await?;
    let mut s = format!(
        "queued {}, running {}, done {}, failed {}\n",
        c.queued, c.running, c.done, c.failed
    );
    let ops = engine.store.operations(None).await?;
    let rows: Vec<Vec<String>> = ops
        .iter()
        .filter(|o| !matches!(o.state, tenure_store::OpState::Done))
        .map(|o| {
            vec![
                o.id.to_string(),
                format!("{:?}", o.state).to_lowercase(),
                o.operation.system.to_string(),
                o.operation.account.to_string(),
                o.operation.action.name().to_owned(),
                o.attempts.to_string(),
                o.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        s.push_str(&table(
            &[
                "id",
                "state",
                "system",
                "account",
                "action",
                "attempts",
                "last error",
            ],
            &rows,
        ));
    }
    Ok(s)
}

/// Verifies the whole audit log, a page at a time.
pub async fn verify(store: &Store) -> Result<Verification> {
    let mut v = Verifier::default();
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            v.push(r);
        }
    }
    Ok(v.finish())
}

/// A verification for people.
pub fn verify_text(v: &Verification) -> String {
    let mut s = String::new();
    if v.problems.is_empty() {
        let _ = writeln!(
            s,
            "Audit log intact: {} records, hash chain verified.",
            v.records
        );
    } else {
        let _ = writeln!(
            s,
            "Audit log TAMPERED: {} problem(s) in {} records:",
            v.problems.len(),
            v.records
        );
        for p in &v.problems {
            let _ = writeln!(s, "  {p}");
        }
    }
    if let Some((seq, hash)) = &v.head {
        let _ = writeln!(
            s,
            "Head: record {seq}, hash {hash} (keep it elsewhere to detect a re-written log)."
        );
    }
    s
}

/// Writes the log as JSON lines.
pub async fn export(store: &Store, out: Option<&std::path::Path>) -> Result<()> {
    use std::io::Write as _;
    let mut w: Box<dyn std::io::Write + Send> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            serde_json::to_writer(&mut w, r)?;
            w.write_all(b"\n")?;
        }
    }
    w.flush()?;
    Ok(())
}

/// What a plan asked for with `--changed` covered, for people.
pub fn scope_note(asked_changed: bool, planned: &tenure_engine::Planned) -> Option<String> {
    if planned.plan.changed_only {
        let n = planned.mark.due.len();
        Some(format!(
            "Planned for the {n} {} who changed or whose dates came since the last applied plan, \
             against their own accounts; `tenure plan` without --changed reconciles everyone.",
            if n == 1 { "person" } else { "people" }
        ))
    } else if asked_changed {
        Some(
            "No plan has been applied with this policy yet, so this plan covers everyone."
                .to_owned(),
        )
    } else {
        None
    }
}

/// A suspend or resume, per system.
pub fn suspend_text(r: &tenure_engine::suspend::SuspendReport, queued_only: bool) -> String {
    let mut s = String::new();
    let what = if r.suspended { "Suspended" } else { "Resumed" };
    let _ = writeln!(
        s,
        "{what} {}{}.",
        r.identity,
        if r.unchanged {
            " (the flag was already set; accounts checked again)"
        } else {
            ""
        }
    );
    if r.systems.is_empty() {
        let _ = writeln!(s, "Every system already matched: nothing to change.");
        return s;
    }
    for sys in &r.systems {
        let state = if queued_only {
            format!("{} operation(s) queued", sys.operations)
        } else if sys.done == sys.operations {
            match sys.confirmed_after_s {
                Some(t) => format!("confirmed after {t:.3} s"),
                None => "confirmed".to_owned(),
            }
        } else {
            format!(
                "{} of {} confirmed, {} failed, {} waiting for a retry",
                sys.done, sys.operations, sys.failed, sys.pending
            )
        };
        let _ = writeln!(s, "  {:<16} {state}", sys.system.as_str());
        for e in &sys.errors {
            let _ = writeln!(s, "    error: {e}");
        }
    }
    s
}

/// A person's timeline, for people.
pub fn timeline_text(t: &tenure_engine::timeline::Timeline) -> String {
    let mut s = String::new();
    let date = |d: Option<chrono::NaiveDate>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
    let _ = writeln!(
        s,
        "{} ({}) — {}{}; started {}, ends {}",
        t.name,
        t.identity,
        t.status.as_str(),
        if t.suspended { ", suspended" } else { "" },
        date(t.start_date),
        date(t.end_date)
    );
    if let Some(h) = &t.legal_hold {
        let _ = writeln!(
            s,
            "Legal hold since {} by {}: {} — accounts are not deleted until it is released.",
            h.since.format("%Y-%m-%d"),
            h.actor,
            h.reason
        );
    }
    let _ = writeln!(s, "\nEvents:");
    if t.events.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for e in &t.events {
        let _ = writeln!(
            s,
            "  {}  {:<22} {}  (by {})",
            e.at.format("%Y-%m-%d %H:%M"),
            e.action,
            e.reason,
            e.actor
        );
    }
    if !t.schedule.is_empty() {
        let _ = writeln!(s, "\nDeprovisioning schedule:");
        for st in &t.schedule {
            let _ = writeln!(
                s,
                "  {}  {:<20} {} (policy {}{})",
                st.due.format("%Y-%m-%d %H:%M"),
                st.step,
                if st.reached { "due" } else { "pending" },
                st.policy,
                if st.overrides.is_empty() {
                    String::new()
                } else {
                    format!("; instead on {}", st.overrides.join(", "))
                }
            );
        }
    }
    if !t.grants.is_empty() {
        let _ = writeln!(s, "\nGrants:");
        for g in &t.grants {
            let window = match (g.grant.grant.valid_from, g.grant.grant.valid_until) {
                (None, None) => "no end".to_owned(),
                (Some(f), None) => format!("from {}", f.format("%Y-%m-%d %H:%M")),
                (None, Some(u)) => format!("until {}", u.format("%Y-%m-%d %H:%M")),
                (Some(f), Some(u)) => format!(
                    "{} to {}",
                    f.format("%Y-%m-%d %H:%M"),
                    u.format("%Y-%m-%d %H:%M")
                ),
            };
            let _ = writeln!(
                s,
                "  #{:<4} {:<16} {:<8} {}  — {} (by {})",
                g.grant.id,
                g.grant.grant.role,
                g.state,
                window,
                g.grant.grant.reason,
                g.grant.created_by
            );
        }
    }
    let _ = writeln!(s, "\nOperations:");
    if t.operations.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for o in &t.operations {
        let when = o.done_at.map_or_else(String::new, |d| {
            format!(" at {}", d.format("%Y-%m-%d %H:%M:%S"))
        });
        let _ = writeln!(
            s,
            "  {:<10} {:<20} {:<28} {}{}  — {}",
            o.system, o.account, o.action, o.state, when, o.why
        );
        if let Some(e) = &o.last_error {
            let _ = writeln!(s, "      last error ({} attempts): {e}", o.attempts);
        }
    }
    if let Some(d) = t.next_due {
        let _ = writeln!(
            s,
            "\nNext looked at by date: {}",
            d.format("%Y-%m-%d %H:%M UTC")
        );
    }
    s
}

/// `tenure explain` for people.
pub fn explain_text(e: &tenure_engine::explain::Explanation) -> String {
    let mut s = String::new();
    let name = if e.name.is_empty() {
        String::new()
    } else {
        format!(" {}", e.name)
    };
    let system = if e.system_name.is_empty() || e.system_name == e.system.as_str() {
        e.system.to_string()
    } else {
        format!("{} ({})", e.system, e.system_name)
    };
    let _ = writeln!(
        s,
        "{}{name} ({}, {}) on {system}",
        e.identity, e.status, e.trace.status_why
    );
    if let Some(why) = &e.unreadable {
        let _ = writeln!(s, "  the system could not be read: {why}");
    }
    let a = &e.account;
    let state = match (a.exists, a.enabled) {
        (None, _) => "unknown (not read)",
        (Some(false), _) => "does not exist",
        (Some(true), Some(false)) => "exists, disabled",
        (Some(true), _) => "exists, enabled",
    };
    let _ = writeln!(
        s,
        "Account {}: {state}{}",
        a.key
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "(none)".into()),
        if a.linked {
            ", linked to this person"
        } else {
            ""
        }
    );
    for r in &a.reasons {
        let _ = writeln!(s, "  because {r}");
    }
    let _ = writeln!(s, "  → {}", a.verdict);
    let _ = writeln!(s, "Entitlements:");
    if e.entitlements.is_empty() {
        let _ = writeln!(s, "  (none held, none justified)");
    }
    for x in &e.entitlements {
        let _ = writeln!(
            s,
            "  {} ({})",
            x.entitlement,
            if x.held { "held" } else { "not held" }
        );
        for r in &x.justified_by {
            let _ = writeln!(s, "    because {r}");
        }
        let _ = writeln!(s, "    → {}", x.verdict);
    }
    if e.operations.is_empty() {
        let _ = writeln!(s, "A plan would change nothing here for {}.", e.identity);
    } else {
        let _ = writeln!(s, "A plan would:");
        for op in &e.operations {
            let why: Vec<String> = op.reasons.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                s,
                "  {} {}  [{}]",
                op.action.name().replace('_', " "),
                match &op.action {
                    tenure_core::Action::AddMembership { entitlement }
                    | tenure_core::Action::RemoveMembership { entitlement } =>
                        format!("{} {entitlement}", op.account),
                    _ => op.account.to_string(),
                },
                why.join("; ")
            );
        }
    }
    s
}
