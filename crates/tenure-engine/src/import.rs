//! Importing an HR export, and bringing lifecycle statuses up to date as dates pass.
//!
//! An import is atomic: the file is parsed and validated whole, compared with
//! the store, checked by the mass-change guard, and only then stored, with its
//! audit records, in one transaction. A rejected file changes nothing.

use crate::engine::Engine;
use crate::error::EngineError;
use std::path::Path;
use tenure_core::events::{ChangeKind, Classification, IdentityChange, classify};
use tenure_core::guard::{GuardVerdict, verdict};
use tenure_core::policy::Grant;
use tenure_core::{Identity, SourceId};

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The source.
    pub source: SourceId,
    /// The file.
    pub file: String,
    /// Records read.
    pub records: usize,
    /// What it meant for each person.
    pub classification: Classification,
    /// The guard's verdict.
    pub guard: GuardVerdict,
    /// Whether the guard was overridden.
    pub overridden: bool,
}

fn change_event(engine: &Engine, c: &IdentityChange, file: &str) -> tenure_core::audit::AuditEvent {
    let reason = match (&c.note, c.kind) {
        (Some(n), _) => n.clone(),
        (None, ChangeKind::Joiner) => format!("new in {file}"),
        (None, _) => {
            let f: Vec<&str> = c.fields.iter().map(|f| f.field.as_str()).collect();
            if f.is_empty() {
                format!("status {:?} -> {}", c.before, c.after)
            } else {
                format!("changed: {}", f.join(", "))
            }
        }
    };
    engine.event(
        &format!("import.{}", c.kind),
        format!("identity:{}", c.id),
        reason,
        serde_json::json!({ "file": file, "before": c.before, "after": c.after, "fields": c.fields }),
    )
}

/// Imports a file for a source. With no source, the only configured one is used;
/// with no path, the source's configured `path`.
pub async fn import(
    engine: &Engine,
    source: Option<&str>,
    path: Option<&Path>,
    allow_mass_change: bool,
) -> Result<ImportReport, EngineError> {
    let cfg = engine.policy.config();
    let known = || {
        cfg.sources
            .iter()
            .map(|s| s.item.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let src = match source {
        Some(name) => cfg
            .sources
            .iter()
            .map(|s| &s.item)
            .find(|s| s.id.as_str() == name)
            .ok_or_else(|| EngineError::UnknownSource(name.to_owned(), known()))?,
        None => match cfg.sources.as_slice() {
            [one] => &one.item,
            _ => {
                return Err(EngineError::Invalid(format!(
                    "the configuration has {} sources; say which with --source (known: {})",
                    cfg.sources.len(),
                    known()
                )));
            }
        },
    };
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => match &src.path {
            Some(p) => engine.config_dir.join(p),
            None => {
                return Err(EngineError::Invalid(format!(
                    "source {} has no `path`; give the file to import",
                    src.id
                )));
            }
        },
    };
    let file = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|source| EngineError::FileRead {
        path: file.clone(),
        source,
    })?;
    let today = engine.clock.now().date_naive();
    let records = tenure_sources::parse_checked(src, &file, &bytes, &|r| {
        engine.policy.end_date_problem(r, &src.id, today)
    })?;
    let n = records.len();
    let (classification, population, graces) = compare(engine, src, records).await?;
    if let Some((_, owner)) = classification.conflicts.first() {
        let ids: Vec<String> = classification
            .conflicts
            .iter()
            .take(5)
            .map(|(i, _)| i.to_string())
            .collect();
        return Err(EngineError::SourceConflict {
            source_id: src.id.to_string(),
            owner: owner.to_string(),
            ids: ids.join(", "),
        });
    }
    let leavers = classification
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Leaver)
        .count() as u64;
    let guard = verdict(
        &cfg.guard,
        "identities becoming leavers",
        leavers,
        population,
    );
    let mut events = Vec::new();
    if guard.blocked {
        if !allow_mass_change {
            engine
                .store
                .append_audit(vec![engine.event(
                    "guard.refused",
                    format!("source:{}", src.id),
                    format!("import of {file} refused: {guard}"),
                    serde_json::json!({ "file": file, "verdict": guard }),
                )])
                .await?;
            let counts: Vec<String> = classification
                .counts()
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            return Err(EngineError::MassChange {
                verdict: guard,
                would: counts.join(", "),
            });
        }
        events.push(engine.event(
            "guard.override",
            format!("source:{}", src.id),
            format!("mass change allowed by {}: {guard}", engine.actor),
            serde_json::json!({ "file": file, "verdict": guard }),
        ));
    }
    events.extend(
        classification
            .changes
            .iter()
            .filter(|c| c.kind != ChangeKind::Unchanged)
            .map(|c| change_event(engine, c, &file)),
    );
    events.push(engine.event(
        "import.completed",
        format!("source:{}", src.id),
        format!("{n} records from {file}"),
        serde_json::json!({ "file": file, "records": n, "counts": classification.counts() }),
    ));
    events.extend(graces.iter().map(|g| grace_event(engine, g)));
    engine
        .store
        .save_identities_and_grants(
            &classification.upserts,
            &graces,
            &engine.actor,
            engine.clock.now(),
            events,
        )
        .await?;
    notify_changes(engine, &classification.changes).await;
    Ok(ImportReport {
        source: src.id.clone(),
        file,
        records: n,
        classification,
        guard: guard.clone(),
        overridden: guard.blocked,
    })
}

/// Tells people about joiners, movers, leavers and rehires (when
/// notifications are configured).
pub async fn notify_changes(engine: &Engine, changes: &[IdentityChange]) {
    use tenure_core::config::NoticeKind;
    if !engine.notifies() {
        return;
    }
    let today = engine.clock.now().date_naive().to_string();
    let mut notices = Vec::new();
    for c in changes {
        let kind = match c.kind {
            ChangeKind::Joiner => NoticeKind::Joiner,
            ChangeKind::Mover => NoticeKind::Mover,
            ChangeKind::Leaver => NoticeKind::Leaver,
            ChangeKind::Rehire => NoticeKind::Rehire,
            _ => continue,
        };
        let detail = c.note.clone().unwrap_or_else(|| {
            c.fields
                .iter()
                .map(|f| f.field.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        });
        if let Some(n) = engine.person_notice(kind, &c.id, &today, detail).await {
            notices.push(n);
        }
    }
    engine.notify(notices).await;
}

/// Compares an export with the store: what each person's record means
/// (joiner, mover, leaver…), and how many people are not gone (for the guard).
///
/// People whose stored record digest, source and status say they did not
/// change are counted unchanged without being read or compared field by
/// field: only the others, and the stored people missing from a full export,
/// are read and classified.
///
/// Also returns the grants the movers earn: the grace periods of roles they
/// no longer qualify for.
async fn compare(
    engine: &Engine,
    src: &tenure_core::config::SourceConfig,
    records: Vec<tenure_core::IdentityRecord>,
) -> Result<(Classification, u64, Vec<Grant>), EngineError> {
    let now = engine.clock.now();
    let today = now.date_naive();
    let digests = engine.store.identity_digests().await?;
    let population = digests.iter().filter(|d| !d.status.is_gone()).count() as u64;
    let by_id: std::collections::HashMap<&str, &tenure_store::IdentityDigest> =
        digests.iter().map(|d| (d.id.as_str(), d)).collect();
    let hashes = digests_of(&records);
    // Ids of the export, for who is missing from it (a full export only).
    let incoming: std::collections::HashSet<tenure_core::IdentityId> =
        if src.missing == tenure_core::config::MissingPolicy::Leaver {
            records.iter().map(|r| r.id.clone()).collect()
        } else {
            std::collections::HashSet::new()
        };
    let mut unchanged = Vec::new();
    let mut others = Vec::with_capacity(records.len() / 16);
    let mut load: Vec<tenure_core::IdentityId> = Vec::new();
    for (r, hash) in records.into_iter().zip(hashes) {
        match by_id.get(r.id.as_str()) {
            Some(d)
                if d.source == src.id
                    && d.record_hash.as_deref() == Some(hash.as_str())
                    && status_after(d.status, &r, today) == d.status =>
            {
                unchanged.push(IdentityChange {
                    id: d.id.clone(),
                    kind: ChangeKind::Unchanged,
                    before: Some(d.status),
                    after: d.status,
                    fields: vec![],
                    note: None,
                });
            }
            Some(d) => {
                load.push(d.id.clone());
                others.push(r);
            }
            None => others.push(r),
        }
    }
    if src.missing == tenure_core::config::MissingPolicy::Leaver {
        load.extend(
            digests
                .iter()
                .filter(|d| d.source == src.id && !d.status.is_gone() && !incoming.contains(&d.id))
                .map(|d| d.id.clone()),
        );
    }
    let stored = engine.store.identities_by_id(&load).await?;
    let mut classification = classify(&src.id, &stored, others, src.missing, today);
    let graces = graces(engine, &stored, &classification, now);
    classification.changes.extend(unchanged);
    classification.changes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((classification, population, graces))
}

/// The grace periods movers earn: roles with a `grace` they held before the
/// move and no longer qualify for stay until it ends (see
/// [`tenure_core::policy::Policy::graces`]).
pub(crate) fn graces(
    engine: &Engine,
    stored: &[Identity],
    classification: &Classification,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Grant> {
    let movers: std::collections::HashSet<&tenure_core::IdentityId> = classification
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Mover)
        .map(|c| &c.id)
        .collect();
    if movers.is_empty() {
        return Vec::new();
    }
    let before: std::collections::HashMap<&tenure_core::IdentityId, &Identity> =
        stored.iter().map(|i| (i.id(), i)).collect();
    let mut out = Vec::new();
    for after in &classification.upserts {
        if !movers.contains(after.id()) {
            continue;
        }
        let Some(before) = before.get(after.id()) else {
            continue;
        };
        match engine.policy.graces(before, after, now) {
            Ok(g) => out.extend(g),
            // Planning reports the failed evaluation; the move itself stands.
            Err(e) => {
                tracing::warn!(identity = %after.id(), error = %e, "grace periods not evaluated")
            }
        }
    }
    out
}

/// The audit record of a grace period given.
pub(crate) fn grace_event(engine: &Engine, g: &Grant) -> tenure_core::audit::AuditEvent {
    engine.event(
        "grant.grace",
        format!("identity:{}", g.identity),
        g.reason.clone(),
        serde_json::json!({ "role": g.role, "valid_until": g.valid_until }),
    )
}

/// [`tenure_core::IdentityRecord::digest`] of every record, on every core.
fn digests_of(records: &[tenure_core::IdentityRecord]) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let per = records.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let work: Vec<_> = records
            .chunks(per)
            .map(|c| {
                (
                    c,
                    s.spawn(move || c.iter().map(|r| r.digest()).collect::<Vec<_>>()),
                )
            })
            .collect();
        work.into_iter()
            .flat_map(|(c, h)| {
                // A thread cannot fail here; if one did, its share is done again.
                h.join()
                    .unwrap_or_else(|_| c.iter().map(|r| r.digest()).collect())
            })
            .collect()
    })
}

/// The status [`classify`] gives a stored person whose record is `r` today.
fn status_after(
    stored: tenure_core::LifecycleStatus,
    r: &tenure_core::IdentityRecord,
    today: chrono::NaiveDate,
) -> tenure_core::LifecycleStatus {
    let s = r.status_on(today);
    if stored == tenure_core::LifecycleStatus::Deleted && s.is_gone() {
        tenure_core::LifecycleStatus::Deleted
    } else {
        s
    }
}

/// Brings stored lifecycle statuses up to date with today's date: start dates
/// that have come make people active, end dates that have come make them leavers.
pub async fn refresh(engine: &Engine) -> Result<Vec<IdentityChange>, EngineError> {
    let stored = engine.store.identities().await?;
    refresh_these(engine, stored).await
}

/// [`refresh`] for the identities an incremental plan looks at only (those
/// changed since the last applied plan, or whose due moment has come): a
/// status changes by date only at a moment that was recorded as due.
pub async fn refresh_changed(engine: &Engine) -> Result<Vec<IdentityChange>, EngineError> {
    let cursor = engine.store.plan_cursor().await?;
    let upto = engine.store.change_stamp().await?;
    let stored = engine
        .store
        .identities_to_plan(cursor.change_seq, upto, engine.clock.now())
        .await?;
    refresh_these(engine, stored).await
}

/// [`refresh`] for these identities only.
pub async fn refresh_identities(
    engine: &Engine,
    ids: &[tenure_core::IdentityId],
) -> Result<Vec<IdentityChange>, EngineError> {
    let stored = engine.store.identities_by_id(ids).await?;
    refresh_these(engine, stored).await
}

async fn refresh_these(
    engine: &Engine,
    stored: Vec<Identity>,
) -> Result<Vec<IdentityChange>, EngineError> {
    remind(engine, &stored).await?;
    let today = engine.clock.now().date_naive();
    let mut upserts: Vec<Identity> = Vec::new();
    let mut changes = Vec::new();
    for i in &stored {
        if i.status == tenure_core::LifecycleStatus::Deleted {
            continue;
        }
        let now = i.record.status_on(today);
        if now != i.status {
            let kind = match now {
                tenure_core::LifecycleStatus::Active => ChangeKind::Activated,
                tenure_core::LifecycleStatus::Leaver => ChangeKind::Leaver,
                _ => ChangeKind::Updated,
            };
            changes.push(IdentityChange {
                id: i.id().clone(),
                kind,
                before: Some(i.status),
                after: now,
                fields: vec![],
                note: Some(format!("date reached ({today})")),
            });
            upserts.push(Identity {
                status: now,
                ..i.clone()
            });
        }
    }
    if !upserts.is_empty() {
        let events = changes
            .iter()
            .map(|c| {
                engine.event(
                    &format!("lifecycle.{}", c.kind),
                    format!("identity:{}", c.id),
                    c.note.clone().unwrap_or_default(),
                    serde_json::json!({ "before": c.before, "after": c.after }),
                )
            })
            .collect();
        engine.store.save_identities(&upserts, events).await?;
        // An end date that came is a leaver like one an import reports.
        notify_changes(engine, &changes).await;
    }
    Ok(changes)
}

/// How far back an ended grant is still told about (a service that was down
/// longer than this does not tell of older ends).
const ENDED_LOOKBACK_DAYS: i64 = 30;

/// Tells these people (and, as the notification routes say, their
/// managers) that access ends soon: grants that end within `[expiry]
/// remind_before`, and the end date of people who must have one; and that a
/// grant has ended. Each is told once (notices are deduplicated by their
/// event). Nothing to do when no notifications are configured.
pub(crate) async fn remind(engine: &Engine, people: &[Identity]) -> Result<(), EngineError> {
    use tenure_core::config::NoticeKind;
    if !engine.notifies() || people.is_empty() {
        return Ok(());
    }
    let now = engine.clock.now();
    let today = now.date_naive();
    let window = engine.policy.remind_before();
    let everyone = people.len() > 10_000;
    let ids: Vec<tenure_core::IdentityId> = people.iter().map(|i| i.id().clone()).collect();
    let of = (!everyone).then_some(ids.as_slice());
    let by_id: std::collections::HashMap<&tenure_core::IdentityId, &Identity> =
        people.iter().map(|i| (i.id(), i)).collect();
    let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let mut notices = Vec::new();
    let ending = engine.store.grants_ending(of, now, now + window).await?;
    let ended = engine
        .store
        .grants_ending(of, now - chrono::Duration::days(ENDED_LOOKBACK_DAYS), now)
        .await?;
    for (kind, grants) in [
        (NoticeKind::ExpiryUpcoming, ending),
        (NoticeKind::Expired, ended),
    ] {
        for g in grants {
            let (Some(until), Some(holder)) = (g.grant.valid_until, by_id.get(&g.grant.identity))
            else {
                continue;
            };
            let detail = match kind {
                NoticeKind::ExpiryUpcoming => format!(
                    "role {} (grant #{}: {}) ends on {}",
                    g.grant.role,
                    g.id,
                    g.grant.reason,
                    when(until)
                ),
                _ => format!(
                    "role {} (grant #{}: {}) ended on {}; the access it gave is removed",
                    g.grant.role,
                    g.id,
                    g.grant.reason,
                    when(until)
                ),
            };
            let key = format!("grant-{}-{}", g.id, until.timestamp());
            notices.push(engine.identity_notice(kind, holder, &key, detail).await);
        }
    }
    for i in people {
        let Some(at) = engine.policy.end_reminder(i, today) else {
            continue;
        };
        let Some(end) = i.record.end_date else {
            continue;
        };
        if at > now {
            continue;
        }
        let detail = format!("the end date {end} comes: every account and access ends then");
        notices.push(
            engine
                .identity_notice(NoticeKind::ExpiryUpcoming, i, &format!("end-{end}"), detail)
                .await,
        );
    }
    engine.notify(notices).await;
    Ok(())
}
