//! The trace of one person's evaluation (`tenure plan --identity`): its
//! content checked against `evaluate`, and its rendering snapshot-tested.

use crate::common::*;
use tenure_core::plan::{Reason, StepAction};
use tenure_core::render::trace_text;
use tenure_core::state::Desired;
use tenure_core::{LifecycleStatus, RoleId};

fn role(s: &str) -> RoleId {
    RoleId::new(s).unwrap()
}

/// A sales manager: three of four rules match, nested roles are reached by
/// every path, and the systems' part is exactly what `evaluate` gives.
#[test]
fn trace_of_a_sales_manager_follows_rules_through_nested_roles() {
    let w = World::new();
    let m = margaret().manager("E1001").build();
    let g = grant(
        "E1004",
        "engineer",
        "request #12 approved by E1001",
        None,
        Some("2026-04-01T00:00:00Z"),
    );
    let t = w.policy.trace(&m, &[&g], now());
    assert_eq!(t.status, LifecycleStatus::Active);
    assert!(t.rules_evaluated);
    let verdicts: Vec<(&str, Option<bool>)> =
        t.rules.iter().map(|r| (r.id.as_str(), r.matched)).collect();
    assert_eq!(
        verdicts,
        vec![
            ("everyone", Some(true)),
            ("sales", Some(true)),
            ("sales-managers", Some(true)),
            ("engineering", Some(false)),
        ]
    );
    let staff = t.roles.iter().find(|r| r.role == role("staff")).unwrap();
    assert!(staff.via.contains(&Reason::Birthright {
        rule: tenure_core::RuleId::new("sales-managers").unwrap(),
        roles: vec![role("sales-manager"), role("sales-rep"), role("staff")],
    }));
    assert!(staff.via.contains(&Reason::Grant {
        reason: "request #12 approved by E1001".into(),
        roles: vec![role("engineer"), role("staff")],
    }));
    let desired = w.policy.evaluate(&m, &[&g], now()).unwrap();
    for s in &t.systems {
        assert_eq!(s.desired, *desired.on(&s.system), "{}", s.system);
    }
    assert!(t.deprovisioning.is_none());
    assert!(t.error.is_none());
    insta::assert_snapshot!("sales_manager", trace_text(&t));
}

/// A leaver on day 2 of a staged policy: rules are not evaluated, the
/// schedule says which steps are due, and a legal hold keeps the accounts.
#[test]
fn trace_of_a_leaver_shows_the_step_in_force_and_a_legal_hold() {
    let w = World::new();
    let ada = ada().ends("2026-02-28").build();
    let mut t = w.policy.trace(&ada, &[], now());
    assert_eq!(t.status, LifecycleStatus::Leaver);
    assert!(!t.rules_evaluated);
    assert!(t.rules.iter().all(|r| r.matched.is_none()));
    assert!(t.roles.is_empty());
    let d = t.deprovisioning.as_ref().unwrap();
    assert_eq!(d.policy.as_str(), "staged");
    let due: Vec<(StepAction, bool)> = d.steps.iter().map(|s| (s.action, s.due)).collect();
    assert_eq!(
        due,
        vec![
            (StepAction::Disable, true),
            (StepAction::RemoveMemberships, true),
            (StepAction::Delete, false),
        ]
    );
    for s in &t.systems {
        assert!(
            matches!(
                s.desired,
                Desired::Restricted {
                    keep_entitlements: false,
                    ..
                }
            ),
            "{:?}",
            s.desired
        );
    }
    // A contractor's immediate policy deletes; a legal hold keeps the account.
    let ken = ken().ends("2026-03-01").build();
    let mut k = w.policy.trace(&ken, &[], now());
    assert!(
        k.systems
            .iter()
            .all(|s| matches!(s.desired, Desired::Absent { .. }))
    );
    k.hold();
    assert!(k.systems.iter().all(|s| matches!(
        &s.desired,
        Desired::Restricted { reasons, .. } if reasons.contains(&Reason::LegalHold)
    )));
    t.hold();
    insta::assert_snapshot!("leaver_on_hold", trace_text(&t));
    insta::assert_snapshot!("contractor_deleted_on_hold", trace_text(&k));
}

/// A rule that fails for one person is named with its error; the person's
/// access is left as it is.
#[test]
fn trace_names_a_rule_that_fails() {
    let files = files_with(&[(
        "zz.toml",
        r#"
[[rule]]
id = "broken"
when = 'identity.title'
roles = ["staff"]
"#,
    )]);
    let policy = compile(files).unwrap();
    let t = policy.trace(&grace().build(), &[], now());
    let broken = t.rules.iter().find(|r| r.id.as_str() == "broken").unwrap();
    assert_eq!(broken.matched, None);
    assert!(
        broken.error.as_deref().unwrap().contains("true or false"),
        "{broken:?}"
    );
    assert!(t.error.is_some());
    assert!(t.systems.is_empty());
    assert!(trace_text(&t).contains("evaluation FAILED"));
}

/// Someone who has not started yet, and someone suspended.
#[test]
fn trace_of_pending_and_suspended_people_says_why_nothing_is_given() {
    let w = World::new();
    let p = linus().starts("2026-04-01").build();
    let t = w.policy.trace(&p, &[], now());
    assert_eq!(t.status, LifecycleStatus::Pending);
    assert!(t.status_why.contains("2026-04-01"), "{}", t.status_why);
    assert!(t.systems.iter().all(|s| matches!(
        &s.desired,
        Desired::Restricted { reasons, .. } if reasons == &vec![Reason::NotStarted]
    )));
    let s = w.policy.trace(&grace().suspended().build(), &[], now());
    assert_eq!(s.status, LifecycleStatus::Suspended);
    assert!(s.systems.iter().all(|x| matches!(
        &x.desired,
        Desired::Restricted {
            keep_entitlements: true,
            ..
        }
    )));
}
