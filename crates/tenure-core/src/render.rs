//! Plans as text, the way `tenure plan` prints them: grouped by system, then by
//! identity, one line per operation with its reason. Deterministic, so it can be
//! snapshot-tested and diffed.

use crate::plan::{Action, Finding, Plan};
use std::fmt::Write;

/// Renders a plan for people.
pub fn plan_text(plan: &Plan) -> String {
    let mut s = String::new();
    let systems: std::collections::BTreeSet<_> =
        plan.operations.iter().map(|o| &o.system).collect();
    let _ = writeln!(
        s,
        "Plan {} — {} operation{} on {} system{} (evaluated for {})",
        &plan.fingerprint.get(..12).unwrap_or(&plan.fingerprint),
        plan.operations.len(),
        if plan.operations.len() == 1 { "" } else { "s" },
        systems.len(),
        if systems.len() == 1 { "" } else { "s" },
        plan.today
    );
    if plan.operations.is_empty() {
        let _ = writeln!(s, "\nNothing to do: every system matches policy.");
    }
    let mut current_system = None;
    let mut current_identity: Option<Option<&crate::ids::IdentityId>> = None;
    for op in &plan.operations {
        if current_system != Some(&op.system) {
            current_system = Some(&op.system);
            current_identity = None;
            let name = plan
                .system_names
                .get(&op.system)
                .map(String::as_str)
                .unwrap_or("");
            let _ = writeln!(s);
            if name.is_empty() || name == op.system.as_str() {
                let _ = writeln!(s, "system {}", op.system);
            } else {
                let _ = writeln!(s, "system {} ({name})", op.system);
            }
        }
        if current_identity != Some(op.identity.as_ref()) {
            current_identity = Some(op.identity.as_ref());
            match &op.identity {
                Some(id) => match plan.labels.get(id) {
                    Some(label) => {
                        let _ = writeln!(s, "  {id} {label}");
                    }
                    None => {
                        let _ = writeln!(s, "  {id}");
                    }
                },
                None => {
                    let _ = writeln!(s, "  (no identity)");
                }
            }
        }
        let why: Vec<String> = op.reasons.iter().map(ToString::to_string).collect();
        let why = why.join("; ");
        let a = &op.account;
        match &op.action {
            Action::CreateAccount { attributes } => {
                let _ = writeln!(s, "    + create account {a}  [{why}]");
                for (k, v) in attributes {
                    let _ = writeln!(s, "        {k} = {v:?}");
                }
            }
            Action::EnableAccount => {
                let _ = writeln!(s, "    + enable account {a}  [{why}]");
            }
            Action::UpdateAccount { changes } => {
                let _ = writeln!(s, "    ~ update account {a}  [{why}]");
                for (k, c) in changes {
                    match &c.before {
                        Some(b) => {
                            let _ = writeln!(s, "        {k}: {b:?} → {:?}", c.after);
                        }
                        None => {
                            let _ = writeln!(s, "        {k}: (unset) → {:?}", c.after);
                        }
                    }
                }
            }
            Action::AddMembership { entitlement } => {
                let _ = writeln!(s, "    + add {a} to {entitlement}  [{why}]");
            }
            Action::DisableAccount => {
                let _ = writeln!(s, "    - disable account {a}  [{why}]");
            }
            Action::RemoveMembership { entitlement } => {
                let _ = writeln!(s, "    - remove {a} from {entitlement}  [{why}]");
            }
            Action::ArchiveAccount { to } => match to {
                Some(to) => {
                    let _ = writeln!(
                        s,
                        "    - archive account {a}'s data to account {to}  [{why}]"
                    );
                }
                None => {
                    let _ = writeln!(s, "    - archive account {a}'s data  [{why}]");
                }
            },
            Action::DeleteAccount => {
                let _ = writeln!(s, "    - delete account {a}  [{why}]");
            }
        }
    }
    if !plan.findings.is_empty() {
        let _ = writeln!(
            s,
            "\nFindings (nothing is done about these unless policy says so):"
        );
        for f in &plan.findings {
            let _ = writeln!(s, "  {}", finding_text(f));
        }
    }
    if !plan.operations.is_empty() {
        let _ = writeln!(s, "\nSummary: {}", plan.counts_text());
    }
    s
}

/// One finding as a line of text.
pub fn finding_text(f: &Finding) -> String {
    match f {
        Finding::Orphan { system, account } => {
            format!("{system}: orphaned account {account} (no identity justifies it)")
        }
        Finding::Ambiguous {
            system,
            account,
            identities,
        } => {
            let ids: Vec<String> = identities.iter().map(ToString::to_string).collect();
            format!(
                "{system}: account {account} matches several identities ({}); not linked",
                ids.join(", ")
            )
        }
        Finding::KeyConflict {
            system,
            account,
            wanted_by,
            held_by,
        } => {
            format!(
                "{system}: {wanted_by} needs account {account}, which belongs to {held_by}; not created"
            )
        }
        Finding::Unsupported { system, message } => format!("{system}: {message}"),
        Finding::ArchiveWaiting {
            system,
            identity,
            account,
            why,
        } => format!("{system}: {identity}'s data (account {account}) is not archived: {why}"),
        Finding::AlreadyQueued {
            system,
            account,
            action,
        } => {
            format!(
                "{system}: {} of {account} is already queued (see `tenure queue`)",
                action.replace('_', " ")
            )
        }
        Finding::EvaluationFailed { identity, message } => {
            format!("{identity}: policy evaluation failed, access left unchanged: {message}")
        }
    }
}
