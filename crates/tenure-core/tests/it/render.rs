//! `tenure plan` output, snapshot-tested.

use crate::common::*;
use chrono::Duration;
use std::collections::BTreeMap;
use tenure_core::plan::{Diff, Finding, OrphanPolicy, PLAN_FORMAT, Plan, fingerprint};
use tenure_core::render::{finding_text, plan_text};
use tenure_core::{Identity, IdentityId};

fn label(i: &Identity) -> String {
    format!(
        "{} {}",
        i.record.attribute("given_name"),
        i.record.attribute("family_name")
    )
}

fn make_plan(w: &World, people: &[Identity], d: Diff, now: chrono::DateTime<chrono::Utc>) -> Plan {
    let labels: BTreeMap<IdentityId, String> = d
        .operations
        .iter()
        .filter_map(|o| o.identity.as_ref())
        .filter_map(|id| people.iter().find(|p| p.id() == id))
        .map(|p| (p.id().clone(), label(p)))
        .collect();
    let system_names = w
        .infos
        .keys()
        .map(|s| {
            (
                s.clone(),
                w.policy.system_name(s).unwrap_or_default().to_owned(),
            )
        })
        .collect();
    Plan {
        format: PLAN_FORMAT,
        fingerprint: fingerprint(&[("operations", &d.operations)]),
        made_at: now,
        today: now.date_naive(),
        operations: d.operations,
        findings: d.findings,
        labels,
        system_names,
        changed_only: false,
        identities: Vec::new(),
        superseded: Vec::new(),
    }
}

/// A joiner, a mover, a staged leaver on day 1, a contractor leaving, an
/// orphan disabled by policy and one only reported.
fn joiner_mover_leaver() -> Plan {
    let mut w = World::new();
    w.apply(
        &[
            ada().build(),
            grace().build(),
            linus().build(),
            ken().build(),
        ],
        now(),
    );
    w.actual
        .systems
        .get_mut(&sys("crm"))
        .unwrap()
        .accounts
        .insert(
            key("temp-admin"),
            account("temp-admin", &[], true, &["reports"]),
        );
    w.actual
        .systems
        .get_mut(&sys("wiki"))
        .unwrap()
        .accounts
        .insert(
            key("guest"),
            account("guest", &[("title", "Guest")], true, &["readers"]),
        );
    w.infos.get_mut(&sys("wiki")).unwrap().orphans = OrphanPolicy::Disable;

    let tomorrow = now() + Duration::days(1);
    let people = [
        ada().build(),
        grace()
            .attr("department", "Sales")
            .attr("title", "Account Executive")
            .build(),
        linus().ends("2026-03-02").build(),
        ken().ends("2026-03-03").build(),
        margaret().build(),
    ];
    let mut d = w.plan(&people, tomorrow);
    d.findings.push(Finding::Ambiguous {
        system: sys("crm"),
        account: key("team"),
        identities: vec![iid("E1001"), iid("E1004")],
    });
    d.findings.push(Finding::EvaluationFailed {
        identity: iid("E1099"),
        message: "identity E1099: rule partners (partners.toml:4:8): no such key".into(),
    });
    d.findings.sort();
    make_plan(&w, &people, d, tomorrow)
}

#[test]
fn a_joiner_mover_leaver_plan() {
    let plan = joiner_mover_leaver();
    insta::assert_snapshot!("joiner_mover_leaver", plan_text(&plan));
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(
        plan_text(&joiner_mover_leaver()),
        plan_text(&joiner_mover_leaver())
    );
}

#[test]
fn a_plan_with_nothing_to_do() {
    let mut w = World::new();
    let people = [ada().build()];
    w.apply(&people, now());
    let d = w.plan(&people, now());
    let plan = make_plan(&w, &people, d, now());
    insta::assert_snapshot!("nothing_to_do", plan_text(&plan));
}

#[test]
fn a_single_operation_is_singular() {
    let mut w = World::new();
    w.apply(&[ken().build()], now());
    let people = [ken().ends("2026-03-02").build()];
    let d = w.plan(&people, now());
    let text = plan_text(&make_plan(&w, &people, d, now()));
    assert!(
        text.contains("— 1 operation on 1 system (evaluated for 2026-03-02)"),
        "{text}"
    );
    assert!(
        text.contains("system wiki (Wiki)\n  C2001 Ken Thompson\n    - delete account ken"),
        "{text}"
    );
    assert!(text.ends_with("Summary: 1 delete\n"), "{text}");
}

#[test]
fn every_finding_has_a_line() {
    let lines = [
        Finding::Orphan {
            system: sys("crm"),
            account: key("x"),
        },
        Finding::KeyConflict {
            system: sys("wiki"),
            account: key("ada"),
            wanted_by: iid("E1005"),
            held_by: iid("E1001"),
        },
        Finding::Unsupported {
            system: sys("crm"),
            message: "cannot disable".into(),
        },
    ]
    .iter()
    .map(finding_text)
    .collect::<Vec<_>>();
    assert_eq!(
        lines,
        [
            "crm: orphaned account x (no identity justifies it)",
            "wiki: E1005 needs account ada, which belongs to E1001; not created",
            "crm: cannot disable",
        ]
    );
}
