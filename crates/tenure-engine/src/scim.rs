//! The SCIM source: a SCIM 2.0 push is an import of the people it touches.
//!
//! [`ScimService`] implements [`tenure_scim::Backend`] over the store and the
//! lifecycle. Every write maps the SCIM user (through the source's
//! `columns` and `attributes`, which hold SCIM paths) to an identity record,
//! classifies it against the one stored identity exactly as an HR import
//! does ([`tenure_core::events::classify`], missing = ignore), and stores the
//! SCIM resource, the identities and the audit records (actor
//! `token:<name>`) in one transaction. Group changes update the `groups` of
//! the members they add or remove (movers, like any attribute change).
//!
//! A deactivation (`active` false, or DELETE) makes the person a leaver
//! (end date today, unless earlier) or suspends them, as the source's
//! `deactivate` says. The mass-change guard counts deactivations over the
//! source's `deactivation_window_minutes`: beyond the `[guard]` limit a
//! deactivation, or a bulk request holding too many, is refused with 403 and
//! a `guard.refused` audit record, and nothing changes.
//!
//! What this module does not do: parse HTTP, filters or PATCH (that is
//! `tenure-scim`), or write SQL (that is `tenure-store`). Only the identities
//! concerned are loaded, never all of them.

use crate::engine::Engine;
use chrono::NaiveDate;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tenure_core::audit::AuditEvent;
use tenure_core::config::{DeactivatePolicy, MissingPolicy, SourceConfig, SourceFormat};
use tenure_core::events::{ChangeKind, IdentityChange, classify};
use tenure_core::guard::verdict;
use tenure_core::{EmploymentType, Identity, IdentityId, IdentityRecord, LifecycleStatus};
use tenure_scim::filter;
use tenure_scim::patch::{self, PatchOp};
use tenure_scim::resource::{self, as_bool};
use tenure_scim::schema::{self, ResourceKind};
use tenure_scim::{Backend, ListPage, ListQuery, Principal, ScimError, Stored};
use tenure_store::{GroupWrite, ScimQueryError, ScimRecord, StoreError, UserWrite};

/// The SCIM service provider over an engine.
pub struct ScimService {
    engine: Arc<Engine>,
    source: SourceConfig,
    /// Writes to one resource in this process take turns (a stripe per
    /// hash of kind and id): read, change and save with nobody in between,
    /// so concurrent PATCHes of one user or group (clients adding members
    /// in parallel) all succeed. Other processes on the same store still
    /// meet at the stored version, and a write without If-Match retries.
    writes: Box<[tokio::sync::Mutex<()>]>,
}

/// How many stripes [`ScimService::writes`] has.
const WRITE_STRIPES: usize = 64;

/// Checks a SCIM source's paths; every problem as a message.
pub fn check_source(src: &SourceConfig) -> Vec<String> {
    let mut out = Vec::new();
    let c = &src.columns;
    let mut paths: Vec<(String, &str)> = vec![("columns.id".into(), c.id.as_str())];
    for (k, v) in [
        ("employment_type", &c.employment_type),
        ("manager", &c.manager),
        ("start_date", &c.start_date),
        ("end_date", &c.end_date),
    ] {
        if let Some(v) = v {
            paths.push((format!("columns.{k}"), v.as_str()));
        }
    }
    for (k, v) in &src.attributes {
        paths.push((format!("attributes.{k}"), v.as_str()));
    }
    for (key, p) in paths {
        if let Err(e) = resolve_path(p) {
            out.push(format!("source {}: {key}: {}", src.id, e.detail));
        }
    }
    out
}

fn resolve_path(p: &str) -> Result<(filter::PatchPath, schema::Resolved), ScimError> {
    let parsed = filter::parse_path(p)?;
    let r = schema::resolve(ResourceKind::User, &parsed.attr.to_string())
        .ok_or_else(|| ScimError::path(format!("{p:?} is not an attribute of a SCIM User")))?;
    if r.leaf().kind == schema::AttrType::Complex && parsed.filter.is_none() && !r.attr.multi_valued
    {
        return Err(ScimError::path(format!(
            "{p:?} is complex: name one of its sub-attributes"
        )));
    }
    Ok((parsed, r))
}

/// The text at a SCIM path of a user resource ("" when absent).
pub fn value_at(resource: &Value, path: &str) -> Result<String, ScimError> {
    let (parsed, r) = resolve_path(path)?;
    let container = match r.extension() {
        Some(ext) => resource.get(ext),
        None => Some(resource),
    };
    let Some(v) = container.and_then(|c| c.get(r.attr.name)) else {
        return Ok(String::new());
    };
    let item = if let Value::Array(items) = v {
        let exact = |p: &filter::AttrPath| {
            resource::case_exact(
                ResourceKind::User,
                &filter::AttrPath {
                    uri: parsed.attr.uri.clone(),
                    name: parsed.attr.name.clone(),
                    sub: Some(p.name.clone()),
                },
            )
        };
        let found = match &parsed.filter {
            Some(f) => items.iter().find(|i| filter::matches(f, i, &exact)),
            None => items
                .iter()
                .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
                .or_else(|| items.first()),
        };
        match found {
            Some(i) => i,
            None => return Ok(String::new()),
        }
    } else {
        v
    };
    let sub = parsed
        .sub
        .as_deref()
        .or(r.sub.map(|s| s.name))
        .or(if item.is_object() {
            Some("value")
        } else {
            None
        });
    let leaf = match sub {
        Some(s) => item.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(s))
                .map(|(_, v)| v)
        }),
        None => Some(item),
    };
    Ok(match leaf {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    })
}

fn store_err(e: StoreError) -> ScimError {
    match &e {
        StoreError::Stale { .. } => {
            ScimError::precondition("the resource was changed since the version given in If-Match")
        }
        StoreError::NotFound { .. } => ScimError::not_found("the resource"),
        _ => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "SCIM request failed in the store");
            ScimError::internal()
        }
    }
}

fn conflict_or(e: StoreError, detail: impl FnOnce() -> String) -> ScimError {
    if e.is_conflict() {
        ScimError::uniqueness(detail())
    } else {
        store_err(e)
    }
}

fn date_of(value: &str, what: &str) -> Result<Option<NaiveDate>, ScimError> {
    if value.is_empty() {
        return Ok(None);
    }
    let d = value.get(..10).unwrap_or(value);
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| {
            ScimError::value(format!(
                "{what} must be a date (YYYY-MM-DD…), not {value:?}"
            ))
        })
}

fn stored(r: ScimRecord) -> Stored {
    Stored {
        id: r.id,
        version: r.version,
        created: r.created,
        modified: r.modified,
        resource: r.resource,
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// What a write does to one identity.
struct Outcome {
    upserts: Vec<Identity>,
    changes: Vec<IdentityChange>,
    /// Grace periods the change earns (a mover's).
    graces: Vec<tenure_core::policy::Grant>,
}

impl ScimService {
    /// The service for the configuration's SCIM source (`format = "scim"`).
    pub fn new(engine: Arc<Engine>) -> Result<Self, crate::EngineError> {
        let source = engine
            .policy
            .config()
            .sources
            .iter()
            .map(|s| &s.item)
            .find(|s| s.format == SourceFormat::Scim)
            .cloned()
            .ok_or_else(|| {
                crate::EngineError::Invalid(
                    "the configuration has no SCIM source: add a [[source]] with format = \"scim\" \
                     (see docs/configuration.md)"
                        .into(),
                )
            })?;
        Ok(Self {
            engine,
            source,
            writes: (0..WRITE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    /// The turn of writes to this resource in this process.
    async fn write_turn(&self, kind: ResourceKind, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (kind, id).hash(&mut h);
        let stripe = usize::try_from(h.finish() % WRITE_STRIPES as u64).unwrap_or(0);
        self.writes[stripe].lock().await
    }

    fn event(
        &self,
        who: &Principal,
        action: &str,
        subject: String,
        reason: String,
        detail: Value,
    ) -> AuditEvent {
        AuditEvent {
            at: self.engine.clock.now(),
            actor: format!("token:{}", who.name),
            action: action.to_owned(),
            subject,
            reason,
            detail: detail.to_string(),
        }
    }

    fn today(&self) -> NaiveDate {
        self.engine.clock.now().date_naive()
    }

    /// The identity record a user resource describes.
    async fn record_of(
        &self,
        identity_id: &str,
        user_id: Option<&str>,
        res: &Value,
    ) -> Result<IdentityRecord, ScimError> {
        let src = &self.source;
        let c = &src.columns;
        let get = |p: &Option<String>| -> Result<String, ScimError> {
            match p {
                Some(p) => value_at(res, p),
                None => Ok(String::new()),
            }
        };
        let et_raw = get(&c.employment_type)?;
        let et_raw = if et_raw.is_empty() {
            src.default_employment_type.clone()
        } else {
            et_raw
        };
        let mapped = src
            .employment_types
            .get(&et_raw)
            .cloned()
            .unwrap_or(et_raw.clone());
        let employment_type = EmploymentType::parse(&mapped).ok_or_else(|| {
            ScimError::value(format!(
                "{}: {et_raw:?} is not a known employment type (employee, contractor, vendor, temp, service_owner, or a value the source maps)",
                c.employment_type.as_deref().unwrap_or("employmentType")
            ))
        })?;
        let manager_raw = get(&c.manager)?;
        let manager = if manager_raw.is_empty() {
            None
        } else {
            // A manager named by SCIM id (manager.value) is the identity that user feeds.
            let ids = self
                .engine
                .store
                .scim_identities_of(std::slice::from_ref(&manager_raw))
                .await
                .map_err(store_err)?;
            let m = ids.get(&manager_raw).cloned().unwrap_or(manager_raw);
            Some(
                IdentityId::new(m.clone())
                    .map_err(|e| ScimError::value(format!("manager {m:?}: {e}")))?,
            )
        };
        let mut attributes = BTreeMap::new();
        for (name, path) in &src.attributes {
            attributes.insert(name.clone(), value_at(res, path)?);
        }
        for r in &src.required {
            if attributes.get(r).is_none_or(String::is_empty) {
                return Err(ScimError::value(format!(
                    "{} is required by source {} (attribute {r})",
                    src.attributes.get(r).map_or("?", String::as_str),
                    src.id
                )));
            }
        }
        let groups = match user_id {
            Some(u) => self
                .engine
                .store
                .scim_group_names_of(u)
                .await
                .map_err(store_err)?,
            None => BTreeSet::new(),
        };
        let record = IdentityRecord {
            id: IdentityId::new(identity_id.to_owned())
                .map_err(|e| ScimError::value(format!("identity id {identity_id:?}: {e}")))?,
            employment_type,
            manager,
            start_date: date_of(
                &get(&c.start_date)?,
                c.start_date.as_deref().unwrap_or("startDate"),
            )?,
            end_date: date_of(
                &get(&c.end_date)?,
                c.end_date.as_deref().unwrap_or("endDate"),
            )?,
            attributes,
            groups,
        };
        if let Some(problem) = self
            .engine
            .policy
            .end_date_problem(&record, &src.id, self.today())
        {
            return Err(ScimError::value(format!(
                "{problem}: send {}",
                c.end_date.as_deref().unwrap_or("an end date")
            )));
        }
        Ok(record)
    }

    /// Classifies a new record for one identity, applying the deactivation
    /// rule when the user is inactive.
    async fn outcome(
        &self,
        mut record: IdentityRecord,
        active: bool,
    ) -> Result<Outcome, ScimError> {
        let today = self.today();
        let deactivate = self.source.deactivate;
        if !active && deactivate == DeactivatePolicy::Leaver {
            record.end_date = Some(record.end_date.map_or(today, |d| d.min(today)));
        }
        let existing = self
            .engine
            .store
            .identity(&record.id)
            .await
            .map_err(store_err)?;
        let stored: Vec<Identity> = existing.into_iter().collect();
        let mut c = classify(
            &self.source.id,
            &stored,
            vec![record],
            MissingPolicy::Ignore,
            today,
        );
        if let Some((id, owner)) = c.conflicts.first() {
            return Err(ScimError::uniqueness(format!(
                "identity {id} comes from source {owner}, not from this SCIM source"
            )));
        }
        let graces = crate::import::graces(&self.engine, &stored, &c, self.engine.clock.now());
        if deactivate == DeactivatePolicy::Suspend {
            let was = stored.first().map(|i| i.suspended);
            if was != Some(!active) {
                let ident = match c.upserts.pop() {
                    Some(i) => i,
                    None => match stored.first() {
                        Some(i) => i.clone(),
                        None => {
                            return Ok(Outcome {
                                upserts: c.upserts,
                                changes: c.changes,
                                graces,
                            });
                        }
                    },
                };
                let status = if active {
                    ident.record.status_on(today)
                } else {
                    LifecycleStatus::Suspended
                };
                let before = stored.first().map(|i| i.status);
                c.changes.retain(|x| x.kind != ChangeKind::Unchanged);
                if !stored.is_empty() {
                    c.changes.push(IdentityChange {
                        id: ident.id().clone(),
                        kind: ChangeKind::Updated,
                        before,
                        after: status,
                        fields: vec![],
                        note: Some(if active {
                            "reactivated by SCIM".into()
                        } else {
                            "suspended by SCIM (deactivated)".into()
                        }),
                    });
                }
                c.upserts.push(Identity {
                    suspended: !active,
                    status,
                    ..ident
                });
            }
        }
        Ok(Outcome {
            upserts: c.upserts,
            changes: c.changes,
            graces,
        })
    }

    fn change_events(&self, who: &Principal, scim_id: &str, o: &Outcome) -> Vec<AuditEvent> {
        o.changes
            .iter()
            .filter(|c| c.kind != ChangeKind::Unchanged)
            .map(|c| {
                let fields: Vec<&str> = c.fields.iter().map(|f| f.field.as_str()).collect();
                let reason = match (&c.note, c.kind) {
                    (Some(n), _) => n.clone(),
                    (None, ChangeKind::Joiner) => format!("created by SCIM ({})", self.source.id),
                    (None, _) if fields.is_empty() => format!("status {:?} -> {}", c.before, c.after),
                    (None, _) => format!("changed: {}", fields.join(", ")),
                };
                self.event(
                    who,
                    &format!("import.{}", c.kind),
                    format!("identity:{}", c.id),
                    reason,
                    json!({"scim": scim_id, "source": self.source.id, "before": c.before, "after": c.after, "fields": c.fields}),
                )
            })
            .collect()
    }

    /// The deactivation guard: refuses when `more` deactivations now would
    /// exceed the limit within the window.
    async fn guard(&self, who: &Principal, more: u64, what: &str) -> Result<(), ScimError> {
        let now = self.engine.clock.now();
        let minutes = i64::try_from(self.source.deactivation_window_minutes).unwrap_or(60);
        let since = now - chrono::Duration::minutes(minutes);
        let (recent, total) = self
            .engine
            .store
            .scim_deactivations_since(since)
            .await
            .map_err(store_err)?;
        let v = verdict(
            &self.engine.policy.config().guard,
            &format!("SCIM users deactivated within {minutes} minutes"),
            recent + more,
            total,
        );
        if !v.blocked {
            return Ok(());
        }
        let allowance = self
            .engine
            .store
            .scim_deactivation_allowance(now)
            .await
            .map_err(store_err)?;
        if v.count <= v.limit.saturating_add(allowance) {
            return Ok(());
        }
        let ev = self.event(
            who,
            "guard.refused",
            format!("source:{}", self.source.id),
            format!("{what} refused: {v}"),
            json!({"verdict": v, "request": what}),
        );
        self.engine
            .store
            .append_audit(vec![ev])
            .await
            .map_err(store_err)?;
        Err(ScimError::new(
            403,
            format!(
                "refused by the mass-change guard: {v}; nothing was changed. An operator can allow more \
                 with `tenure scim allow-deactivations --count N`, or wait for the \
                 {minutes}-minute window to pass"
            ),
        ))
    }

    async fn save_user(
        &self,
        who: &Principal,
        id: &str,
        identity_id: &str,
        resource: Value,
        current: Option<&ScimRecord>,
        action: &str,
    ) -> Result<Stored, ScimError> {
        let active = resource
            .get("active")
            .map(|v| as_bool(v) != Some(false))
            .unwrap_or(true);
        let was_active = current
            .map(|c| {
                c.resource
                    .get("active")
                    .map(|v| as_bool(v) != Some(false))
                    .unwrap_or(true)
            })
            .unwrap_or(true);
        if was_active && !active {
            self.guard(who, 1, &format!("deactivating SCIM user {id}"))
                .await?;
        }
        let record = self
            .record_of(identity_id, current.map(|c| c.id.as_str()), &resource)
            .await?;
        let o = self.outcome(record, active).await?;
        let mut events = vec![self.event(
            who,
            action,
            format!("scim:User/{id}"),
            format!("identity {identity_id}"),
            json!({"userName": resource.get("userName"), "active": active}),
        )];
        events.extend(self.change_events(who, id, &o));
        events.extend(self.grace_events(who, &o.graces));
        let actor = format!("token:{}", who.name);
        let user_name = resource
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        self.engine
            .store
            .scim_save_user(
                &UserWrite {
                    id,
                    identity_id,
                    resource: &resource,
                    expected_version: current.map(|c| c.version),
                    now: self.engine.clock.now(),
                    grants: &o.graces,
                    actor: &actor,
                },
                &o.upserts,
                events,
            )
            .await
            .map_err(|e| {
                conflict_or(e, || {
                    format!("userName {user_name:?} (or identity {identity_id}) is already taken by another SCIM user")
                })
            })?;
        self.get_required(ResourceKind::User, id).await
    }

    async fn get_required(&self, kind: ResourceKind, id: &str) -> Result<Stored, ScimError> {
        self.engine
            .store
            .scim_get(kind, id)
            .await
            .map_err(store_err)?
            .map(stored)
            .ok_or_else(|| ScimError::not_found(format!("{} {id:?}", kind.name())))
    }

    async fn current(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<ScimRecord, ScimError> {
        let cur = self
            .engine
            .store
            .scim_get(kind, id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| ScimError::not_found(format!("{} {id:?}", kind.name())))?;
        if let Some(v) = if_match
            && v != cur.version
        {
            return Err(ScimError::precondition(format!(
                "{} {id:?} is at version W/\"{}\", not W/\"{v}\" (If-Match)",
                kind.name(),
                cur.version
            )));
        }
        Ok(cur)
    }

    /// The members a group resource names, checked to exist.
    async fn members_of(&self, resource: &Value) -> Result<BTreeSet<(String, String)>, ScimError> {
        let mut want: Vec<(String, Option<String>)> = Vec::new();
        if let Some(Value::Array(ms)) = resource.get("members") {
            for m in ms {
                let Some(v) = m.get("value").and_then(Value::as_str) else {
                    return Err(ScimError::value(
                        "every member needs a value (the member's id)",
                    ));
                };
                want.push((
                    v.to_owned(),
                    m.get("type").and_then(Value::as_str).map(str::to_owned),
                ));
            }
        }
        let ids: Vec<String> = want.iter().map(|(v, _)| v.clone()).collect();
        let users = self
            .engine
            .store
            .scim_identities_of(&ids)
            .await
            .map_err(store_err)?;
        let groups = self
            .engine
            .store
            .scim_existing_groups(&ids)
            .await
            .map_err(store_err)?;
        let mut out = BTreeSet::new();
        for (v, t) in want {
            let kind = if users.contains_key(&v) {
                "User"
            } else if groups.contains(&v) {
                "Group"
            } else {
                return Err(ScimError::value(format!(
                    "member {v:?} is neither a user nor a group"
                )));
            };
            if let Some(t) = t
                && !t.eq_ignore_ascii_case(kind)
            {
                return Err(ScimError::value(format!(
                    "member {v:?} is a {kind}, not a {t}"
                )));
            }
            out.insert((v, kind.to_owned()));
        }
        Ok(out)
    }

    /// Saves a group and the `groups` of the users whose membership or
    /// group name changes.
    async fn save_group(
        &self,
        who: &Principal,
        id: &str,
        mut resource: Value,
        current: Option<&ScimRecord>,
        action: &str,
    ) -> Result<Stored, ScimError> {
        let members = self.members_of(&resource).await?;
        if let Value::Object(o) = &mut resource {
            o.remove("members");
        }
        let name = resource
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let before: BTreeSet<(String, String)> = match current {
            Some(c) => self
                .engine
                .store
                .scim_members(&c.id)
                .await
                .map_err(store_err)?,
            None => BTreeSet::new(),
        };
        let old_name = current
            .and_then(|c| c.resource.get("displayName").and_then(Value::as_str))
            .map(str::to_owned);
        let renamed = old_name.as_ref().is_some_and(|o| *o != name);
        let mut affected: BTreeSet<String> = before
            .symmetric_difference(&members)
            .filter(|(_, t)| t == "User")
            .map(|(m, _)| m.clone())
            .collect();
        if renamed {
            affected.extend(
                members
                    .iter()
                    .filter(|(_, t)| t == "User")
                    .map(|(m, _)| m.clone()),
            );
        }
        let (upserts, mut events, graces) = self
            .regroup(who, &affected, old_name.as_deref(), Some((&name, &members)))
            .await?;
        events.insert(
            0,
            self.event(
                who,
                action,
                format!("scim:Group/{id}"),
                format!("group {name:?}, {} members", members.len()),
                json!({"displayName": name, "added": members.difference(&before).count(), "removed": before.difference(&members).count()}),
            ),
        );
        self.engine
            .store
            .scim_save_group(
                &GroupWrite {
                    id,
                    resource: &resource,
                    members: &members,
                    expected_version: current.map(|c| c.version),
                    now: self.engine.clock.now(),
                },
                &upserts,
                events,
            )
            .await
            .map_err(|e| {
                conflict_or(e, || {
                    format!("group {name:?} conflicts with a stored group")
                })
            })?;
        self.save_graces(who, &graces).await?;
        self.get_required(ResourceKind::Group, id).await
    }

    /// New `groups` for the identities of `users`: `old` removed, and `new`
    /// added for those among its members.
    async fn regroup(
        &self,
        who: &Principal,
        users: &BTreeSet<String>,
        old: Option<&str>,
        new: Option<(&str, &BTreeSet<(String, String)>)>,
    ) -> Result<
        (
            Vec<Identity>,
            Vec<AuditEvent>,
            Vec<tenure_core::policy::Grant>,
        ),
        ScimError,
    > {
        let ids: Vec<String> = users.iter().cloned().collect();
        let identities = self
            .engine
            .store
            .scim_identities_of(&ids)
            .await
            .map_err(store_err)?;
        let today = self.today();
        let mut upserts = Vec::new();
        let mut events = Vec::new();
        let mut graces = Vec::new();
        for (user, identity) in identities {
            let Some(ident) = self
                .engine
                .store
                .identity(
                    &IdentityId::new(identity.clone())
                        .map_err(|e| ScimError::value(e.to_string()))?,
                )
                .await
                .map_err(store_err)?
            else {
                continue;
            };
            let mut record = ident.record.clone();
            let mut groups = self
                .engine
                .store
                .scim_group_names_of(&user)
                .await
                .map_err(store_err)?;
            if let Some(o) = old {
                groups.remove(o);
            }
            if let Some((name, members)) = new
                && members.iter().any(|(m, _)| *m == user)
            {
                groups.insert(name.to_owned());
            }
            record.groups = groups;
            let c = classify(
                &self.source.id,
                std::slice::from_ref(&ident),
                vec![record],
                MissingPolicy::Ignore,
                today,
            );
            graces.extend(crate::import::graces(
                &self.engine,
                std::slice::from_ref(&ident),
                &c,
                self.engine.clock.now(),
            ));
            let o = Outcome {
                upserts: c.upserts,
                changes: c.changes,
                graces: Vec::new(),
            };
            events.extend(self.change_events(who, &user, &o));
            upserts.extend(o.upserts);
        }
        Ok((upserts, events, graces))
    }

    async fn delete_user(&self, who: &Principal, cur: &ScimRecord) -> Result<(), ScimError> {
        let was_active = cur
            .resource
            .get("active")
            .map(|v| as_bool(v) != Some(false))
            .unwrap_or(true);
        if was_active {
            self.guard(who, 1, &format!("deleting SCIM user {}", cur.id))
                .await?;
        }
        let identity_id = cur.identity_id.clone().unwrap_or_default();
        let mut record = self
            .record_of(&identity_id, Some(&cur.id), &cur.resource)
            .await?;
        record.groups = BTreeSet::new();
        let o = self.outcome(record, false).await?;
        let mut events = vec![self.event(
            who,
            "scim.user.deleted",
            format!("scim:User/{}", cur.id),
            format!("identity {identity_id}"),
            json!({"userName": cur.resource.get("userName")}),
        )];
        events.extend(self.change_events(who, &cur.id, &o));
        self.engine
            .store
            .scim_delete(ResourceKind::User, &cur.id, cur.version, &o.upserts, events)
            .await
            .map_err(store_err)
    }

    async fn delete_group(&self, who: &Principal, cur: &ScimRecord) -> Result<(), ScimError> {
        let members = self
            .engine
            .store
            .scim_members(&cur.id)
            .await
            .map_err(store_err)?;
        let users: BTreeSet<String> = members
            .iter()
            .filter(|(_, t)| t == "User")
            .map(|(m, _)| m.clone())
            .collect();
        let name = cur
            .resource
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (upserts, mut events, graces) = self.regroup(who, &users, Some(name), None).await?;
        events.insert(
            0,
            self.event(
                who,
                "scim.group.deleted",
                format!("scim:Group/{}", cur.id),
                format!("group {name:?}"),
                json!({}),
            ),
        );
        self.engine
            .store
            .scim_delete(ResourceKind::Group, &cur.id, cur.version, &upserts, events)
            .await
            .map_err(store_err)?;
        self.save_graces(who, &graces).await
    }

    /// The audit records of grace periods given, with the token as the actor.
    fn grace_events(
        &self,
        who: &Principal,
        graces: &[tenure_core::policy::Grant],
    ) -> Vec<AuditEvent> {
        graces
            .iter()
            .map(|g| {
                self.event(
                    who,
                    "grant.grace",
                    format!("identity:{}", g.identity),
                    g.reason.clone(),
                    json!({ "role": g.role, "valid_until": g.valid_until }),
                )
            })
            .collect()
    }

    /// Stores the grace periods a group change earned its members. After
    /// the group is saved, in a transaction of its own: a grace period is a
    /// courtesy, and losing one to a crash only takes old access away sooner.
    async fn save_graces(
        &self,
        who: &Principal,
        graces: &[tenure_core::policy::Grant],
    ) -> Result<(), ScimError> {
        if graces.is_empty() {
            return Ok(());
        }
        let events = self.grace_events(who, graces);
        self.engine
            .store
            .add_grants(
                graces,
                &format!("token:{}", who.name),
                self.engine.clock.now(),
                events,
            )
            .await
            .map_err(store_err)?;
        Ok(())
    }

    fn identity_id_for(&self, resource: &Value) -> Result<String, ScimError> {
        let path = &self.source.columns.id;
        let v = value_at(resource, path)?;
        if v.trim().is_empty() {
            return Err(ScimError::value(format!(
                "source {} takes the identity id from {path}, which this user does not have",
                self.source.id
            )));
        }
        Ok(v)
    }
}

#[async_trait::async_trait]
impl Backend for ScimService {
    async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, ScimError> {
        let t = self
            .engine
            .store
            .authenticate_token(secret, self.engine.clock.now())
            .await
            .map_err(store_err)?;
        Ok(t.map(|t| Principal {
            name: t.name,
            scopes: t.scopes,
        }))
    }

    async fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<Stored>, ScimError> {
        Ok(self
            .engine
            .store
            .scim_get(kind, id)
            .await
            .map_err(store_err)?
            .map(stored))
    }

    async fn list(&self, kind: ResourceKind, query: &ListQuery) -> Result<ListPage, ScimError> {
        let (total, items, next_cursor) =
            self.engine
                .store
                .scim_list(kind, query)
                .await
                .map_err(|e| match e {
                    ScimQueryError::Invalid(e) => e,
                    ScimQueryError::Store(e) => store_err(e),
                })?;
        Ok(ListPage {
            total,
            items: items.into_iter().map(stored).collect(),
            next_cursor,
        })
    }

    async fn create(
        &self,
        who: &Principal,
        kind: ResourceKind,
        resource: Value,
    ) -> Result<Stored, ScimError> {
        let id = new_id();
        match kind {
            ResourceKind::User => {
                let identity_id = self.identity_id_for(&resource)?;
                self.save_user(who, &id, &identity_id, resource, None, "scim.user.created")
                    .await
            }
            ResourceKind::Group => {
                self.save_group(who, &id, resource, None, "scim.group.created")
                    .await
            }
        }
    }

    async fn replace(
        &self,
        who: &Principal,
        kind: ResourceKind,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<Stored, ScimError> {
        let _turn = self.write_turn(kind, id).await;
        // Without If-Match a concurrent write (from another process) is not
        // the client's problem: read again and retry (a stale version
        // surfaces as 412).
        let mut tries = 0;
        loop {
            let attempt = async {
                let cur = self.current(kind, id, if_match).await?;
                match kind {
                    ResourceKind::User => {
                        let identity_id = cur.identity_id.clone().unwrap_or_default();
                        self.save_user(
                            who,
                            id,
                            &identity_id,
                            resource.clone(),
                            Some(&cur),
                            "scim.user.replaced",
                        )
                        .await
                    }
                    ResourceKind::Group => {
                        self.save_group(
                            who,
                            id,
                            resource.clone(),
                            Some(&cur),
                            "scim.group.replaced",
                        )
                        .await
                    }
                }
            }
            .await;
            match attempt {
                Err(e) if e.status == 412 && if_match.is_none() && tries < 20 => tries += 1,
                other => return other,
            }
        }
    }

    async fn patch(
        &self,
        who: &Principal,
        kind: ResourceKind,
        id: &str,
        ops: &[PatchOp],
        if_match: Option<i64>,
    ) -> Result<Stored, ScimError> {
        let _turn = self.write_turn(kind, id).await;
        // Without If-Match a concurrent write (from another process) is not
        // the client's problem: read again and retry (a stale version
        // surfaces as 412).
        let mut tries = 0;
        loop {
            let attempt = async {
                let cur = self.current(kind, id, if_match).await?;
                let patched = patch::apply(kind, &cur.resource, ops)?;
                let resource = resource::normalize(kind, patched)?;
                match kind {
                    ResourceKind::User => {
                        let identity_id = cur.identity_id.clone().unwrap_or_default();
                        self.save_user(
                            who,
                            id,
                            &identity_id,
                            resource,
                            Some(&cur),
                            "scim.user.patched",
                        )
                        .await
                    }
                    ResourceKind::Group => {
                        self.save_group(who, id, resource, Some(&cur), "scim.group.patched")
                            .await
                    }
                }
            }
            .await;
            match attempt {
                Err(e) if e.status == 412 && if_match.is_none() && tries < 20 => tries += 1,
                other => return other,
            }
        }
    }

    async fn delete(
        &self,
        who: &Principal,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<(), ScimError> {
        let _turn = self.write_turn(kind, id).await;
        let cur = self.current(kind, id, if_match).await?;
        match kind {
            ResourceKind::User => self.delete_user(who, &cur).await,
            ResourceKind::Group => self.delete_group(who, &cur).await,
        }
    }

    async fn check_bulk(&self, who: &Principal, deactivations: u64) -> Result<(), ScimError> {
        self.guard(
            who,
            deactivations,
            &format!("a bulk request deactivating {deactivations} users"),
        )
        .await
    }
}

/// The operator's override of the SCIM deactivation guard: allows `count`
/// more deactivations than the limit for `minutes`, recorded in the audit
/// log (`guard.override`, by the engine's actor).
pub async fn allow_deactivations(
    engine: &Engine,
    count: u64,
    minutes: u64,
) -> Result<chrono::DateTime<chrono::Utc>, crate::EngineError> {
    if count == 0 || minutes == 0 {
        return Err(crate::EngineError::Invalid(
            "--count and --minutes must be at least 1".into(),
        ));
    }
    let source = engine
        .policy
        .config()
        .sources
        .iter()
        .map(|s| &s.item)
        .find(|s| s.format == SourceFormat::Scim)
        .ok_or_else(|| {
            crate::EngineError::Invalid("the configuration has no SCIM source".into())
        })?;
    let now = engine.clock.now();
    let until =
        now + chrono::Duration::minutes(i64::try_from(minutes).unwrap_or(i64::MAX / 120_000));
    let ev = engine.event(
        "guard.override",
        format!("source:{}", source.id),
        format!(
            "{} allows {count} more SCIM deactivations than the mass-change guard until {until}",
            engine.actor
        ),
        json!({"allowed": count, "until": until}),
    );
    engine
        .store
        .scim_allow_deactivations(count, until, &engine.actor, now, vec![ev])
        .await?;
    Ok(until)
}
