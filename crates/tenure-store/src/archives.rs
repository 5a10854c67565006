//! Accounts whose leaver's data was archived through a webhook (the
//! `archive` deprovisioning step on a system with `archive_webhook`). A
//! webhook's receiver cannot be read back, so the store keeps the fact that
//! makes the next plan converge; it goes when the account is enabled or
//! created again (a rehire: a later leave archives again) or deleted.

use crate::StoreError;
use crate::sql::micros;
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use tenure_core::{AccountKey, SystemId};

impl Store {
    /// Records that `account`'s data on `system` is archived.
    pub async fn record_archived(
        &self,
        system: &SystemId,
        account: &AccountKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let what = format!("recording the archive of {account} on {system}");
        let mut tx = self.begin_write(&what).await?;
        sqlx::query(
            "INSERT INTO archived_accounts (system, account, at) VALUES ($1, $2, $3) \
             ON CONFLICT (system, account) DO UPDATE SET at = excluded.at",
        )
        .bind(system.as_str())
        .bind(account.as_str())
        .bind(micros(at))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await
    }

    /// Forgets that `account`'s data on `system` is archived (the account is
    /// in use again, or gone).
    pub async fn clear_archived(
        &self,
        system: &SystemId,
        account: &AccountKey,
    ) -> Result<(), StoreError> {
        let what = format!("forgetting the archive of {account} on {system}");
        let mut tx = self.begin_write(&what).await?;
        sqlx::query("DELETE FROM archived_accounts WHERE system = $1 AND account = $2")
            .bind(system.as_str())
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await
    }

    /// The accounts of `system` whose data is archived.
    pub async fn archived_accounts(
        &self,
        system: &SystemId,
    ) -> Result<BTreeSet<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT account FROM archived_accounts WHERE system = $1")
                .bind(system.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err("reading archived accounts", e))?;
        Ok(rows.into_iter().map(|(a,)| a).collect())
    }
}
