//! Grants: access held outside birthright rules (an approved request, a
//! grace period after a move), each with its validity window.
//!
//! Adding or revoking a grant stamps its holder as changed, in the same
//! transaction, so that the next incremental plan looks at them; the moments
//! a grant starts and ends are part of the holder's due time (see
//! [`tenure_core::policy::Policy::next_due`]), so that it is acted on when
//! its window opens and closes, without a full plan.

use crate::StoreError;
use crate::sql::{from_micros, micros};
use crate::store::Store;
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use std::collections::BTreeSet;
use tenure_core::audit::AuditEvent;
use tenure_core::policy::Grant;
use tenure_core::{IdentityId, RoleId};

/// Values per `IN (…)` list.
const IN_CHUNK: usize = 500;

const SELECT: &str = "SELECT id, identity, role, reason, valid_from, valid_until, created_at, \
                      created_by, revoked_at, revoked_by FROM grants";

/// A grant as stored, with who made it and whether it was revoked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredGrant {
    /// Its number.
    pub id: i64,
    /// The grant.
    #[serde(flatten)]
    pub grant: Grant,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
}

impl StoredGrant {
    /// Whether it still counts at `now`: not revoked and not ended (it may
    /// not have started yet).
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.grant.valid_until.is_none_or(|u| now < u)
    }
}

impl Store {
    /// Adds grants made by `actor` at `at`, stamps their holders as changed
    /// and appends the audit events, in one transaction. Returns their numbers.
    pub async fn add_grants(
        &self,
        grants: &[Grant],
        actor: &str,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<Vec<i64>, StoreError> {
        let what = format!("adding {} grants", grants.len());
        let mut tx = self.begin_write(&what).await?;
        let ids = self.insert_grants_tx(&mut tx, grants, actor, at).await?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await?;
        Ok(ids)
    }

    /// Inserts grants and stamps their holders, inside a write transaction.
    pub(crate) async fn insert_grants_tx(
        &self,
        tx: &mut AnyConnection,
        grants: &[Grant],
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        if grants.is_empty() {
            return Ok(Vec::new());
        }
        let what = format!("adding {} grants", grants.len());
        let mut ids = Vec::with_capacity(grants.len());
        for g in grants {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO grants (identity, role, reason, valid_from, valid_until, created_at, \
                 created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(g.identity.as_str())
            .bind(g.role.as_str())
            .bind(g.reason.as_str())
            .bind(g.valid_from.map(micros))
            .bind(g.valid_until.map(micros))
            .bind(micros(at))
            .bind(actor)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
            ids.push(id);
        }
        let holders: BTreeSet<&IdentityId> = grants.iter().map(|g| &g.identity).collect();
        self.stamp_tx(tx, holders, &what).await?;
        Ok(ids)
    }

    /// Stamps identities as changed (the next incremental plan looks at them).
    async fn stamp_tx(
        &self,
        tx: &mut AnyConnection,
        ids: BTreeSet<&IdentityId>,
        what: &str,
    ) -> Result<(), StoreError> {
        let stamp = self.next_change_stamp(tx, what).await?;
        for id in ids {
            sqlx::query("UPDATE identities SET change_seq = $1 WHERE id = $2")
                .bind(stamp)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(what, e))?;
        }
        Ok(())
    }

    /// Revokes a grant: it stops counting at once. Errors if there is no
    /// such grant or it was already revoked.
    pub async fn revoke_grant(
        &self,
        id: i64,
        actor: &str,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<StoredGrant, StoreError> {
        let what = format!("revoking grant {id}");
        let mut tx = self.begin_write(&what).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        let Some(row) = row else {
            return Err(self.invalid(format!("there is no grant {id}")));
        };
        let mut grant = self.grant_of(&row)?;
        if let Some(when) = grant.revoked_at {
            return Err(self.invalid(format!(
                "grant {id} was already revoked by {} at {when}",
                grant.revoked_by.as_deref().unwrap_or("?")
            )));
        }
        sqlx::query("UPDATE grants SET revoked_at = $1, revoked_by = $2 WHERE id = $3")
            .bind(micros(at))
            .bind(actor)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        self.stamp_tx(&mut tx, BTreeSet::from([&grant.grant.identity]), &what)
            .await?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await?;
        grant.revoked_at = Some(at);
        grant.revoked_by = Some(actor.to_owned());
        Ok(grant)
    }

    /// Grant number `id`, if there is one.
    pub async fn grant(&self, id: i64) -> Result<Option<StoredGrant>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(format!("reading grant {id}"), e))?;
        row.map(|r| self.grant_of(&r)).transpose()
    }

    /// Every grant ever made (of one identity, if given), revoked and ended
    /// ones included, by number.
    pub async fn grants(
        &self,
        identity: Option<&IdentityId>,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        let rows = match identity {
            Some(id) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{SELECT} WHERE identity = $1 ORDER BY id"
                )))
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY id")))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(|e| self.db_err("reading grants", e))?;
        rows.iter().map(|r| self.grant_of(r)).collect()
    }

    /// The grants that still count at `now` (not revoked, not ended; perhaps
    /// not started yet) of these identities, or of everyone.
    pub async fn live_grants(
        &self,
        identities: Option<&[IdentityId]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        let live = "revoked_at IS NULL AND (valid_until IS NULL OR valid_until > $1)";
        let mut out = Vec::new();
        match identities {
            None => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{SELECT} WHERE {live} ORDER BY id"
                )))
                .bind(micros(now))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err("reading grants", e))?;
                for r in &rows {
                    out.push(self.grant_of(r)?);
                }
            }
            Some(ids) => {
                for chunk in ids.chunks(IN_CHUNK) {
                    let marks: Vec<String> =
                        (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                    let sql = format!(
                        "{SELECT} WHERE {live} AND identity IN ({}) ORDER BY id",
                        marks.join(", ")
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(micros(now));
                    for id in chunk {
                        q = q.bind(id.as_str());
                    }
                    let rows = q
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|e| self.db_err("reading grants", e))?;
                    for r in &rows {
                        out.push(self.grant_of(r)?);
                    }
                }
                out.sort_by_key(|g| g.id);
            }
        }
        Ok(out)
    }

    /// Grants, not revoked, that end after `after` and no later than `upto`
    /// (of these identities, or of everyone), by number.
    pub async fn grants_ending(
        &self,
        identities: Option<&[IdentityId]>,
        after: DateTime<Utc>,
        upto: DateTime<Utc>,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        let ending = "revoked_at IS NULL AND valid_until > $1 AND valid_until <= $2";
        let what = "reading grants that end";
        let mut out = Vec::new();
        let all: [IdentityId; 0] = [];
        let chunks: Vec<&[IdentityId]> = match identities {
            None => vec![&all[..]],
            Some(ids) => ids.chunks(IN_CHUNK).collect(),
        };
        for chunk in chunks {
            let sql = if identities.is_none() {
                format!("{SELECT} WHERE {ending}")
            } else {
                let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
                format!(
                    "{SELECT} WHERE {ending} AND identity IN ({})",
                    marks.join(", ")
                )
            };
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(micros(after))
                .bind(micros(upto));
            for id in chunk {
                q = q.bind(id.as_str());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err(what, e))?;
            for r in &rows {
                out.push(self.grant_of(r)?);
            }
        }
        out.sort_by_key(|g| g.id);
        Ok(out)
    }

    fn grant_of(&self, row: &AnyRow) -> Result<StoredGrant, StoreError> {
        const T: &str = "grants";
        let id: i64 = self.col(row, T, "id", "?")?;
        let time = |column: &'static str, v: i64| {
            from_micros(v)
                .ok_or_else(|| self.bad_value(T, column, id, format!("timestamp {v} out of range")))
        };
        let opt_time =
            |column: &'static str, v: Option<i64>| v.map(|v| time(column, v)).transpose();
        let identity: String = self.col(row, T, "identity", id)?;
        let role: String = self.col(row, T, "role", id)?;
        Ok(StoredGrant {
            id,
            grant: Grant {
                identity: IdentityId::new(identity)
                    .map_err(|e| self.corrupt(T, "identity", id, e))?,
                role: RoleId::new(role).map_err(|e| self.corrupt(T, "role", id, e))?,
                reason: self.col(row, T, "reason", id)?,
                valid_from: opt_time("valid_from", self.col(row, T, "valid_from", id)?)?,
                valid_until: opt_time("valid_until", self.col(row, T, "valid_until", id)?)?,
            },
            created_at: time("created_at", self.col(row, T, "created_at", id)?)?,
            created_by: self.col(row, T, "created_by", id)?,
            revoked_at: opt_time("revoked_at", self.col(row, T, "revoked_at", id)?)?,
            revoked_by: self.col(row, T, "revoked_by", id)?,
        })
    }
}
