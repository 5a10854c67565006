//! `--breakdown`: where the time of a phase goes, measured by running the
//! engine's steps again one by one through the lower-level functions (the
//! parser, the store's reads, policy evaluation, correlation, the diff).
//!
//! Every step measured here is repeatable without changing anything (a read or
//! a pure function), so it runs on the state the phase left behind; the steps
//! that write (storing identities, enqueueing a plan) are what is left of the
//! phase's time once the others are taken away, and are labelled "by
//! difference". The apply phase is split in two engine calls: queueing the
//! plan (refresh, plan, links, enqueue) and executing the queue.

use crate::run::{Probe, secs};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Instant;
use tenure_core::plan::{DiffInput, Fingerprinter, diff};
use tenure_engine::engine::{ApplyReport, Planned};
use tenure_engine::observe::Observation;
use tenure_engine::{Engine, NoProgress};

fn step(name: &str, s: f64) -> Value {
    json!({ "step": name, "s": s })
}

/// A step with the resident memory it added at its peak.
fn step_mem(name: &str, s: f64, grew: u64) -> Value {
    json!({ "step": name, "s": s, "mem_bytes": grew })
}

/// The steps of an import of `path`, which took `total_s`. `first`: the import
/// was made on an empty store.
pub async fn import(engine: &Engine, path: &Path, total_s: f64, first: bool) -> Result<Value> {
    let cfg = engine.policy.config();
    let src = &cfg
        .sources
        .first()
        .context("the configuration has no source")?
        .item;
    let today = engine.clock.now().date_naive();

    let (t, p) = (Instant::now(), Probe::start());
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let records = tenure_sources::parse(src, &path.display().to_string(), &bytes)?;
    let (parse_s, parse_m) = (secs(t), p.end());
    drop(bytes);

    let (t, p) = (Instant::now(), Probe::start());
    let stored = engine.store.identities().await?;
    let (identities_s, identities_m) = (secs(t), p.end());
    let stored = if first { Vec::new() } else { stored };

    let (t, p) = (Instant::now(), Probe::start());
    let classification =
        tenure_core::events::classify(&src.id, &stored, records, src.missing, today);
    let (classify_s, classify_m) = (secs(t), p.end());
    let upserts = classification.upserts.len();
    drop(classification);

    let mut steps = vec![step_mem(
        "read the file + tenure_sources::parse",
        parse_s,
        parse_m,
    )];
    let mut known = parse_s + classify_s;
    if first {
        steps.push(json!({
            "step": "store.identities() of 100% (the store was empty at the time: not counted)",
            "s": identities_s,
            "mem_bytes": identities_m,
            "counted": false,
        }));
    } else {
        steps.push(step_mem("store.identities()", identities_s, identities_m));
        known += identities_s;
    }
    steps.push(step_mem(
        "tenure_core::events::classify",
        classify_s,
        classify_m,
    ));
    steps.push(step(
        "audit events + store.save_identities (by difference)",
        total_s - known,
    ));
    Ok(json!({ "total_s": total_s, "upserts": upserts, "steps": steps }))
}

/// The steps of a plan, which took `total_s`.
pub async fn plan(engine: &Engine, total_s: f64) -> Result<Value> {
    let now = engine.clock.now();

    let (t, p) = (Instant::now(), Probe::start());
    let obs = Observation::read(engine, &NoProgress).await?;
    let (observe_s, observe_m) = (secs(t), p.end());

    let (t, p) = (Instant::now(), Probe::start());
    let identities = engine.store.identities().await?;
    let (identities_s, identities_m) = (secs(t), p.end());
    drop(identities);

    let (t, p) = (Instant::now(), Probe::start());
    let stored_links = engine.store.links().await?;
    let (links_s, links_m) = (secs(t), p.end());

    let (t, p) = (Instant::now(), Probe::start());
    let (desired, _errors) = engine.policy.evaluate_all(&obs.identities, &[], now);
    let (evaluate_s, evaluate_m) = (secs(t), p.end());

    let (t, p) = (Instant::now(), Probe::start());
    let mut correlated = 0usize;
    for (system, accounts) in &obs.actual.systems {
        let c = tenure_core::correlate::correlate(
            system,
            accounts,
            &stored_links,
            &obs.identities,
            &desired,
            engine.policy.correlation(system),
        );
        correlated += c.links.len();
    }
    let (correlate_s, correlate_m) = (secs(t), p.end());
    drop(desired);
    drop(stored_links);

    let accounts: usize = obs.actual.systems.values().map(|s| s.accounts.len()).sum();
    let read_systems_s = observe_s - identities_s - links_s - evaluate_s - correlate_s;

    let (t, p) = (Instant::now(), Probe::start());
    let systems = engine.policy.system_infos(&obs.capabilities);
    let d = diff(&DiffInput {
        systems: &systems,
        desired: &obs.desired,
        actual: &obs.actual,
        links: &obs.links,
    });
    let (diff_s, diff_m) = (secs(t), p.end());

    // Engine::plan leaves out what is already queued.
    let (t, p) = (Instant::now(), Probe::start());
    let pending: std::collections::BTreeSet<String> = engine
        .store
        .pending_operations(None)
        .await?
        .into_iter()
        .map(|p| p.key)
        .collect();
    let mut operations: Vec<_> = d.operations.iter().collect();
    if !pending.is_empty() {
        operations.retain(|o| !pending.contains(&o.key()));
    }
    let (pending_s, pending_m) = (secs(t), p.end());
    let pending_n = pending.len();
    drop(pending);

    let (t, p) = (Instant::now(), Probe::start());
    let records: Vec<_> = obs
        .identities
        .iter()
        .map(|i| (&i.record, &i.source, i.suspended))
        .collect();
    let mut f = Fingerprinter::default();
    f.part("policy", engine.policy.fingerprint());
    f.part("identities", &records);
    f.part("links", &obs.links);
    f.part("operations", &operations);
    let fp = f.finish();
    let (fingerprint_s, fingerprint_m) = (secs(t), p.end());
    drop(fp);
    drop(records);
    drop(operations);

    // What Engine::plan does next: one display label per operation.
    let (t, p) = (Instant::now(), Probe::start());
    let labels: std::collections::BTreeMap<_, _> = d
        .operations
        .iter()
        .filter_map(|o| o.identity.as_ref())
        .filter_map(|id| {
            obs.identity(id)
                .map(|i| (id.clone(), tenure_engine::observe::label(i)))
        })
        .collect();
    let (labels_s, labels_m) = (secs(t), p.end());
    let operations = d.operations.len();
    drop(labels);

    let steps = vec![
        json!({
            "step": "Observation::read, whole (the next five rows)",
            "s": observe_s,
            "mem_bytes": observe_m,
            "counted": false,
        }),
        step_mem("store.identities()", identities_s, identities_m),
        step_mem("store.links()", links_s, links_m),
        step(
            "connectors: read_accounts, 5 systems concurrently (by difference)",
            read_systems_s,
        ),
        step_mem("policy.evaluate_all", evaluate_s, evaluate_m),
        step_mem(
            "tenure_core::correlate (5 systems)",
            correlate_s,
            correlate_m,
        ),
        step_mem("tenure_core::plan::diff", diff_s, diff_m),
        step_mem(
            &format!(
                "store.pending_operations() ({pending_n} not done) + leaving out queued operations"
            ),
            pending_s,
            pending_m,
        ),
        step_mem(
            "plan fingerprint: identities, links, operations serialised into SHA-256",
            fingerprint_s,
            fingerprint_m,
        ),
        step_mem(
            "labels: observe::label per operation, into a BTreeMap",
            labels_s,
            labels_m,
        ),
        step(
            "unattributed: findings, guard, freeing memory, noise (by difference)",
            total_s - observe_s - diff_s - pending_s - fingerprint_s - labels_s,
        ),
    ];
    Ok(json!({
        "total_s": total_s,
        "accounts": accounts,
        "links": correlated,
        "operations": operations,
        "steps": steps,
    }))
}

/// Sums of one executor step over the batches.
#[derive(Default)]
struct Timer {
    total: f64,
    per_system: std::collections::BTreeMap<String, f64>,
}

/// Applies like `engine.apply(None, false, true, …)`, step by step through
/// the same public functions the engine calls, timing each: refresh, plan,
/// saving links, enqueueing the plan; then the executor's loop (claim a batch,
/// apply it through the connectors, one system per task concurrently,
/// complete it with its audit records), as `tenure_engine::executor` does
/// (leases on the engine's wall clock).
/// The mass-change guard is not consulted (the initial plan only creates).
pub async fn apply(engine: &Engine) -> Result<(Planned, ApplyReport, Value)> {
    let mut report = ApplyReport::default();

    let t = Instant::now();
    tenure_engine::import::refresh(engine).await?;
    let refresh_s = secs(t);

    let t = Instant::now();
    let planned = engine.plan(&NoProgress).await?;
    let plan_s = secs(t);

    let t = Instant::now();
    let mut links = planned.new_links.clone();
    for op in &planned.plan.operations {
        if let (tenure_core::Action::CreateAccount { .. }, Some(id)) = (&op.action, &op.identity) {
            links.push(tenure_core::Link {
                system: op.system.clone(),
                account: op.account.clone(),
                identity: id.clone(),
            });
        }
    }
    engine
        .store
        .save_links(&links, &planned.stale_links)
        .await?;
    drop(links);
    let links_s = secs(t);

    let t = Instant::now();
    let event = tenure_core::audit::AuditEvent {
        at: engine.clock.now(),
        actor: engine.actor.clone(),
        action: "plan.enqueued".into(),
        subject: format!("plan:{}", planned.plan.fingerprint),
        reason: format!("{} operations", planned.plan.operations.len()),
        detail: json!({ "counts": planned.plan.counts() }).to_string(),
    };
    let plan_id = engine
        .store
        .enqueue_plan(&planned.plan, 0, vec![event])
        .await?;
    report.plan_id = Some(plan_id);
    let m = &planned.mark;
    engine
        .store
        .record_planned(m.upto, &m.policy, &m.due, m.everyone)
        .await?;
    let enqueue_s = secs(t);

    // The executor's loop.
    let worker = format!("bench-{}", std::process::id());
    let retry = tenure_store::RetryPolicy {
        base: std::time::Duration::from_secs(2),
        max_attempts: 8,
    };
    let mut claim = Timer::default();
    let mut connectors = Timer::default();
    let mut complete = Timer::default();
    let mut batches = 0u64;
    let mut single_system = 0u64;
    loop {
        let now = engine.wall.now();
        let t = Instant::now();
        let batch = engine
            .store
            .claim(&worker, now, engine.lease, engine.batch)
            .await?;
        claim.total += secs(t);
        if batch.is_empty() {
            break;
        }
        batches += 1;
        let mut by_system: std::collections::BTreeMap<
            tenure_core::SystemId,
            Vec<tenure_store::QueuedOperation>,
        > = std::collections::BTreeMap::new();
        for q in batch.iter().cloned() {
            by_system
                .entry(q.operation.system.clone())
                .or_default()
                .push(q);
        }
        let by_id: std::collections::HashMap<i64, &tenure_store::QueuedOperation> =
            batch.iter().map(|q| (q.id, q)).collect();
        if by_system.len() == 1 {
            single_system += 1;
        }
        let t = Instant::now();
        let runs =
            futures::future::join_all(by_system.into_iter().map(|(system, qs)| async move {
                let t = Instant::now();
                let Some(conn) = engine.connectors.get(&system) else {
                    return (system, 0.0, Vec::new());
                };
                let ops: Vec<_> = qs.iter().map(|q| q.operation.clone()).collect();
                let results = conn.apply(&ops).await;
                let out: Vec<(i64, Result<(), String>)> = qs
                    .iter()
                    .enumerate()
                    .map(|(n, q)| {
                        let r = match results.get(n) {
                            Some(Ok(())) => Ok(()),
                            Some(Err(e)) => Err(e.to_string()),
                            None => Err("no result".to_owned()),
                        };
                        (q.id, r)
                    })
                    .collect();
                (system, secs(t), out)
            }))
            .await;
        connectors.total += secs(t);
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for (system, s, out) in runs {
            *connectors.per_system.entry(system.to_string()).or_default() += s;
            for (id, r) in out {
                let Some(q) = by_id.get(&id).copied() else {
                    continue;
                };
                match r {
                    Ok(()) => done.push(q),
                    Err(e) => failed.push((q, e)),
                }
            }
        }
        let t = Instant::now();
        engine
            .store
            .complete(&worker, engine.wall.now(), &done, &failed, retry)
            .await?;
        complete.total += secs(t);
        report.executed.done += done.len() as u64;
        report.executed.failed += failed.len() as u64;
    }
    let counts = engine.store.queue_counts().await?;
    report.still_queued = counts.queued + counts.running;
    report.failed = counts.failed;
    complete.per_system.clear();
    claim.per_system.clear();

    let mut steps = vec![
        step("import::refresh (lifecycle statuses)", refresh_s),
        step("engine.plan (the plan again)", plan_s),
        step("store.save_links (links of created accounts)", links_s),
        step("store.enqueue_plan (operations to the queue)", enqueue_s),
        step(
            &format!(
                "executor: store.claim ({batches} batches of up to {}; {single_system} of them touch one system only)",
                engine.batch
            ),
            claim.total,
        ),
        step(
            "executor: connectors apply (5 systems concurrently, wall time)",
            connectors.total,
        ),
    ];
    for (system, s) in &connectors.per_system {
        steps.push(json!({
            "step": format!("  of which {system} (its own time, overlapping)"),
            "s": s,
            "counted": false,
        }));
    }
    steps.push(step(
        "executor: store.complete (done + operation.done audit records)",
        complete.total,
    ));
    let total =
        refresh_s + plan_s + links_s + enqueue_s + claim.total + connectors.total + complete.total;
    Ok((planned, report, json!({ "total_s": total, "steps": steps })))
}
