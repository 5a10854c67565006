//! The hash-chained audit log.
//!
//! Appending reads and locks the single `audit_head` row (its `seq` and
//! `hash`), chains the new events after it with
//! [`tenure_core::audit::seal`], inserts the records and moves the head, all
//! in the caller's transaction; so appenders in several processes serialise
//! on the head row and the chain never forks. Records are never updated or
//! deleted by the store. Verification is [`tenure_core::audit::verify`] over
//! [`Store::audit_page`]: this module only stores and reads.

use crate::StoreError;
use crate::sql::{from_micros, micros, to_i64, to_u64, values_chunks};
use crate::store::{Dialect, Store};
use sqlx::AnyConnection;
use tenure_core::audit::{AuditEvent, AuditRecord, seal};

impl Store {
    /// Appends events, chained after the current head, in one transaction.
    /// Concurrent appenders (even in other processes sharing a PostgreSQL
    /// database) are serialised on the head row.
    pub async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let what = format!("appending {} audit records", events.len());
        let mut tx = self.begin_write(&what).await?;
        self.append_audit_tx(&mut tx, events).await?;
        self.commit(tx, &what).await
    }

    /// Records in sequence order, at most `limit` of them, starting after
    /// `after_seq` (exclusive; 0 for the beginning).
    pub async fn audit_page(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, subject, reason, detail, prev_hash, hash \
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_i64(after_seq))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(format!("reading audit records after {after_seq}"), e))?;
        self.decode_audit(&rows)
    }

    /// Every audit record about one subject (`identity:E1042`), in order.
    pub async fn audit_of(&self, subject: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, subject, reason, detail, prev_hash, hash \
             FROM audit_log WHERE subject = $1 ORDER BY seq",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(format!("reading the audit records of {subject}"), e))?;
        self.decode_audit(&rows)
    }

    fn decode_audit(&self, rows: &[sqlx::any::AnyRow]) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            const T: &str = "audit_log";
            let seq: i64 = self.col(row, T, "seq", "?")?;
            let at: i64 = self.col(row, T, "at", seq)?;
            out.push(AuditRecord {
                seq: to_u64(seq),
                event: AuditEvent {
                    at: from_micros(at).ok_or_else(|| {
                        self.bad_value(T, "at", seq, format!("timestamp {at} out of range"))
                    })?,
                    actor: self.col(row, T, "actor", seq)?,
                    action: self.col(row, T, "action", seq)?,
                    subject: self.col(row, T, "subject", seq)?,
                    reason: self.col(row, T, "reason", seq)?,
                    detail: self.col(row, T, "detail", seq)?,
                },
                prev_hash: self.col(row, T, "prev_hash", seq)?,
                hash: self.col(row, T, "hash", seq)?,
            });
        }
        Ok(out)
    }

    /// Appends `events` inside the caller's transaction: locks the head row,
    /// seals the events after it, inserts them and moves the head. Does
    /// nothing (and locks nothing) when there are no events.
    pub(crate) async fn append_audit_tx(
        &self,
        conn: &mut AnyConnection,
        events: Vec<AuditEvent>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let what = format!("appending {} audit records", events.len());
        let head_sql = match self.dialect {
            // The transaction already holds SQLite's write lock (BEGIN IMMEDIATE).
            Dialect::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
            Dialect::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        };
        let Some((head_seq, head_hash)): Option<(i64, String)> = sqlx::query_as(head_sql)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.db_err(&what, e))?
        else {
            return Err(self.bad_value("audit_head", "seq", 1, "the head row is missing"));
        };
        let records = seal(to_u64(head_seq), &head_hash, events);
        values_chunks(
            &mut *conn,
            self.dialect,
            "INSERT INTO audit_log (seq, at, actor, action, subject, reason, detail, prev_hash, hash)",
            9,
            "",
            &records,
            |q, r| {
                q.bind(to_i64(r.seq))
                    .bind(micros(r.event.at))
                    .bind(r.event.actor.as_str())
                    .bind(r.event.action.as_str())
                    .bind(r.event.subject.as_str())
                    .bind(r.event.reason.as_str())
                    .bind(r.event.detail.as_str())
                    .bind(r.prev_hash.as_str())
                    .bind(r.hash.as_str())
            },
        )
        .await
        .map_err(|e| self.db_err(&what, e))?;
        if let Some(last) = records.last() {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(to_i64(last.seq))
                .bind(last.hash.as_str())
                .execute(&mut *conn)
                .await
                .map_err(|e| self.db_err(&what, e))?;
        }
        Ok(())
    }
}
