//! `tenure token create|list|revoke`: bearer tokens for `tenure serve`.
//!
//! The secret is printed once, on creation, and only its SHA-256 is stored.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use tenure_store::Store;

/// The scopes a token may hold.
pub const KNOWN_SCOPES: &[&str] = &["scim:read", "scim:write", "suspend"];

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown only this once).
    Create {
        /// A unique name (the audit log's actor is `token:NAME`).
        #[arg(long)]
        name: String,
        /// A scope (repeat for several): scim:read, scim:write, suspend (the emergency suspend API).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires: Option<u32>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by name.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Runs a token command.
pub async fn run(database: &str, now: DateTime<Utc>, cmd: &TokenCommand) -> Result<()> {
    let store = Store::open(database).await?;
    match cmd {
        TokenCommand::Create {
            name,
            scopes,
            expires,
        } => {
            if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                bail!("--name {name:?}: a token name is 1 to 100 printable characters");
            }
            for s in scopes {
                if !KNOWN_SCOPES.contains(&s.as_str()) {
                    bail!(
                        "--scope {s:?} is not a known scope (known: {})",
                        KNOWN_SCOPES.join(", ")
                    );
                }
            }
            let expires_at = expires.map(|d| now + chrono::Duration::days(i64::from(d)));
            let (token, secret) = match store.create_token(name, scopes, expires_at, now).await {
                Ok(t) => t,
                Err(e) if e.is_conflict() => bail!("a token named {name:?} exists already"),
                Err(e) => return Err(e).context("creating the token"),
            };
            println!("{secret}");
            eprintln!(
                "token {:?} created with scopes {}{}; the secret above is shown only once",
                token.name,
                token.scopes.join(", "),
                expires_at
                    .map(|e| format!(", expires {}", when(Some(e))))
                    .unwrap_or_default()
            );
        }
        TokenCommand::List => {
            println!(
                "{:<24} {:<24} {:<17} {:<17} {:<17} status",
                "name", "scopes", "created", "expires", "last used"
            );
            for t in store.tokens().await? {
                let status = if t.revoked_at.is_some() {
                    "revoked"
                } else if !t.valid_at(now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<24} {:<24} {:<17} {:<17} {:<17} {status}",
                    t.name,
                    t.scopes.join(","),
                    when(Some(t.created_at)),
                    when(t.expires_at),
                    when(t.last_used_at)
                );
            }
        }
        TokenCommand::Revoke { name } => {
            if !store.revoke_token(name, now).await? {
                bail!("no active token named {name:?}");
            }
            println!("token {name:?} revoked");
        }
    }
    store.close().await;
    Ok(())
}
