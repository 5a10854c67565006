//! `tenure grant`: access given by people (an approved request), with a
//! validity window, listed and revoked.

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use std::fmt::Write as _;
use tenure_engine::Engine;
use tenure_store::StoredGrant;

/// `tenure grant …`
#[derive(Subcommand, Debug)]
pub enum GrantCommand {
    /// Give a person a role outside the birthright rules, from a date, until a
    /// date (people who must have an end date need `--until`).
    Add {
        /// The identity (the source's person id).
        identity: String,
        /// The role (as configured).
        role: String,
        /// Why: the request or ticket that approved it (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// From when: `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time (default: now).
        #[arg(long)]
        from: Option<String>,
        /// Until when (exclusive), in the same form (default: no end).
        #[arg(long)]
        until: Option<String>,
        /// Print the grant as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List grants: those still in force or to come (all with `--all`).
    List {
        /// Only this person's.
        identity: Option<String>,
        /// Ended and revoked grants too.
        #[arg(long)]
        all: bool,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant: the next plan takes its access away.
    Revoke {
        /// The grant's number (see `tenure grant list`).
        id: i64,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

/// `2026-12-31` (midnight UTC) or an RFC 3339 time.
fn moment(what: &str, v: &str) -> Result<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .with_context(|| format!("{what} {v:?} is out of range"));
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("{what} {v:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time")
        })
}

fn window(g: &StoredGrant) -> String {
    let t = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    match (g.grant.valid_from, g.grant.valid_until) {
        (None, None) => "no end".to_owned(),
        (Some(f), None) => format!("from {}", t(f)),
        (None, Some(u)) => format!("until {}", t(u)),
        (Some(f), Some(u)) => format!("{} to {}", t(f), t(u)),
    }
}

/// Runs a `tenure grant` command.
pub async fn run(engine: &Engine, command: &GrantCommand) -> Result<()> {
    match command {
        GrantCommand::Add {
            identity,
            role,
            reason,
            from,
            until,
            json,
        } => {
            let new = tenure_engine::grants::NewGrant {
                identity: crate::parse_identity(identity)?,
                role: role.clone(),
                reason: reason.clone(),
                valid_from: from.as_deref().map(|v| moment("--from", v)).transpose()?,
                valid_until: until.as_deref().map(|v| moment("--until", v)).transpose()?,
            };
            let g = tenure_engine::grants::add_grant(engine, &engine.actor, new).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&g)?);
            } else {
                println!(
                    "Grant #{} made: {} holds role {} ({}). The next plan gives the access.",
                    g.id,
                    g.grant.identity,
                    g.grant.role,
                    window(&g)
                );
            }
        }
        GrantCommand::List {
            identity,
            all,
            json,
        } => {
            let id = identity.as_deref().map(crate::parse_identity).transpose()?;
            let now = engine.clock.now();
            let grants: Vec<StoredGrant> = engine
                .store
                .grants(id.as_ref())
                .await?
                .into_iter()
                .filter(|g| *all || g.live(now))
                .collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&grants)?);
                return Ok(());
            }
            let mut s = String::new();
            if grants.is_empty() {
                s.push_str("No grants.\n");
            }
            for g in &grants {
                let state = if let Some(at) = g.revoked_at {
                    format!(
                        "revoked {} by {}",
                        at.format("%Y-%m-%d %H:%M"),
                        g.revoked_by.as_deref().unwrap_or("?")
                    )
                } else if !g.live(now) {
                    "ended".to_owned()
                } else if g.grant.in_force(now) {
                    "active".to_owned()
                } else {
                    "pending".to_owned()
                };
                let _ = writeln!(
                    s,
                    "#{:<4} {:<12} {:<16} {:<34} {:<10} {} (by {})",
                    g.id,
                    g.grant.identity,
                    g.grant.role,
                    window(g),
                    state,
                    g.grant.reason,
                    g.created_by
                );
            }
            print!("{s}");
        }
        GrantCommand::Revoke { id, reason } => {
            let g = tenure_engine::grants::revoke_grant(engine, &engine.actor, *id, reason).await?;
            println!(
                "Grant #{} revoked: {} loses role {} at the next plan.",
                g.id, g.grant.identity, g.grant.role
            );
        }
    }
    Ok(())
}
