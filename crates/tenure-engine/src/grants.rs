//! Grants made by people: access outside birthright rules (an approved
//! request), each with a reason and a validity window. The holder's next
//! plan gives the access when the window opens and takes it away when it
//! closes or the grant is revoked; the holder and their manager are reminded
//! before it ends (see [`crate::import`]'s reminders).

use crate::engine::Engine;
use crate::error::EngineError;
use chrono::{DateTime, Utc};
use tenure_core::policy::Grant;
use tenure_core::{IdentityId, LifecycleStatus, RoleId};
use tenure_store::StoredGrant;

/// A grant to make.
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// Who receives it.
    pub identity: IdentityId,
    /// The role (as configured).
    pub role: String,
    /// Why (a request or ticket reference).
    pub reason: String,
    /// From when (none: now).
    pub valid_from: Option<DateTime<Utc>>,
    /// Until when (none: no end, unless the holder must have one).
    pub valid_until: Option<DateTime<Utc>>,
}

/// Makes a grant by `actor`: checked against the policy and the person,
/// stored with an audit record (`grant.added`), and the holder stamped so
/// that the next incremental plan gives the access. Returns the stored grant.
pub async fn add_grant(
    engine: &Engine,
    actor: &str,
    new: NewGrant,
) -> Result<StoredGrant, EngineError> {
    let now = engine.clock.now();
    if new.reason.trim().is_empty() {
        return Err(EngineError::Invalid(
            "a grant needs a reason (--reason), such as the request that approved it".to_owned(),
        ));
    }
    let known: Vec<&str> = engine
        .policy
        .config()
        .roles
        .iter()
        .map(|r| r.item.id.as_str())
        .collect();
    if !known.contains(&new.role.as_str()) {
        return Err(EngineError::Invalid(format!(
            "there is no role {:?} in the configuration (roles: {})",
            new.role,
            known.join(", ")
        )));
    }
    let role = RoleId::new(new.role.clone()).map_err(|e| EngineError::Invalid(e.to_string()))?;
    let identity = engine
        .store
        .identity(&new.identity)
        .await?
        .ok_or_else(|| EngineError::UnknownIdentity(new.identity.clone()))?;
    let status = identity.status_on(now.date_naive());
    if identity.status == LifecycleStatus::Deleted || status == LifecycleStatus::Leaver {
        return Err(EngineError::Invalid(format!(
            "{} is a leaver: a grant would give them nothing",
            new.identity
        )));
    }
    if let (Some(f), Some(u)) = (new.valid_from, new.valid_until)
        && u <= f
    {
        return Err(EngineError::Invalid(format!(
            "the grant would end ({u}) before it starts ({f})"
        )));
    }
    if let Some(u) = new.valid_until
        && u <= now
    {
        return Err(EngineError::Invalid(format!(
            "the grant would end ({u}) before now ({now})"
        )));
    }
    if new.valid_until.is_none()
        && engine
            .policy
            .requires_end_date(&identity, now.date_naive())
            .unwrap_or(true)
    {
        return Err(EngineError::Invalid(format!(
            "{} must have an end date ([expiry] require_end_date), so their grants must end too: give --until",
            new.identity
        )));
    }
    let grant = Grant {
        identity: new.identity.clone(),
        role,
        reason: new.reason.clone(),
        valid_from: new.valid_from,
        valid_until: new.valid_until,
    };
    let mut event = engine.event(
        "grant.added",
        format!("identity:{}", new.identity),
        new.reason.clone(),
        serde_json::json!({
            "role": grant.role,
            "valid_from": grant.valid_from,
            "valid_until": grant.valid_until,
        }),
    );
    actor.clone_into(&mut event.actor);
    let ids = engine
        .store
        .add_grants(std::slice::from_ref(&grant), actor, now, vec![event])
        .await?;
    Ok(StoredGrant {
        id: ids.first().copied().unwrap_or_default(),
        grant,
        created_at: now,
        created_by: actor.to_owned(),
        revoked_at: None,
        revoked_by: None,
    })
}

/// Revokes grant `id` by `actor` (audited as `grant.revoked` with the
/// reason): the next plan for the holder takes the access away.
pub async fn revoke_grant(
    engine: &Engine,
    actor: &str,
    id: i64,
    reason: &str,
) -> Result<StoredGrant, EngineError> {
    if reason.trim().is_empty() {
        return Err(EngineError::Invalid(
            "revoking a grant needs a reason (--reason)".to_owned(),
        ));
    }
    let existing = engine
        .store
        .grant(id)
        .await?
        .ok_or_else(|| EngineError::Invalid(format!("there is no grant {id}")))?;
    let mut event = engine.event(
        "grant.revoked",
        format!("identity:{}", existing.grant.identity),
        reason.to_owned(),
        serde_json::json!({ "grant": id, "role": existing.grant.role }),
    );
    actor.clone_into(&mut event.actor);
    Ok(engine
        .store
        .revoke_grant(id, actor, engine.clock.now(), vec![event])
        .await?)
}
