//! API tokens: bearer secrets for Tenure's services, with scopes.
//!
//! A secret is 32 random bytes (256 bits) shown once, as `tnr_` and 64 hex
//! digits; only its SHA-256 is stored. A fast hash is right for secrets of
//! that entropy (a slow password hash such as argon2 protects low-entropy
//! passwords against guessing; nobody guesses 256 random bits), and it lets a
//! token be found by its hash with one indexed lookup. Scopes are free
//! strings (`scim:read`, `scim:write` …) so that every service shares the
//! table. Secrets are never logged and never stored.

use crate::StoreError;
use crate::sql::{from_micros, micros};
use crate::store::Store;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The prefix of every secret (recognisable in logs and by secret scanners).
pub const TOKEN_PREFIX: &str = "tnr_";

/// A token as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Internal id.
    pub id: String,
    /// Its unique name (the audit log's actor is `token:<name>`).
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// Whether it may be used at `now`.
    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// The stored hash of a secret.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

const COLUMNS: &str = "id, name, scopes, created_at, expires_at, revoked_at, last_used_at";

impl Store {
    fn token_row(&self, row: &sqlx::any::AnyRow) -> Result<ApiToken, StoreError> {
        const T: &str = "api_tokens";
        let id: String = self.col(row, T, "id", "?")?;
        let ts = |c: &'static str| -> Result<Option<DateTime<Utc>>, StoreError> {
            let v: Option<i64> = self.col(row, T, c, &id)?;
            v.map(|v| {
                from_micros(v).ok_or_else(|| self.bad_value(T, c, &id, "timestamp out of range"))
            })
            .transpose()
        };
        Ok(ApiToken {
            name: self.col(row, T, "name", &id)?,
            scopes: self.json_col(row, T, "scopes", &id)?,
            created_at: ts("created_at")?
                .ok_or_else(|| self.bad_value(T, "created_at", &id, "missing"))?,
            expires_at: ts("expires_at")?,
            revoked_at: ts("revoked_at")?,
            last_used_at: ts("last_used_at")?,
            id,
        })
    }

    /// Creates a token and returns it with its secret (the only time the
    /// secret exists outside the caller). A taken name is a
    /// [`StoreError::Conflict`].
    pub async fn create_token(
        &self,
        name: &str,
        scopes: &[String],
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(ApiToken, String), StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| self.invalid(format!("no randomness for a token secret: {e}")))?;
        let secret = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
        let mut idb = [0u8; 16];
        getrandom::fill(&mut idb)
            .map_err(|e| self.invalid(format!("no randomness for a token id: {e}")))?;
        let id = hex::encode(idb);
        let scopes_json =
            serde_json::to_string(scopes).map_err(|e| self.encode_err("token scopes", e))?;
        let what = format!("creating token {name:?}");
        let mut tx = self.begin_write(&what).await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, scopes, secret_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(scopes_json)
        .bind(secret_hash(&secret))
        .bind(micros(now))
        .bind(expires_at.map(micros))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await?;
        Ok((
            ApiToken {
                id,
                name: name.to_owned(),
                scopes: scopes.to_vec(),
                created_at: now,
                expires_at,
                revoked_at: None,
                last_used_at: None,
            },
            secret,
        ))
    }

    /// Every token, by name.
    pub async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(AssertSql::s(&format!(
            "SELECT {COLUMNS} FROM api_tokens ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err("listing tokens", e))?;
        rows.iter().map(|r| self.token_row(r)).collect()
    }

    /// Revokes a token by name; false if no such token (or already revoked).
    pub async fn revoke_token(&self, name: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let what = format!("revoking token {name:?}");
        let mut tx = self.begin_write(&what).await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(micros(now))
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&what, e))?;
        self.commit(tx, &what).await?;
        Ok(done.rows_affected() > 0)
    }

    /// The token a secret belongs to, if it is valid at `now`.
    pub async fn authenticate_token(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiToken>, StoreError> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(AssertSql::s(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE secret_hash = $1"
        )))
        .bind(secret_hash(secret))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err("authenticating a token", e))?;
        let Some(row) = row else { return Ok(None) };
        let token = self.token_row(&row)?;
        if !token.valid_at(now) {
            return Ok(None);
        }
        let stale = token
            .last_used_at
            .is_none_or(|t| now.signed_duration_since(t) > chrono::Duration::seconds(60));
        if stale {
            // Best effort: a busy database must not refuse a valid token.
            let done = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(micros(now))
                .bind(token.id.as_str())
                .execute(&self.pool)
                .await;
            if let Err(e) = done {
                tracing::debug!(token = %token.name, error = %e, "recording a token's last use");
            }
        }
        Ok(Some(token))
    }
}

/// Statements built from fixed text only.
struct AssertSql;

impl AssertSql {
    fn s(text: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(text.to_owned())
    }
}
