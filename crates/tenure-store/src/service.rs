//! What the long-running service keeps between runs: the next run of each
//! schedule, and each system's health (consecutive failures, quarantine).

use crate::StoreError;
use crate::sql::{from_micros, micros, to_u64};
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tenure_core::SystemId;

/// One system's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemHealth {
    /// The system.
    pub system: SystemId,
    /// Batches that failed in a row (0 after any success).
    pub failures: u64,
    /// Since when it is quarantined (`None`: it is not).
    pub quarantined_since: Option<DateTime<Utc>>,
    /// While quarantined: when it is tried again.
    pub retry_at: Option<DateTime<Utc>>,
    /// The last failure's message.
    pub last_error: Option<String>,
}

impl SystemHealth {
    /// A healthy system.
    pub fn healthy(system: SystemId) -> SystemHealth {
        SystemHealth {
            system,
            failures: 0,
            quarantined_since: None,
            retry_at: None,
            last_error: None,
        }
    }
}

impl Store {
    /// The next run of a schedule, if one was recorded.
    pub async fn schedule_next(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT next_run FROM schedules WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(format!("reading schedule {name}"), e))?;
        Ok(v.and_then(from_micros))
    }

    /// Records a schedule's next run (and, after a run, when it ran and how it went).
    pub async fn set_schedule(
        &self,
        name: &str,
        next_run: DateTime<Utc>,
        ran: Option<(DateTime<Utc>, &str)>,
    ) -> Result<(), StoreError> {
        let what = format!("recording schedule {name}");
        let mut tx = self.begin_write(&what).await?;
        sqlx::query(
            "INSERT INTO schedules (name, next_run, last_run, last_outcome) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET next_run = excluded.next_run, \
             last_run = COALESCE(excluded.last_run, schedules.last_run), \
             last_outcome = COALESCE(excluded.last_outcome, schedules.last_outcome)",
        )
        .bind(name)
        .bind(micros(next_run))
        .bind(ran.map(|(t, _)| micros(t)))
        .bind(ran.map(|(_, o)| o))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await
    }

    /// Every system's recorded health (systems never recorded are healthy).
    pub async fn system_health(&self) -> Result<Vec<SystemHealth>, StoreError> {
        const T: &str = "system_health";
        let rows = sqlx::query(
            "SELECT system, failures, quarantined_since, retry_at, last_error \
             FROM system_health ORDER BY system",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err("reading system health", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let system: String = self.col(row, T, "system", "?")?;
            let key = system.clone();
            let failures: i64 = self.col(row, T, "failures", &key)?;
            let since: Option<i64> = self.col(row, T, "quarantined_since", &key)?;
            let retry: Option<i64> = self.col(row, T, "retry_at", &key)?;
            out.push(SystemHealth {
                system: SystemId::new(system).map_err(|e| self.corrupt(T, "system", &key, e))?,
                failures: to_u64(failures),
                quarantined_since: since.and_then(from_micros),
                retry_at: retry.and_then(from_micros),
                last_error: self.col(row, T, "last_error", &key)?,
            });
        }
        Ok(out)
    }

    /// Stores one system's health, and audit events with it.
    pub async fn set_system_health(
        &self,
        h: &SystemHealth,
        audit: Vec<tenure_core::audit::AuditEvent>,
    ) -> Result<(), StoreError> {
        let what = format!("recording the health of system {}", h.system);
        let mut tx = self.begin_write(&what).await?;
        sqlx::query(
            "INSERT INTO system_health (system, failures, quarantined_since, retry_at, last_error) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (system) DO UPDATE SET \
             failures = excluded.failures, quarantined_since = excluded.quarantined_since, \
             retry_at = excluded.retry_at, last_error = excluded.last_error",
        )
        .bind(h.system.as_str())
        .bind(i64::try_from(h.failures).unwrap_or(i64::MAX))
        .bind(h.quarantined_since.map(micros))
        .bind(h.retry_at.map(micros))
        .bind(h.last_error.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.append_audit_tx(&mut tx, audit).await?;
        self.commit(tx, &what).await
    }
}
