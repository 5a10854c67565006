//! Policy evaluation: what each identity must have, and why.

use crate::common::*;
use chrono::Duration;
use tenure_core::plan::{Reason, StepAction};
use tenure_core::policy::{DEFAULT_DEPROVISIONING, Grant};
use tenure_core::state::{Desired, DesiredAccount, DesiredIdentity};
use tenure_core::{Identity, PolicyId, RoleId, RuleId};

fn roles(r: &[&str]) -> Vec<RoleId> {
    r.iter().map(|r| RoleId::new(*r).unwrap()).collect()
}
fn birthright(rule: &str, path: &[&str]) -> Reason {
    Reason::Birthright {
        rule: RuleId::new(rule).unwrap(),
        roles: roles(path),
    }
}
fn eval(i: &Identity, grants: &[&Grant], now: chrono::DateTime<chrono::Utc>) -> DesiredIdentity {
    policy()
        .evaluate(i, grants, now)
        .unwrap_or_else(|e| panic!("{e}"))
}
fn account_on<'a>(d: &'a DesiredIdentity, system: &str) -> &'a DesiredAccount {
    match d.systems.get(&sys(system)) {
        Some(Desired::Account(a)) => a,
        other => panic!("expected an account on {system}, got {other:?}"),
    }
}
fn entitlement_names(a: &DesiredAccount) -> Vec<&str> {
    a.entitlements.keys().map(|e| e.as_str()).collect()
}
fn everywhere(d: &DesiredIdentity) -> &Desired {
    let all: Vec<&Desired> = d.systems.values().collect();
    assert_eq!(all.len(), 2, "every system must have an entry: {d:?}");
    assert_eq!(all[0], all[1]);
    all[0]
}

#[test]
fn an_active_sales_rep_gets_accounts_entitlements_and_nested_reasons() {
    let d = eval(&ada().build(), &[], now());
    let crm = account_on(&d, "crm");
    assert_eq!(crm.key.as_str(), "ada");
    assert_eq!(
        crm.attributes,
        [
            ("department", "Sales"),
            ("display_name", "Ada Lovelace"),
            ("email", "ada@example.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    );
    assert_eq!(entitlement_names(crm), ["sales-rep"]);
    assert_eq!(
        crm.entitlements[&ent("sales-rep")],
        [birthright("sales", &["sales-rep"])]
    );
    assert_eq!(crm.reasons, [birthright("sales", &["sales-rep"])]);

    let wiki = account_on(&d, "wiki");
    assert_eq!(wiki.key.as_str(), "ada");
    assert_eq!(wiki.attributes["title"], "Account Executive");
    assert_eq!(entitlement_names(wiki), ["readers", "sales-space"]);
    // readers comes from the everyone rule directly, and from sales through the contained role
    assert_eq!(
        wiki.entitlements[&ent("readers")],
        [
            birthright("everyone", &["staff"]),
            birthright("sales", &["sales-rep", "staff"]),
        ]
    );
    assert_eq!(
        wiki.entitlements[&ent("sales-space")],
        [birthright("sales", &["sales-rep"])]
    );
    assert!(wiki.reasons.contains(&birthright("everyone", &["staff"])));
    assert_eq!(
        wiki.reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        // each rule once, by its shortest path
        ["rule everyone → role staff", "rule sales → role sales-rep"]
    );
}

#[test]
fn three_levels_of_nesting() {
    let d = eval(&margaret().build(), &[], now());
    let crm = account_on(&d, "crm");
    assert_eq!(
        entitlement_names(crm),
        ["reports", "sales-manager", "sales-rep"]
    );
    assert_eq!(
        crm.entitlements[&ent("sales-rep")],
        [
            birthright("sales", &["sales-rep"]),
            birthright("sales-managers", &["sales-manager", "sales-rep"]),
        ]
    );
    let wiki = account_on(&d, "wiki");
    assert!(
        wiki.entitlements[&ent("readers")].contains(&birthright(
            "sales-managers",
            &["sales-manager", "sales-rep", "staff"]
        )),
        "{wiki:?}"
    );
}

#[test]
fn an_engineer_has_no_crm_entry_so_a_crm_account_would_be_restricted() {
    let d = eval(&grace().build(), &[], now());
    assert!(!d.systems.contains_key(&sys("crm")));
    assert_eq!(
        d.on(&sys("crm")).into_owned(),
        Desired::Restricted {
            keep_entitlements: false,
            reasons: vec![Reason::NotJustified]
        }
    );
    assert_eq!(
        entitlement_names(account_on(&d, "wiki")),
        ["editors", "readers"]
    );
}

#[test]
fn pending_people_get_nothing_yet() {
    let joiner = grace().starts("2026-03-09").build();
    assert_eq!(joiner.status, tenure_core::LifecycleStatus::Pending);
    let d = eval(&joiner, &[], now());
    assert_eq!(
        everywhere(&d),
        &Desired::Restricted {
            keep_entitlements: false,
            reasons: vec![Reason::NotStarted]
        }
    );
    // on their first day they get everything
    let d = eval(&joiner, &[], at("2026-03-09T00:00:00Z"));
    assert_eq!(
        entitlement_names(account_on(&d, "wiki")),
        ["editors", "readers"]
    );
}

#[test]
fn suspended_people_are_disabled_but_keep_entitlements() {
    let d = eval(&ada().suspended().build(), &[], now());
    assert_eq!(
        everywhere(&d),
        &Desired::Restricted {
            keep_entitlements: true,
            reasons: vec![Reason::Suspended]
        }
    );
    // a suspension does not delay a leaver's deprovisioning
    let d = eval(&ada().suspended().ends("2026-01-01").build(), &[], now());
    assert!(matches!(everywhere(&d), Desired::Absent { .. }), "{d:?}");
}

#[test]
fn a_staged_leaver_is_disabled_then_stripped_then_deleted() {
    let leaver = linus().ends("2026-03-02").build();
    let staged = PolicyId::new("staged").unwrap();
    let why = |step| {
        vec![Reason::Deprovisioning {
            policy: staged.clone(),
            step,
            since: day("2026-03-02"),
            instead_of: None,
        }]
    };
    let (policy_id, steps) = policy().leaver_schedule(&leaver).unwrap();
    assert_eq!(policy_id, staged);
    assert_eq!(
        steps,
        [
            (StepAction::Disable, at("2026-03-02T00:00:00Z")),
            (StepAction::RemoveMemberships, at("2026-03-03T00:00:00Z")),
            (StepAction::Delete, at("2026-04-01T00:00:00Z")),
        ]
    );
    // the day before: still has access
    let d = eval(&leaver, &[], at("2026-03-01T23:59:59Z"));
    assert_eq!(
        entitlement_names(account_on(&d, "wiki")),
        ["editors", "readers"]
    );
    // day 0: disabled, entitlements kept (reversible)
    let d = eval(&leaver, &[], now());
    assert_eq!(
        everywhere(&d),
        &Desired::Restricted {
            keep_entitlements: true,
            reasons: why(StepAction::Disable)
        }
    );
    // day 1: stripped
    for t in ["2026-03-03T00:00:00Z", "2026-03-31T23:59:59Z"] {
        let d = eval(&leaver, &[], at(t));
        assert_eq!(
            everywhere(&d),
            &Desired::Restricted {
                keep_entitlements: false,
                reasons: why(StepAction::RemoveMemberships)
            },
            "at {t}"
        );
    }
    // day 30: deleted
    let d = eval(&leaver, &[], at("2026-04-01T00:00:00Z"));
    assert_eq!(
        everywhere(&d),
        &Desired::Absent {
            reasons: why(StepAction::Delete)
        }
    );
    // once Deleted, always absent
    let gone = linus().ends("2026-03-02").deleted().build();
    let d = eval(&gone, &[], at("2026-03-02T00:00:01Z"));
    assert!(matches!(everywhere(&d), Desired::Absent { .. }));
}

#[test]
fn a_contractor_leaver_loses_everything_at_once() {
    let leaver = ken().ends("2026-03-02").build();
    let d = eval(&leaver, &[], now());
    assert_eq!(
        everywhere(&d),
        &Desired::Absent {
            reasons: vec![Reason::Deprovisioning {
                policy: PolicyId::new("contractors").unwrap(),
                step: StepAction::Delete,
                since: day("2026-03-02"),
                instead_of: None,
            }]
        }
    );
    // and stays absent
    let later = eval(&leaver, &[], now() + Duration::days(400));
    assert_eq!(everywhere(&later), everywhere(&d));
}

#[test]
fn without_a_matching_policy_leavers_are_deleted_at_once() {
    let only_contractors = files()
        .into_iter()
        .map(|(n, t)| {
            if n == "deprovisioning.toml" {
                let cut = t.find("[[deprovisioning]]\nid = \"staged\"").unwrap();
                (n, t[..cut].to_owned())
            } else {
                (n, t)
            }
        })
        .collect();
    let p = compile(only_contractors).unwrap();
    let (id, steps) = p
        .leaver_schedule(&linus().ends("2026-03-02").build())
        .unwrap();
    assert_eq!(id.as_str(), DEFAULT_DEPROVISIONING);
    assert_eq!(steps, [(StepAction::Delete, at("2026-03-02T00:00:00Z"))]);
}

#[test]
fn a_grant_in_force_adds_a_role_and_an_expired_one_does_not() {
    let grace = grace().build();
    let request = grant(
        "E1002",
        "sales-manager",
        "request #12 approved by E1004",
        Some("2026-03-01T00:00:00Z"),
        Some("2026-03-09T00:00:00Z"),
    );
    let d = eval(&grace, &[&request], now());
    let crm = account_on(&d, "crm");
    let via_grant = |path: &[&str]| Reason::Grant {
        reason: "request #12 approved by E1004".into(),
        roles: roles(path),
    };
    assert_eq!(
        entitlement_names(crm),
        ["reports", "sales-manager", "sales-rep"]
    );
    assert_eq!(
        crm.entitlements[&ent("sales-rep")],
        [via_grant(&["sales-manager", "sales-rep"])]
    );
    assert_eq!(
        via_grant(&["sales-manager", "sales-rep"]).to_string(),
        "grant (request #12 approved by E1004) → role sales-manager → role sales-rep"
    );
    let wiki = account_on(&d, "wiki");
    assert_eq!(
        entitlement_names(wiki),
        ["editors", "readers", "sales-space"]
    );

    // valid_until is exclusive, valid_from inclusive
    let expired = eval(&grace, &[&request], at("2026-03-09T00:00:00Z"));
    assert!(!expired.systems.contains_key(&sys("crm")), "{expired:?}");
    let not_yet = eval(&grace, &[&request], at("2026-02-28T23:59:59Z"));
    assert!(!not_yet.systems.contains_key(&sys("crm")));
    let first_moment = eval(&grace, &[&request], at("2026-03-01T00:00:00Z"));
    assert!(first_moment.systems.contains_key(&sys("crm")));

    // evaluate_all gives grants to their holder only
    let everyone = [grace.clone(), linus().build()];
    let (desired, errors) = policy().evaluate_all(&everyone, std::slice::from_ref(&request), now());
    assert!(errors.is_empty());
    assert!(
        desired.identities[&iid("E1002")]
            .systems
            .contains_key(&sys("crm"))
    );
    assert!(
        !desired.identities[&iid("E1003")]
            .systems
            .contains_key(&sys("crm"))
    );
    // a grant does not give a leaver anything once a step is due
    let leaver = crate::common::grace().ends("2026-03-02").build();
    let d = eval(&leaver, &[&request], now());
    assert!(matches!(everywhere(&d), Desired::Restricted { .. }));
}

#[test]
fn a_runtime_error_skips_only_that_identity() {
    let partners = r#"
[[rule]]
id = "partners"
when = 'identity.email.split("@")[1] == "partner.example"'
roles = ["staff"]
"#;
    let p = compile(files_with(&[("partners.toml", partners)])).unwrap();
    let broken = grace().attr("email", "grace.hopper").build();
    let people = [ada().build(), broken, linus().build()];
    let (desired, errors) = p.evaluate_all(&people, &[], now());
    assert_eq!(
        desired
            .skipped
            .iter()
            .map(|i| i.as_str())
            .collect::<Vec<_>>(),
        ["E1002"]
    );
    assert_eq!(
        desired
            .identities
            .keys()
            .map(|i| i.as_str())
            .collect::<Vec<_>>(),
        ["E1001", "E1003"]
    );
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.identity.as_str(), "E1002");
    assert_eq!(e.what, "rule partners");
    assert_eq!(
        (e.location.file.as_str(), e.location.line),
        ("partners.toml", 4)
    );
    assert!(!e.message.is_empty());
    let text = e.to_string();
    assert!(
        text.starts_with("identity E1002: rule partners (partners.toml:4:"),
        "{text}"
    );
    // the others are evaluated as without the broken identity
    let (alone, _) = p.evaluate_all(&[ada().build(), linus().build()], &[], now());
    assert_eq!(alone.identities, desired.identities);
}

#[test]
fn an_empty_account_key_skips_the_identity() {
    let nameless = grace().attr("email", "").build();
    let (desired, errors) = policy().evaluate_all(&[nameless], &[], now());
    assert!(desired.skipped.contains(&iid("E1002")));
    assert_eq!(errors[0].what, "system wiki account key");
    assert!(errors[0].message.contains("empty"), "{}", errors[0].message);
}

#[test]
fn a_non_boolean_condition_is_an_error() {
    let text = r#"
[[rule]]
id = "stringly"
when = 'identity.department'
roles = ["staff"]
"#;
    let p = compile(files_with(&[("s.toml", text)])).unwrap();
    let e = p.evaluate(&ada().build(), &[], now()).unwrap_err();
    assert_eq!(e.what, "rule stringly");
    assert!(e.message.contains("true or false"), "{}", e.message);
}

#[test]
fn rules_can_use_groups_and_status() {
    let text = r#"
[[rule]]
id = "wiki-editors"
when = 'identity.groups.exists(g, g == "wiki-editors") && identity.status == "active"'
roles = ["engineer"]
"#;
    let p = compile(files_with(&[("g.toml", text)])).unwrap();
    let d = p
        .evaluate(&ada().group("wiki-editors").build(), &[], now())
        .unwrap();
    assert!(
        account_on(&d, "wiki")
            .entitlements
            .contains_key(&ent("editors"))
    );
    let d = p.evaluate(&ada().build(), &[], now()).unwrap();
    assert!(
        !account_on(&d, "wiki")
            .entitlements
            .contains_key(&ent("editors"))
    );
}
