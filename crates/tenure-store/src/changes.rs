//! What changed since the last applied plan, so that a plan can look at the
//! people concerned only.
//!
//! Every save of identities takes the next change stamp and writes it on the
//! rows it saves (in the same transaction, so a stamp is visible only with
//! its rows). The plan cursor holds the stamp and the policy fingerprint of
//! the last applied plan; identities stamped after it, and those whose next
//! due moment has come, are what an incremental plan looks at. Both are found
//! through indexes: finding them never reads every identity.

use crate::StoreError;
use crate::sql::{from_micros, micros, to_u64, values_chunks};
use crate::store::Store;
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use tenure_core::{AccountKey, Identity, IdentityId, LifecycleStatus, Link, SourceId, SystemId};

/// Values per `IN (…)` list.
const IN_CHUNK: usize = 500;

/// Where incremental planning stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCursor {
    /// Identities stamped up to this were covered by an applied plan.
    pub change_seq: i64,
    /// The policy fingerprint of that plan (empty: no plan was ever applied).
    pub policy: String,
}

/// What an import needs to know of a stored identity to tell whether its
/// record changed, without decoding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityDigest {
    /// The identity.
    pub id: IdentityId,
    /// Its authoritative source.
    pub source: SourceId,
    /// Its stored status.
    pub status: LifecycleStatus,
    /// Whether it is suspended.
    pub suspended: bool,
    /// [`tenure_core::IdentityRecord::digest`] of the stored record (`None`
    /// for rows saved before digests were kept).
    pub record_hash: Option<String>,
}

const SELECT_IDENTITY: &str = "SELECT id, source, employment_type, manager, start_date, \
                               end_date, attributes, groups_json, status, suspended FROM identities";

impl Store {
    /// Takes the next change stamp, inside a write transaction.
    pub(crate) async fn next_change_stamp(
        &self,
        conn: &mut AnyConnection,
        what: &str,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar("UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(conn)
            .await
            .map_err(|e| self.db_err(format!("{what} (taking a change stamp)"), e))
    }

    /// The newest change stamp given out (and committed).
    pub async fn change_stamp(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT seq FROM change_counter WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db_err("reading the change stamp", e))
    }

    /// Where incremental planning stands.
    pub async fn plan_cursor(&self) -> Result<PlanCursor, StoreError> {
        let row = sqlx::query("SELECT change_seq, policy FROM plan_cursor WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db_err("reading the plan cursor", e))?;
        Ok(PlanCursor {
            change_seq: self.col(&row, "plan_cursor", "change_seq", "1")?,
            policy: self.col(&row, "plan_cursor", "policy", "1")?,
        })
    }

    /// The identities an incremental plan looks at: stamped after `after`
    /// and up to `upto`, or whose next due moment is at or before `now`.
    /// Ordered by id.
    pub async fn identities_to_plan(
        &self,
        after: i64,
        upto: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Identity>, StoreError> {
        // Two selects, not one with OR, and no ORDER BY: each select uses its
        // own index on both databases (SQLite would otherwise walk the
        // primary key to avoid a sort, reading every identity). Sorted here.
        let sql = format!(
            "{SELECT_IDENTITY} WHERE change_seq > $1 AND change_seq <= $2 \
             UNION {SELECT_IDENTITY} WHERE next_due <= $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(upto)
            .bind(micros(now))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err("reading the identities that changed", e))?;
        let mut out = rows
            .iter()
            .map(|r| self.decode_identity(r))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(out)
    }

    /// These identities (those stored), ordered by id.
    pub async fn identities_by_id(&self, ids: &[IdentityId]) -> Result<Vec<Identity>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "{SELECT_IDENTITY} WHERE id IN ({})",
                crate::sql::placeholders(self.dialect, chunk.len(), 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.as_str());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err(format!("reading {} identities", chunk.len()), e))?;
            for r in &rows {
                out.push(self.decode_identity(r)?);
            }
        }
        out.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(out)
    }

    /// The digest of every stored identity, ordered by id.
    pub async fn identity_digests(&self) -> Result<Vec<IdentityDigest>, StoreError> {
        const T: &str = "identities";
        let rows = sqlx::query(
            "SELECT id, source, status, suspended, record_hash FROM identities ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err("reading identity digests", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = self.col(row, T, "id", "?")?;
            let key = id.clone();
            let source: String = self.col(row, T, "source", &key)?;
            let status: String = self.col(row, T, "status", &key)?;
            let suspended: i64 = self.col(row, T, "suspended", &key)?;
            out.push(IdentityDigest {
                id: IdentityId::new(id).map_err(|e| self.corrupt(T, "id", &key, e))?,
                source: SourceId::new(source).map_err(|e| self.corrupt(T, "source", &key, e))?,
                status: LifecycleStatus::parse(&status).ok_or_else(|| {
                    self.bad_value(
                        T,
                        "status",
                        &key,
                        format!("unknown lifecycle status {status:?}"),
                    )
                })?,
                suspended: suspended != 0,
                record_hash: self.col(row, T, "record_hash", &key)?,
            });
        }
        Ok(out)
    }

    /// The links of these identities, ordered by system then account.
    pub async fn links_of_identities(&self, ids: &[IdentityId]) -> Result<Vec<Link>, StoreError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT system, account, identity FROM links WHERE identity IN ({})",
                crate::sql::placeholders(self.dialect, chunk.len(), 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.as_str());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err("reading links", e))?;
            for r in &rows {
                out.push(self.decode_link(r)?);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The links of these accounts of one system, ordered by account.
    pub async fn links_of_accounts(
        &self,
        system: &SystemId,
        accounts: &[&AccountKey],
    ) -> Result<Vec<Link>, StoreError> {
        let mut out = Vec::new();
        for chunk in accounts.chunks(IN_CHUNK) {
            // Numbered throughout, then made anonymous on SQLite as a whole:
            // SQLite binds a `?` after a `$1` to the first value again.
            let sql = crate::sql::in_order(
                self.dialect,
                format!(
                    "SELECT system, account, identity FROM links WHERE system = $1 AND account IN ({})",
                    crate::sql::placeholder_list(2, chunk.len())
                ),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(system.as_str());
            for a in chunk {
                q = q.bind(a.as_str());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err(format!("reading links of system {system}"), e))?;
            for r in &rows {
                out.push(self.decode_link(r)?);
            }
        }
        out.sort();
        Ok(out)
    }

    /// How many links are stored (the accounts Tenure manages).
    pub async fn count_links(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM links")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db_err("counting links", e))?;
        Ok(to_u64(n))
    }

    /// Records that a plan covering the identities stamped up to `upto` was
    /// applied with policy `policy`, and the next due moment of the identities
    /// it evaluated, in one transaction. With `every`, the plan evaluated
    /// every identity: due moments not in `due` are cleared.
    pub async fn record_planned(
        &self,
        upto: i64,
        policy: &str,
        due: &[(IdentityId, Option<DateTime<Utc>>)],
        every: bool,
    ) -> Result<(), StoreError> {
        let what = format!("recording the plan cursor ({} due times)", due.len());
        let mut tx = self.begin_write(&what).await?;
        sqlx::query("UPDATE plan_cursor SET change_seq = $1, policy = $2 WHERE id = 1")
            .bind(upto)
            .bind(policy)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        if every {
            sqlx::query("UPDATE identities SET next_due = NULL WHERE next_due IS NOT NULL")
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&what, e))?;
        }
        let rows: Vec<(&str, Option<i64>)> = due
            .iter()
            .filter(|(_, d)| !every || d.is_some())
            .map(|(id, d)| (id.as_str(), d.map(micros)))
            .collect();
        if !rows.is_empty() {
            values_chunks(
                &mut tx,
                self.dialect,
                "UPDATE identities SET next_due = v.column2 FROM (",
                2,
                ") AS v WHERE identities.id = v.column1",
                &rows,
                |q, (id, d)| q.bind(*id).bind(*d),
            )
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        self.commit(tx, &what).await
    }

    /// The stored next due moment of an identity (`None`: nothing scheduled).
    pub async fn next_due(&self, id: &IdentityId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<Option<i64>> =
            sqlx::query_scalar("SELECT next_due FROM identities WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.db_err(format!("reading the due time of {id}"), e))?;
        Ok(v.flatten().and_then(from_micros))
    }
}

/// A legal hold on one identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegalHold {
    /// Who is held.
    pub identity: IdentityId,
    /// Why (a case reference).
    pub reason: String,
    /// Who placed it.
    pub actor: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

impl Store {
    /// Places (`Some`) or releases (`None`) a legal hold on an identity,
    /// stamps the identity as changed (so the next incremental plan looks at
    /// it) and appends the audit events, in one transaction.
    pub async fn set_legal_hold(
        &self,
        identity: &IdentityId,
        hold: Option<&LegalHold>,
        audit: Vec<tenure_core::audit::AuditEvent>,
    ) -> Result<(), StoreError> {
        let what = format!("setting the legal hold of {identity}");
        let mut tx = self.begin_write(&what).await?;
        sqlx::query("DELETE FROM legal_holds WHERE identity = $1")
            .bind(identity.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        if let Some(h) = hold {
            sqlx::query(
                "INSERT INTO legal_holds (identity, reason, actor, since) VALUES ($1, $2, $3, $4)",
            )
            .bind(identity.as_str())
            .bind(h.reason.as_str())
            .bind(h.actor.as_str())
            .bind(micros(h.since))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        let stamp = self.next_change_stamp(&mut tx, &what).await?;
        sqlx::query("UPDATE identities SET change_seq = $1 WHERE id = $2")
            .bind(stamp)
            .bind(identity.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await
    }

    /// Every legal hold in force.
    pub async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        const T: &str = "legal_holds";
        let rows =
            sqlx::query("SELECT identity, reason, actor, since FROM legal_holds ORDER BY identity")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err("reading legal holds", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = self.col(row, T, "identity", "?")?;
            let key = id.clone();
            let since: i64 = self.col(row, T, "since", &key)?;
            out.push(LegalHold {
                identity: IdentityId::new(id).map_err(|e| self.corrupt(T, "identity", &key, e))?,
                reason: self.col(row, T, "reason", &key)?,
                actor: self.col(row, T, "actor", &key)?,
                since: from_micros(since).ok_or_else(|| {
                    self.bad_value(T, "since", &key, format!("timestamp {since} out of range"))
                })?,
            });
        }
        Ok(out)
    }
}
