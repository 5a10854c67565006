//! Identities and the links between accounts and identities.
//!
//! Identities are upserted in bulk (multi-row INSERT … ON CONFLICT) together
//! with their audit events, in one transaction. Reads return whole tables in
//! key order. This module does not evaluate lifecycle status (the status is
//! stored as the engine computed it) and never deletes identities: a person
//! who leaves stays, with a leaver or deleted status.

use crate::StoreError;
use crate::sql::{date_text, parse_date, values_chunks};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use tenure_core::audit::AuditEvent;
use tenure_core::{
    AccountKey, EmploymentType, Identity, IdentityId, IdentityRecord, LifecycleStatus, Link,
    SourceId, SystemId,
};

const IDENTITY_COLUMNS: &str = "id, source, employment_type, manager, start_date, end_date, \
                                attributes, groups_json, status, suspended, change_seq, record_hash";

/// One identity, encoded for its row.
struct IdentityRow<'a> {
    id: &'a str,
    source: &'a str,
    employment_type: &'static str,
    manager: Option<&'a str>,
    start_date: Option<String>,
    end_date: Option<String>,
    attributes: String,
    groups: String,
    status: &'static str,
    suspended: i64,
    record_hash: String,
}

impl Store {
    /// Every identity, ordered by id (byte order, on both databases).
    pub async fn identities(&self) -> Result<Vec<Identity>, StoreError> {
        // Identifier columns use the "C" collation on PostgreSQL: byte order, like SQLite.
        let sql = "SELECT id, source, employment_type, manager, start_date, end_date, \
                   attributes, groups_json, status, suspended FROM identities ORDER BY id";
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err("reading identities", e))?;
        rows.iter().map(|r| self.decode_identity(r)).collect()
    }

    /// One identity, if stored.
    pub async fn identity(&self, id: &IdentityId) -> Result<Option<Identity>, StoreError> {
        let row = sqlx::query(
            "SELECT id, source, employment_type, manager, start_date, end_date, \
             attributes, groups_json, status, suspended FROM identities WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err(format!("reading identity {id}"), e))?;
        row.map(|r| self.decode_identity(&r)).transpose()
    }

    /// How many identities are stored.
    pub async fn count_identities(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identities")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db_err("counting identities", e))?;
        Ok(crate::sql::to_u64(n))
    }

    /// Atomically upserts these identities and appends these audit events, in
    /// ONE transaction: either everything is stored or nothing is (a failed
    /// import leaves the store exactly as it was).
    ///
    /// An identity already stored is replaced whole (record, source, status
    /// and the suspended flag). If the same id appears twice in `upserts`, the
    /// last one wins.
    pub async fn save_identities(
        &self,
        upserts: &[Identity],
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError> {
        let what = format!("saving {} identities", upserts.len());
        let mut tx = self.begin_write(&what).await?;
        self.upsert_identities_tx(&mut tx, upserts).await?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await?;
        self.analyze_after_bulk(&["identities"], upserts.len())
            .await
    }

    /// [`Store::save_identities`] with the grants the changes earn (a mover's
    /// grace periods), made by `actor` at `at`, in the same transaction.
    pub async fn save_identities_and_grants(
        &self,
        upserts: &[Identity],
        grants: &[tenure_core::policy::Grant],
        actor: &str,
        at: chrono::DateTime<chrono::Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError> {
        let what = format!("saving {} identities", upserts.len());
        let mut tx = self.begin_write(&what).await?;
        self.upsert_identities_tx(&mut tx, upserts).await?;
        self.insert_grants_tx(&mut tx, grants, actor, at).await?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await?;
        self.analyze_after_bulk(&["identities"], upserts.len())
            .await
    }

    /// Upserts identities inside a write transaction (see [`Store::save_identities`]).
    pub(crate) async fn upsert_identities_tx(
        &self,
        tx: &mut sqlx::AnyConnection,
        upserts: &[Identity],
    ) -> Result<(), StoreError> {
        // Last one wins; sorted by id so that concurrent imports lock rows in
        // the same order (no deadlocks on PostgreSQL).
        let mut by_id: BTreeMap<&str, &Identity> = BTreeMap::new();
        for i in upserts {
            by_id.insert(i.id().as_str(), i);
        }
        // Each row's record digest, and its JSON, on every core: the costly part
        // of saving a whole organisation.
        let list: Vec<(&str, &Identity)> = by_id.into_iter().collect();
        let encoded = crate::sql::par_map(&list, |(id, i)| {
            let attributes = serde_json::to_string(&i.record.attributes)
                .map_err(|e| (format!("the attributes of identity {id}"), e))?;
            let groups = serde_json::to_string(&i.record.groups)
                .map_err(|e| (format!("the groups of identity {id}"), e))?;
            Ok((attributes, groups, i.record.digest()))
        })
        .map_err(|e| match e {
            crate::sql::ParError::Failed(_, (what, e)) => self.encode_err(what, e),
            crate::sql::ParError::Panicked => {
                self.invalid("encoding identities failed (a worker thread panicked)")
            }
        })?;
        let mut rows = Vec::with_capacity(list.len());
        for ((id, i), (attributes, groups, record_hash)) in list.into_iter().zip(encoded) {
            rows.push(IdentityRow {
                id,
                source: i.source.as_str(),
                employment_type: i.record.employment_type.as_str(),
                manager: i.record.manager.as_ref().map(IdentityId::as_str),
                start_date: i.record.start_date.map(date_text),
                end_date: i.record.end_date.map(date_text),
                attributes,
                groups,
                status: i.status.as_str(),
                suspended: i64::from(i.suspended),
                record_hash,
            });
        }
        let what = format!("saving {} identities", rows.len());
        if !rows.is_empty() {
            let stamp = self.next_change_stamp(&mut *tx, &what).await?;
            values_chunks(
                tx,
                self.dialect,
                &format!("INSERT INTO identities ({IDENTITY_COLUMNS})"),
                12,
                " ON CONFLICT (id) DO UPDATE SET source = excluded.source, \
                 employment_type = excluded.employment_type, manager = excluded.manager, \
                 start_date = excluded.start_date, end_date = excluded.end_date, \
                 attributes = excluded.attributes, groups_json = excluded.groups_json, \
                 status = excluded.status, suspended = excluded.suspended, \
                 change_seq = excluded.change_seq, record_hash = excluded.record_hash",
                &rows,
                |q, r| {
                    q.bind(r.id)
                        .bind(r.source)
                        .bind(r.employment_type)
                        .bind(r.manager)
                        .bind(r.start_date.as_deref())
                        .bind(r.end_date.as_deref())
                        .bind(r.attributes.as_str())
                        .bind(r.groups.as_str())
                        .bind(r.status)
                        .bind(r.suspended)
                        .bind(stamp)
                        .bind(r.record_hash.as_str())
                },
            )
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        Ok(())
    }

    pub(crate) fn decode_identity(&self, row: &sqlx::any::AnyRow) -> Result<Identity, StoreError> {
        const T: &str = "identities";
        let raw_id: String = self.col(row, T, "id", "?")?;
        let key = raw_id.as_str();
        let id = IdentityId::new(raw_id.clone()).map_err(|e| self.corrupt(T, "id", key, e))?;
        let source: String = self.col(row, T, "source", key)?;
        let source = SourceId::new(source).map_err(|e| self.corrupt(T, "source", key, e))?;
        let et: String = self.col(row, T, "employment_type", key)?;
        let employment_type = EmploymentType::parse(&et).ok_or_else(|| {
            self.bad_value(
                T,
                "employment_type",
                key,
                format!("unknown employment type {et:?}"),
            )
        })?;
        let manager: Option<String> = self.col(row, T, "manager", key)?;
        let manager = manager
            .map(IdentityId::new)
            .transpose()
            .map_err(|e| self.corrupt(T, "manager", key, e))?;
        let start_date = self.date_col(row, "start_date", key)?;
        let end_date = self.date_col(row, "end_date", key)?;
        let attributes: BTreeMap<String, String> = self.json_col(row, T, "attributes", key)?;
        let groups: BTreeSet<String> = self.json_col(row, T, "groups_json", key)?;
        let status: String = self.col(row, T, "status", key)?;
        let status = LifecycleStatus::parse(&status).ok_or_else(|| {
            self.bad_value(
                T,
                "status",
                key,
                format!("unknown lifecycle status {status:?}"),
            )
        })?;
        let suspended: i64 = self.col(row, T, "suspended", key)?;
        Ok(Identity {
            record: IdentityRecord {
                id,
                employment_type,
                manager,
                start_date,
                end_date,
                attributes,
                groups,
            },
            source,
            status,
            suspended: suspended != 0,
        })
    }

    fn date_col(
        &self,
        row: &sqlx::any::AnyRow,
        column: &'static str,
        key: &str,
    ) -> Result<Option<chrono::NaiveDate>, StoreError> {
        let text: Option<String> = self.col(row, "identities", column, key)?;
        text.map(|t| parse_date(&t))
            .transpose()
            .map_err(|e| self.corrupt("identities", column, key, e))
    }

    /// Every link, ordered by system then account.
    pub async fn links(&self) -> Result<Vec<Link>, StoreError> {
        let sql = "SELECT system, account, identity FROM links ORDER BY system, account";
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err("reading links", e))?;
        rows.iter().map(|r| self.decode_link(r)).collect()
    }

    pub(crate) fn decode_link(&self, row: &sqlx::any::AnyRow) -> Result<Link, StoreError> {
        const T: &str = "links";
        let system: String = self.col(row, T, "system", "?")?;
        let account: String = self.col(row, T, "account", &system)?;
        let key = format!("{system}/{account}");
        let identity: String = self.col(row, T, "identity", &key)?;
        Ok(Link {
            system: SystemId::new(system).map_err(|e| self.corrupt(T, "system", &key, e))?,
            account: AccountKey::new(account).map_err(|e| self.corrupt(T, "account", &key, e))?,
            identity: IdentityId::new(identity)
                .map_err(|e| self.corrupt(T, "identity", &key, e))?,
        })
    }

    /// Removes the links of `remove`, then adds (or re-points) those of `add`,
    /// in one transaction. A (system, account) in both ends up linked as `add`
    /// says; within `add` the last link for an account wins. Removing a link
    /// that does not exist is not an error.
    pub async fn save_links(
        &self,
        add: &[Link],
        remove: &[(SystemId, AccountKey)],
    ) -> Result<(), StoreError> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let remove: BTreeSet<(&str, &str)> = remove
            .iter()
            .map(|(s, a)| (s.as_str(), a.as_str()))
            .collect();
        let remove: Vec<(&str, &str)> = remove.into_iter().collect();
        let mut adds: BTreeMap<(&str, &str), &str> = BTreeMap::new();
        for l in add {
            adds.insert((l.system.as_str(), l.account.as_str()), l.identity.as_str());
        }
        let adds: Vec<((&str, &str), &str)> = adds.into_iter().collect();
        let what = format!("saving links (+{} -{})", adds.len(), remove.len());
        let mut tx = self.begin_write(&what).await?;
        if !remove.is_empty() {
            values_chunks(
                &mut tx,
                self.dialect,
                "DELETE FROM links WHERE (system, account) IN (",
                2,
                ")",
                &remove,
                |q, (s, a)| q.bind(*s).bind(*a),
            )
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        if !adds.is_empty() {
            values_chunks(
                &mut tx,
                self.dialect,
                "INSERT INTO links (system, account, identity)",
                3,
                " ON CONFLICT (system, account) DO UPDATE SET identity = excluded.identity",
                &adds,
                |q, ((s, a), i)| q.bind(*s).bind(*a).bind(*i),
            )
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        self.commit(tx, &what).await?;
        self.analyze_after_bulk(&["links"], adds.len() + remove.len())
            .await
    }
}
