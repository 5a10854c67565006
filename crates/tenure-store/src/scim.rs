//! The SCIM service provider's resources: users (with their multi-valued
//! attributes as rows of `scim_user_values`), groups and memberships.
//!
//! Writes are conditional on the version the caller read (optimistic
//! concurrency: a stale version is [`StoreError::Stale`]) and carry the
//! identities the write changes and their audit records, all in one
//! transaction. Group memberships are written as differences (rows added and
//! removed), never by rewriting a group's whole list. Lists are answered by
//! SQL built in [`crate::scim_sql`], never by filtering in memory.

use crate::StoreError;
use crate::scim_sql::{Bind, Sql, order_expr, where_clause};
use crate::sql::{AnyQuery, from_micros, micros, placeholder_list};
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use std::collections::{BTreeMap, BTreeSet};
use tenure_core::Identity;
use tenure_core::audit::AuditEvent;
use tenure_scim::schema::{ResourceKind, USER};
use tenure_scim::{ListQuery, ScimError};

/// A stored SCIM resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimRecord {
    /// The SCIM id.
    pub id: String,
    /// For users: the identity it feeds.
    pub identity_id: Option<String>,
    /// The version (incremented by every write).
    pub version: i64,
    /// Created.
    pub created: DateTime<Utc>,
    /// Last modified.
    pub modified: DateTime<Utc>,
    /// The resource without id and meta; a user's `groups` and a group's
    /// `members` filled in.
    pub resource: Value,
}

/// A user to write.
#[derive(Debug, Clone)]
pub struct UserWrite<'a> {
    /// The SCIM id.
    pub id: &'a str,
    /// The identity it feeds.
    pub identity_id: &'a str,
    /// The resource (stored form, without `groups`).
    pub resource: &'a Value,
    /// `None`: create; `Some(v)`: update, only if the stored version is `v`.
    pub expected_version: Option<i64>,
    /// Now.
    pub now: DateTime<Utc>,
    /// Grants the change earns (a mover's grace periods), made by `actor`.
    pub grants: &'a [tenure_core::policy::Grant],
    /// Who writes (the token's actor), for the grants.
    pub actor: &'a str,
}

/// A group to write.
#[derive(Debug, Clone)]
pub struct GroupWrite<'a> {
    /// The SCIM id.
    pub id: &'a str,
    /// The resource (stored form, without `members`).
    pub resource: &'a Value,
    /// The members it must have: (id, `User` or `Group`).
    pub members: &'a BTreeSet<(String, String)>,
    /// `None`: create; `Some(v)`: update, only if the stored version is `v`.
    pub expected_version: Option<i64>,
    /// Now.
    pub now: DateTime<Utc>,
}

/// A list query's error: the query was invalid, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum ScimQueryError {
    /// The filter or sort cannot be answered (a SCIM error for the client).
    #[error("{0}")]
    Invalid(ScimError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bind_all(mut q: AnyQuery, binds: &[Bind]) -> AnyQuery {
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s.clone()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    q
}

/// The multi-valued attributes of a user as value rows.
struct ValueRow {
    attr: &'static str,
    pos: i64,
    type_lower: Option<String>,
    value: Option<String>,
    value_lower: Option<String>,
    display: Option<String>,
    primary: i64,
    item: String,
}

fn value_rows(resource: &Value) -> Vec<ValueRow> {
    let mut out = Vec::new();
    let Some(core) = tenure_scim::schema::schema(USER) else {
        return out;
    };
    for a in core
        .attributes
        .iter()
        .filter(|a| a.multi_valued && a.name != "groups")
    {
        let Some(Value::Array(items)) = resource.get(a.name) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
            let value = text("value").or_else(|| text("formatted"));
            out.push(ValueRow {
                attr: a.name,
                pos: i64::try_from(i).unwrap_or(i64::MAX),
                type_lower: text("type").map(|t| t.to_lowercase()),
                value_lower: value.as_ref().map(|v| v.to_lowercase()),
                value,
                display: text("display"),
                primary: i64::from(item.get("primary").and_then(Value::as_bool) == Some(true)),
                item: item.to_string(),
            });
        }
    }
    out
}

fn text_of(resource: &Value, key: &str) -> Option<String> {
    resource.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Store {
    fn scim_row(&self, row: &AnyRow, kind: ResourceKind) -> Result<ScimRecord, StoreError> {
        let table = match kind {
            ResourceKind::User => "scim_users",
            ResourceKind::Group => "scim_groups",
        };
        let id: String = self.col(row, table, "id", "?")?;
        let identity_id = match kind {
            ResourceKind::User => Some(self.col::<String>(row, table, "identity_id", &id)?),
            ResourceKind::Group => None,
        };
        let version: i64 = self.col(row, table, "version", &id)?;
        let created: i64 = self.col(row, table, "created", &id)?;
        let modified: i64 = self.col(row, table, "modified", &id)?;
        let resource: Value = self.json_col(row, table, "resource", &id)?;
        let ts = |v: i64, c: &'static str| {
            from_micros(v)
                .ok_or_else(|| self.bad_value(table, c, &id, format!("timestamp {v} out of range")))
        };
        Ok(ScimRecord {
            created: ts(created, "created")?,
            modified: ts(modified, "modified")?,
            id,
            identity_id,
            version,
            resource,
        })
    }

    /// Fills in users' `groups` and groups' `members`.
    async fn scim_fill(
        &self,
        kind: ResourceKind,
        records: &mut [ScimRecord],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let list = placeholder_list(1, ids.len());
        let mut by: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        match kind {
            ResourceKind::User => {
                let sql = format!(
                    "SELECT m.member_id, g.id, g.display_name FROM scim_group_members m \
                     JOIN scim_groups g ON g.id = m.group_id WHERE m.member_id IN ({list}) \
                     ORDER BY m.member_id, g.display_name, g.id"
                );
                let mut q: AnyQuery = sqlx::query(AssertSqlSafe(sql));
                for i in &ids {
                    q = q.bind(i.clone());
                }
                let rows = q
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.db_err("reading users' groups", e))?;
                for row in &rows {
                    let m: String = self.col(row, "scim_group_members", "member_id", "?")?;
                    let g: String = self.col(row, "scim_groups", "id", &m)?;
                    let d: String = self.col(row, "scim_groups", "display_name", &g)?;
                    by.entry(m)
                        .or_default()
                        .push(json!({"value": g, "display": d, "type": "direct"}));
                }
                for r in records.iter_mut() {
                    if let (Some(gs), Value::Object(o)) = (by.remove(&r.id), &mut r.resource) {
                        o.insert("groups".into(), Value::Array(gs));
                    }
                }
            }
            ResourceKind::Group => {
                let sql = format!(
                    "SELECT m.group_id, m.member_id, m.member_type \
                     FROM scim_group_members m \
                     WHERE m.group_id IN ({list}) ORDER BY m.group_id, m.member_id"
                );
                let mut q: AnyQuery = sqlx::query(AssertSqlSafe(sql));
                for i in &ids {
                    q = q.bind(i.clone());
                }
                let rows = q
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.db_err("reading groups' members", e))?;
                for row in &rows {
                    let g: String = self.col(row, "scim_group_members", "group_id", "?")?;
                    let m: String = self.col(row, "scim_group_members", "member_id", &g)?;
                    let t: String = self.col(row, "scim_group_members", "member_type", &g)?;
                    by.entry(g)
                        .or_default()
                        .push(json!({"value": m, "type": t}));
                }
                for r in records.iter_mut() {
                    if let (Some(ms), Value::Object(o)) = (by.remove(&r.id), &mut r.resource) {
                        o.insert("members".into(), Value::Array(ms));
                    }
                }
            }
        }
        Ok(())
    }

    /// One SCIM resource, with its groups or members.
    pub async fn scim_get(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<ScimRecord>, StoreError> {
        let sql = match kind {
            ResourceKind::User => {
                "SELECT id, identity_id, version, created, modified, resource FROM scim_users r WHERE id = $1"
            }
            ResourceKind::Group => {
                "SELECT id, version, created, modified, resource FROM scim_groups r WHERE id = $1"
            }
        };
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(format!("reading SCIM {} {id}", kind.name()), e))?;
        let Some(row) = row else { return Ok(None) };
        let mut recs = vec![self.scim_row(&row, kind)?];
        self.scim_fill(kind, &mut recs).await?;
        Ok(recs.pop())
    }

    /// The SCIM user that feeds an identity.
    pub async fn scim_user_of_identity(
        &self,
        identity: &str,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT id FROM scim_users WHERE identity_id = $1")
            .bind(identity)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(format!("finding the SCIM user of identity {identity}"), e))
    }

    /// The identity ids of these SCIM users (unknown ids are left out).
    pub async fn scim_identities_of(
        &self,
        user_ids: &[String],
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut out = BTreeMap::new();
        for chunk in user_ids.chunks(500) {
            let sql = format!(
                "SELECT id, identity_id FROM scim_users WHERE id IN ({})",
                placeholder_list(1, chunk.len())
            );
            let mut q: AnyQuery = sqlx::query(AssertSqlSafe(sql));
            for i in chunk {
                q = q.bind(i.clone());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err("reading SCIM users' identities", e))?;
            for r in &rows {
                let id: String = self.col(r, "scim_users", "id", "?")?;
                let identity: String = self.col(r, "scim_users", "identity_id", &id)?;
                out.insert(id, identity);
            }
        }
        Ok(out)
    }

    /// Which of these ids are groups.
    pub async fn scim_existing_groups(
        &self,
        ids: &[String],
    ) -> Result<BTreeSet<String>, StoreError> {
        let mut out = BTreeSet::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id FROM scim_groups WHERE id IN ({})",
                placeholder_list(1, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
            for i in chunk {
                q = q.bind(i.clone());
            }
            out.extend(
                q.fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.db_err("reading SCIM groups", e))?,
            );
        }
        Ok(out)
    }

    /// The display names of the groups a user is a direct member of.
    pub async fn scim_group_names_of(&self, user_id: &str) -> Result<BTreeSet<String>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT g.display_name FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id \
             WHERE m.member_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(format!("reading the groups of SCIM user {user_id}"), e))?;
        Ok(names.into_iter().collect())
    }

    /// A page of resources matching a query, how many match in all, and
    /// (cursor pagination, RFC 9865) the cursor of the next page.
    ///
    /// A cursor is keyset pagination over the default order (creation time,
    /// then id): the next page starts after the last resource returned, so
    /// writes between pages neither repeat nor skip resources. Cursors do
    /// not expire; one that does not decode is the client's error.
    pub async fn scim_list(
        &self,
        kind: ResourceKind,
        q: &ListQuery,
    ) -> Result<(u64, Vec<ScimRecord>, Option<String>), ScimQueryError> {
        let mut sql = Sql::new(self.dialect);
        let cond = match &q.filter {
            Some(f) => where_clause(&mut sql, kind, f).map_err(ScimQueryError::Invalid)?,
            None => "1 = 1".to_owned(),
        };
        let (table, cols) = match kind {
            ResourceKind::User => (
                "scim_users",
                "r.id, r.identity_id, r.version, r.created, r.modified, r.resource",
            ),
            ResourceKind::Group => (
                "scim_groups",
                "r.id, r.version, r.created, r.modified, r.resource",
            ),
        };
        let count_sql = format!("SELECT COUNT(*) FROM {table} r WHERE {cond}");
        let total: i64 = {
            let mut cq = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql));
            for b in &sql.binds {
                cq = match b {
                    Bind::Text(s) => cq.bind(s.clone()),
                    Bind::Int(i) => cq.bind(*i),
                };
            }
            cq.fetch_one(&self.pool)
                .await
                .map_err(|e| self.db_err(format!("counting SCIM {}s", kind.name()), e))?
        };
        let total = u64::try_from(total).unwrap_or(0);
        if q.count == 0 || total == 0 {
            return Ok((total, Vec::new(), None));
        }
        let after = match q.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ScimQueryError::Invalid(ScimError::bad(
                    tenure_scim::ScimType::InvalidCursor,
                    format!("cursor {c:?} was not given by this server"),
                ))
            })?),
        };
        if q.cursor.is_some() && q.sort_by.is_some() {
            return Err(ScimQueryError::Invalid(ScimError::bad(
                tenure_scim::ScimType::InvalidCursor,
                "cursor pagination follows the server's order: leave out sortBy",
            )));
        }
        let cond = match &after {
            Some((created, id)) => {
                let a = sql.bind(Bind::Int(*created));
                let b = sql.bind(Bind::Int(*created));
                let c = sql.bind(Bind::Text(id.clone()));
                format!("({cond}) AND (r.created > {a} OR (r.created = {b} AND r.id > {c}))")
            }
            None => cond,
        };
        let dir = if q.descending { "DESC" } else { "ASC" };
        let order = match &q.sort_by {
            Some(s) => {
                let e = order_expr(&mut sql, kind, s).map_err(ScimQueryError::Invalid)?;
                // NULLs last whatever the direction, on both databases.
                format!("CASE WHEN {e} IS NULL THEN 1 ELSE 0 END, {e} {dir}, r.id")
            }
            None => "r.created, r.id".to_owned(),
        };
        // Cursor pagination reads one more row to know whether a next page exists.
        let cursor = q.cursor.is_some();
        let want = if cursor {
            q.count.saturating_add(1)
        } else {
            q.count
        };
        let limit = sql.bind(Bind::Int(i64::try_from(want).unwrap_or(i64::MAX)));
        let skip = if cursor {
            0
        } else {
            q.start_index.saturating_sub(1)
        };
        let offset = sql.bind(Bind::Int(i64::try_from(skip).unwrap_or(i64::MAX)));
        let text = format!(
            "SELECT {cols} FROM {table} r WHERE {cond} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(text)), &sql.binds)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err(format!("listing SCIM {}s", kind.name()), e))?;
        let mut recs = rows
            .iter()
            .map(|r| self.scim_row(r, kind))
            .collect::<Result<Vec<_>, _>>()?;
        let mut next = None;
        if cursor && recs.len() as u64 > q.count {
            recs.truncate(usize::try_from(q.count).unwrap_or(usize::MAX));
            next = recs.last().map(|r| encode_cursor(micros(r.created), &r.id));
        }
        self.scim_fill(kind, &mut recs).await?;
        Ok((total, recs, next))
    }

    /// Creates or updates a user, stores the identities it changes and
    /// appends the audit records, in one transaction.
    pub async fn scim_save_user(
        &self,
        w: &UserWrite<'_>,
        identities: &[Identity],
        audit: Vec<AuditEvent>,
    ) -> Result<i64, StoreError> {
        let what = format!("saving SCIM user {}", w.id);
        let mut stored = w.resource.clone();
        if let Value::Object(o) = &mut stored {
            o.remove("groups");
        }
        let user_name = text_of(&stored, "userName").unwrap_or_default();
        let active = stored.get("active").and_then(Value::as_bool) != Some(false);
        let resource = stored.to_string();
        let now = micros(w.now);
        let mut tx = self.begin_write(&what).await?;
        let version = match w.expected_version {
            None => {
                sqlx::query(
                    "INSERT INTO scim_users (id, identity_id, user_name, user_name_lower, external_id, \
                     display_name, active, deactivated_at, version, created, modified, resource) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9, $10)",
                )
                .bind(w.id)
                .bind(w.identity_id)
                .bind(user_name.as_str())
                .bind(user_name.to_lowercase())
                .bind(text_of(&stored, "externalId"))
                .bind(text_of(&stored, "displayName"))
                .bind(i64::from(active))
                .bind(if active { None } else { Some(now) })
                .bind(now)
                .bind(resource.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&what, e))?;
                1
            }
            Some(expected) => {
                let done = sqlx::query(
                    "UPDATE scim_users SET user_name = $1, user_name_lower = $2, external_id = $3, \
                     display_name = $4, \
                     deactivated_at = CASE WHEN $5 = 0 AND active = 1 THEN $6 \
                                           WHEN $5 = 1 THEN NULL ELSE deactivated_at END, \
                     active = $5, version = version + 1, modified = $6, resource = $7 \
                     WHERE id = $8 AND version = $9",
                )
                .bind(user_name.as_str())
                .bind(user_name.to_lowercase())
                .bind(text_of(&stored, "externalId"))
                .bind(text_of(&stored, "displayName"))
                .bind(i64::from(active))
                .bind(now)
                .bind(resource.as_str())
                .bind(w.id)
                .bind(expected)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&what, e))?;
                if done.rows_affected() == 0 {
                    return Err(self
                        .missing_or_stale(&mut tx, "scim_users", w.id, expected, &what)
                        .await);
                }
                sqlx::query("DELETE FROM scim_user_values WHERE user_id = $1")
                    .bind(w.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db_err(&what, e))?;
                expected + 1
            }
        };
        let rows = value_rows(&stored);
        if !rows.is_empty() {
            crate::sql::values_chunks(
                &mut tx,
                self.dialect,
                "INSERT INTO scim_user_values (user_id, attr, pos, type_lower, value, value_lower, display, primary_value, item)",
                9,
                "",
                &rows,
                |q, r| {
                    q.bind(w.id)
                        .bind(r.attr)
                        .bind(r.pos)
                        .bind(r.type_lower.clone())
                        .bind(r.value.clone())
                        .bind(r.value_lower.clone())
                        .bind(r.display.clone())
                        .bind(r.primary)
                        .bind(r.item.clone())
                },
            )
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        self.upsert_identities_tx(&mut tx, identities).await?;
        self.insert_grants_tx(&mut tx, w.grants, w.actor, w.now)
            .await?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await?;
        Ok(version)
    }

    async fn missing_or_stale(
        &self,
        tx: &mut sqlx::AnyConnection,
        table: &'static str,
        id: &str,
        expected: i64,
        what: &str,
    ) -> StoreError {
        let sql = match table {
            "scim_users" => "SELECT COUNT(*) FROM scim_users WHERE id = $1",
            _ => "SELECT COUNT(*) FROM scim_groups WHERE id = $1",
        };
        let n: Result<i64, _> = sqlx::query_scalar(sql).bind(id).fetch_one(&mut *tx).await;
        match n {
            Ok(0) => StoreError::NotFound {
                what: what.to_owned(),
                store: self.location.to_string(),
            },
            Ok(_) => StoreError::Stale {
                what: what.to_owned(),
                store: self.location.to_string(),
                expected,
            },
            Err(e) => self.db_err(what, e),
        }
    }

    /// Deletes a user (and its memberships), stores the identities it
    /// changes and appends the audit records, in one transaction.
    pub async fn scim_delete(
        &self,
        kind: ResourceKind,
        id: &str,
        expected_version: i64,
        identities: &[Identity],
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError> {
        let what = format!("deleting SCIM {} {id}", kind.name());
        let table = match kind {
            ResourceKind::User => "scim_users",
            ResourceKind::Group => "scim_groups",
        };
        let mut tx = self.begin_write(&what).await?;
        sqlx::query("DELETE FROM scim_group_members WHERE member_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        let sql = match kind {
            ResourceKind::User => "DELETE FROM scim_users WHERE id = $1 AND version = $2",
            ResourceKind::Group => "DELETE FROM scim_groups WHERE id = $1 AND version = $2",
        };
        let done = sqlx::query(sql)
            .bind(id)
            .bind(expected_version)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        if done.rows_affected() == 0 {
            return Err(self
                .missing_or_stale(&mut tx, table, id, expected_version, &what)
                .await);
        }
        self.upsert_identities_tx(&mut tx, identities).await?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await
    }

    /// The members a group has now.
    pub async fn scim_members(
        &self,
        group: &str,
    ) -> Result<BTreeSet<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT member_id, member_type FROM scim_group_members WHERE group_id = $1",
        )
        .bind(group)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(format!("reading the members of SCIM group {group}"), e))?;
        rows.iter()
            .map(|r| {
                Ok((
                    self.col::<String>(r, "scim_group_members", "member_id", group)?,
                    self.col::<String>(r, "scim_group_members", "member_type", group)?,
                ))
            })
            .collect()
    }

    /// Creates or updates a group; members are added and removed as
    /// differences from what is stored. Stores the identities the change
    /// affects and appends the audit records, in one transaction.
    pub async fn scim_save_group(
        &self,
        w: &GroupWrite<'_>,
        identities: &[Identity],
        audit: Vec<AuditEvent>,
    ) -> Result<i64, StoreError> {
        let what = format!("saving SCIM group {}", w.id);
        let mut stored = w.resource.clone();
        if let Value::Object(o) = &mut stored {
            o.remove("members");
        }
        let name = text_of(&stored, "displayName").unwrap_or_default();
        let now = micros(w.now);
        let mut tx = self.begin_write(&what).await?;
        let (version, before) = match w.expected_version {
            None => {
                sqlx::query(
                    "INSERT INTO scim_groups (id, display_name, display_name_lower, external_id, version, created, modified, resource) \
                     VALUES ($1, $2, $3, $4, 1, $5, $5, $6)",
                )
                .bind(w.id)
                .bind(name.as_str())
                .bind(name.to_lowercase())
                .bind(text_of(&stored, "externalId"))
                .bind(now)
                .bind(stored.to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&what, e))?;
                (1, BTreeSet::new())
            }
            Some(expected) => {
                let done = sqlx::query(
                    "UPDATE scim_groups SET display_name = $1, display_name_lower = $2, external_id = $3, \
                     version = version + 1, modified = $4, resource = $5 WHERE id = $6 AND version = $7",
                )
                .bind(name.as_str())
                .bind(name.to_lowercase())
                .bind(text_of(&stored, "externalId"))
                .bind(now)
                .bind(stored.to_string())
                .bind(w.id)
                .bind(expected)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&what, e))?;
                if done.rows_affected() == 0 {
                    return Err(self
                        .missing_or_stale(&mut tx, "scim_groups", w.id, expected, &what)
                        .await);
                }
                let rows = sqlx::query(
                    "SELECT member_id, member_type FROM scim_group_members WHERE group_id = $1",
                )
                .bind(w.id)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.db_err(&what, e))?;
                let mut before = BTreeSet::new();
                for r in &rows {
                    before.insert((
                        self.col::<String>(r, "scim_group_members", "member_id", w.id)?,
                        self.col::<String>(r, "scim_group_members", "member_type", w.id)?,
                    ));
                }
                (expected + 1, before)
            }
        };
        let removed: Vec<&(String, String)> = before.difference(w.members).collect();
        let added: Vec<&(String, String)> = w.members.difference(&before).collect();
        if !removed.is_empty() {
            crate::sql::values_chunks(
                &mut tx,
                self.dialect,
                "DELETE FROM scim_group_members WHERE (group_id, member_id) IN (",
                2,
                ")",
                &removed,
                |q, (m, _)| q.bind(w.id).bind(m.clone()),
            )
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        if !added.is_empty() {
            crate::sql::values_chunks(
                &mut tx,
                self.dialect,
                "INSERT INTO scim_group_members (group_id, member_id, member_type)",
                3,
                " ON CONFLICT (group_id, member_id) DO NOTHING",
                &added,
                |q, (m, t)| q.bind(w.id).bind(m.clone()).bind(t.clone()),
            )
            .await
            .map_err(|e| self.db_err(&what, e))?;
        }
        self.upsert_identities_tx(&mut tx, identities).await?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await?;
        Ok(version)
    }

    /// How many SCIM users were deactivated at or after `since` (the
    /// deactivation guard's window), and how many users there are.
    pub async fn scim_deactivations_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM scim_users WHERE deactivated_at >= $1")
                .bind(micros(since))
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.db_err("counting recent SCIM deactivations", e))?;
        let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scim_users")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db_err("counting SCIM users", e))?;
        Ok((
            u64::try_from(n).unwrap_or(0),
            u64::try_from(all).unwrap_or(0),
        ))
    }
}

/// An opaque cursor: the creation time and id of the last resource of a page.
fn encode_cursor(created: i64, id: &str) -> String {
    hex::encode(format!("{created}.{id}"))
}

fn decode_cursor(c: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(hex::decode(c).ok()?).ok()?;
    let (created, id) = text.split_once('.')?;
    Some((created.parse().ok()?, id.to_owned()))
}

impl Store {
    /// Allows `allowed` more SCIM deactivations than the guard's limit until
    /// `until`, with its audit record, in one transaction.
    pub async fn scim_allow_deactivations(
        &self,
        allowed: u64,
        until: DateTime<Utc>,
        actor: &str,
        now: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError> {
        let what = "recording a SCIM guard override";
        let mut tx = self.begin_write(what).await?;
        let next: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM scim_guard_allowances")
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.db_err(what, e))?;
        sqlx::query(
            "INSERT INTO scim_guard_allowances (id, allowed, until_at, actor, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(next)
        .bind(i64::try_from(allowed).unwrap_or(i64::MAX))
        .bind(micros(until))
        .bind(actor)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(what, e))?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, what).await
    }

    /// How many deactivations beyond the guard's limit operators allow at `now`.
    pub async fn scim_deactivation_allowance(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(allowed), 0) FROM scim_guard_allowances WHERE until_at > $1",
        )
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err("reading SCIM guard overrides", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
