//! The mass-change guard: refuse an import or a plan that would deprovision an
//! unusually large share of the organisation (a truncated HR file, a broken
//! rule), unless an operator explicitly overrides it.

use crate::config::GuardConfig;
use crate::plan::{Action, Plan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// The guard's verdict on one measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardVerdict {
    /// What was counted (`identities becoming leavers`, `accounts disabled or deleted`).
    pub what: String,
    /// How many would be deprovisioned.
    pub count: u64,
    /// Out of how many.
    pub total: u64,
    /// The most allowed without an override.
    pub limit: u64,
    /// Whether the change is refused without an override.
    pub blocked: bool,
}

impl fmt::Display for GuardVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = if self.total == 0 {
            0.0
        } else {
            self.count as f64 * 100.0 / self.total as f64
        };
        write!(
            f,
            "{} of {} {} ({pct:.1}%; the limit is {})",
            self.count, self.total, self.what, self.limit
        )
    }
}

/// Applies the thresholds to one count: blocked when `count` exceeds both
/// `min_count` and `max_deprovision_percent` of `total`.
pub fn verdict(cfg: &GuardConfig, what: &str, count: u64, total: u64) -> GuardVerdict {
    let share = (total as f64 * cfg.max_deprovision_percent / 100.0).floor() as u64;
    let limit = share.max(cfg.min_count);
    GuardVerdict {
        what: what.to_owned(),
        count,
        total,
        limit,
        blocked: count > limit,
    }
}

/// The guard on a plan: distinct accounts it would disable or delete, out of
/// the accounts that exist now.
pub fn plan_verdict(cfg: &GuardConfig, plan: &Plan, existing_accounts: u64) -> GuardVerdict {
    let touched: BTreeSet<(&str, &str)> = plan
        .operations
        .iter()
        .filter(|o| matches!(o.action, Action::DisableAccount | Action::DeleteAccount))
        .map(|o| (o.system.as_str(), o.account.as_str()))
        .collect();
    verdict(
        cfg,
        "accounts disabled or deleted",
        touched.len() as u64,
        existing_accounts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_changes_pass_and_large_ones_are_blocked() {
        let cfg = GuardConfig::default(); // 10%, min 5
        assert!(
            !verdict(&cfg, "x", 5, 10).blocked,
            "at or under the minimum always passes"
        );
        assert!(verdict(&cfg, "x", 6, 10).blocked);
        assert!(!verdict(&cfg, "x", 100, 1000).blocked);
        assert!(verdict(&cfg, "x", 101, 1000).blocked);
        assert!(
            verdict(&cfg, "x", 1000, 1000).blocked,
            "a truncated file must never wipe out everyone"
        );
        let v = verdict(&cfg, "identities becoming leavers", 101, 1000);
        assert_eq!(
            v.to_string(),
            "101 of 1000 identities becoming leavers (10.1%; the limit is 100)"
        );
    }
}
