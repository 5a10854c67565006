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
    if !plan.superseded.is_empty() {
        let _ = writeln!(
            s,
            "\nQueued work this plan replaces (cancelled when it is applied: no longer what policy wants):"
        );
        for q in &plan.superseded {
            let whose = q
                .identity
                .as_ref()
                .map(|i| format!(" ({i})"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {}/{}{whose}: {}",
                q.system,
                q.account,
                q.actions.join(", ")
            );
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

fn reasons_text(reasons: &[crate::plan::Reason]) -> String {
    let r: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    r.join("; ")
}

fn moment(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Renders the trace of one person's evaluation for people: source record →
/// attributes → status → rules → roles → what each system must hold.
pub fn trace_text(t: &crate::trace::Trace) -> String {
    use crate::state::Desired;
    let mut s = String::new();
    let r = &t.record;
    let _ = writeln!(
        s,
        "Trace for {} (source {}), evaluated at {}",
        t.identity,
        t.source,
        moment(t.at)
    );
    let _ = writeln!(s, "  source record:");
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or("—".into());
    let _ = writeln!(s, "    employment_type = {}", r.employment_type.as_str());
    let _ = writeln!(
        s,
        "    manager = {}",
        r.manager
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or("—".into())
    );
    let _ = writeln!(s, "    start_date = {}", date(r.start_date));
    let _ = writeln!(s, "    end_date = {}", date(r.end_date));
    for (k, v) in &r.attributes {
        let _ = writeln!(s, "    {k} = {v:?}");
    }
    if !r.groups.is_empty() {
        let g: Vec<&str> = r.groups.iter().map(String::as_str).collect();
        let _ = writeln!(s, "    groups = {}", g.join(", "));
    }
    let _ = writeln!(s, "  status: {} ({})", t.status, t.status_why);
    if t.legal_hold {
        let _ = writeln!(
            s,
            "  legal hold: in force; nothing is deleted until it is released"
        );
    }
    if let Some(d) = &t.deprovisioning {
        let _ = writeln!(
            s,
            "  deprovisioning: policy {} from end date {}",
            d.policy,
            date(d.end_date)
        );
        for step in &d.steps {
            let _ = writeln!(
                s,
                "    {} at {} — {}",
                step.action.as_str(),
                moment(step.at),
                if step.due { "due" } else { "not yet due" }
            );
        }
    }
    let _ = writeln!(s, "  rules:");
    if !t.rules_evaluated {
        let _ = writeln!(
            s,
            "    (not evaluated: the status decides; rules apply to active people, and to leavers before their first step)"
        );
    }
    if t.rules.is_empty() {
        let _ = writeln!(s, "    (none configured)");
    }
    for rule in t.rules.iter().filter(|_| t.rules_evaluated) {
        let roles: Vec<String> = rule.roles.iter().map(ToString::to_string).collect();
        let verdict = match (&rule.matched, &rule.error) {
            (_, Some(e)) => format!("FAILED: {e}"),
            (Some(true), _) => format!("matched → {}", roles.join(", ")),
            (Some(false), _) => "no match".to_owned(),
            (None, None) => "not evaluated".to_owned(),
        };
        let _ = writeln!(s, "    {} [{}]: {verdict}", rule.id, rule.when);
    }
    if !t.grants.is_empty() {
        let _ = writeln!(s, "  grants:");
        for g in &t.grants {
            let _ = writeln!(
                s,
                "    role {} ({}): {}",
                g.role,
                g.reason,
                if g.in_force {
                    "in force"
                } else {
                    "not in force"
                }
            );
        }
    }
    let _ = writeln!(s, "  roles:");
    if t.roles.is_empty() {
        let _ = writeln!(s, "    (none)");
    }
    for role in &t.roles {
        let gives: Vec<String> = role
            .gives
            .iter()
            .map(|g| match &g.entitlement {
                Some(e) => format!("{}:{e}", g.system),
                None => format!("{} account", g.system),
            })
            .collect();
        let _ = writeln!(
            s,
            "    {}{}",
            role.role,
            if gives.is_empty() {
                String::new()
            } else {
                format!(" (gives {})", gives.join(", "))
            }
        );
        for via in &role.via {
            let _ = writeln!(s, "      via {via}");
        }
    }
    if let Some(e) = &t.error {
        let _ = writeln!(
            s,
            "  evaluation FAILED, access left exactly as it is: {} ({}): {}",
            e.what, e.location, e.message
        );
    }
    if !t.systems.is_empty() {
        let _ = writeln!(s, "  systems:");
    }
    for sys in &t.systems {
        let title = if sys.name.is_empty() || sys.name == sys.system.as_str() {
            sys.system.to_string()
        } else {
            format!("{} ({})", sys.system, sys.name)
        };
        match &sys.desired {
            Desired::Account(a) => {
                let _ = writeln!(
                    s,
                    "    {title}: account {}  [{}]",
                    a.key,
                    reasons_text(&a.reasons)
                );
                for (k, v) in &a.attributes {
                    let _ = writeln!(s, "        {k} = {v:?}");
                }
                for (e, why) in &a.entitlements {
                    let _ = writeln!(s, "        entitlement {e}  [{}]", reasons_text(why));
                }
            }
            Desired::Restricted { reasons, .. }
                if reasons.as_slice() == [crate::plan::Reason::NotJustified] =>
            {
                let _ = writeln!(
                    s,
                    "    {title}: no account: nothing justifies one (an existing one is disabled and stripped)"
                );
            }
            Desired::Restricted {
                keep_entitlements,
                reasons,
            } => {
                let _ = writeln!(
                    s,
                    "    {title}: no account to create; any existing account disabled{}  [{}]",
                    if *keep_entitlements {
                        ", entitlements kept"
                    } else {
                        " and stripped of its entitlements"
                    },
                    reasons_text(reasons)
                );
            }
            Desired::Absent { reasons } => {
                let _ = writeln!(
                    s,
                    "    {title}: any account deleted  [{}]",
                    reasons_text(reasons)
                );
            }
        }
    }
    s
}
