//! The diff: the operations that turn actual state into desired state.

use crate::common::*;
use chrono::Duration;
use tenure_core::plan::{Action, AttributeChange, DiffInput, Finding, OrphanPolicy, Reason, diff};
use tenure_core::state::{ActualState, Capabilities};
use tenure_core::{Identity, RuleId};

fn day_n(n: i64) -> chrono::DateTime<chrono::Utc> {
    now() + Duration::days(n)
}

/// A world where these people were provisioned at `now()`.
fn provisioned(people: &[Identity]) -> World {
    let mut w = World::new();
    w.apply(people, now());
    assert!(
        w.plan(people, now()).operations.is_empty(),
        "provisioning must converge"
    );
    w
}

#[test]
fn joiners_get_accounts_then_memberships_in_order() {
    let mut w = World::new();
    let people = [grace().build(), ada().build()];
    let d = w.plan(&people, now());
    assert_eq!(
        briefs(&d.operations),
        [
            "crm ada create",
            "crm ada add_membership sales-rep",
            "wiki ada create",
            "wiki ada add_membership readers",
            "wiki ada add_membership sales-space",
            "wiki grace create",
            "wiki grace add_membership editors",
            "wiki grace add_membership readers",
        ]
    );
    assert!(d.findings.is_empty(), "{:?}", d.findings);
    let create = &d.operations[0];
    assert_eq!(create.identity, Some(iid("E1001")));
    assert_eq!(
        create.action,
        Action::CreateAccount {
            attributes: [
                ("department", "Sales"),
                ("display_name", "Ada Lovelace"),
                ("email", "ada@example.com")
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        }
    );
    assert_eq!(
        d.operations[1].reasons,
        [Reason::Birthright {
            rule: RuleId::new("sales").unwrap(),
            roles: vec![tenure_core::RoleId::new("sales-rep").unwrap()]
        }]
    );
    // applied, nothing is left to do, and Tenure's accounts are linked
    w.apply(&people, now());
    assert!(w.plan(&people, now()).operations.is_empty());
    assert_eq!(
        w.links,
        [
            link("crm", "ada", "E1001"),
            link("wiki", "ada", "E1001"),
            link("wiki", "grace", "E1002")
        ]
    );
}

#[test]
fn movers_are_updated_given_new_memberships_and_lose_old_ones() {
    let mut w = provisioned(&[ada().build(), grace().build()]);
    let moved = [
        ada()
            .attr("department", "Engineering")
            .attr("title", "Software Engineer")
            .build(),
        grace()
            .attr("department", "Sales")
            .attr("title", "Account Executive")
            .build(),
    ];
    let d = w.plan(&moved, now());
    assert_eq!(
        briefs(&d.operations),
        [
            // Ada's CRM account is no longer justified: disabled and stripped
            "crm ada disable",
            "crm ada remove_membership sales-rep",
            // Grace joins the CRM
            "crm grace create",
            "crm grace add_membership sales-rep",
            "wiki ada update title",
            "wiki ada add_membership editors",
            "wiki ada remove_membership sales-space",
            "wiki grace update title",
            "wiki grace add_membership sales-space",
            "wiki grace remove_membership editors",
        ]
    );
    let update = &d.operations[4];
    assert_eq!(update.reasons, [Reason::Mapping]);
    assert_eq!(
        update.action,
        Action::UpdateAccount {
            changes: [(
                "title".to_owned(),
                AttributeChange {
                    before: Some("Account Executive".into()),
                    after: "Software Engineer".into()
                }
            )]
            .into_iter()
            .collect()
        }
    );
    assert_eq!(d.operations[0].reasons, [Reason::NotJustified]);
    assert_eq!(d.operations[6].reasons, [Reason::NotJustified]);
    w.apply(&moved, now());

    // and back to Sales: the disabled CRM account is enabled and brought up to date
    let back = [
        ada().attr("title", "Account Executive").build(),
        moved[1].clone(),
    ];
    let d = w.plan(&back, now());
    assert_eq!(
        briefs(&d.operations),
        [
            "crm ada enable",
            "crm ada add_membership sales-rep",
            "wiki ada update title",
            "wiki ada add_membership sales-space",
            "wiki ada remove_membership editors",
        ]
    );
}

#[test]
fn a_staged_leaver_is_disabled_stripped_and_deleted_day_by_day() {
    let mut w = provisioned(&[ada().build(), grace().build()]);
    let left = [ada().ends("2026-03-02").build(), grace().build()];
    let ops = w.apply(&left, now());
    assert_eq!(briefs(&ops), ["crm ada disable", "wiki ada disable"]);
    assert!(matches!(
        &ops[0].reasons[..],
        [Reason::Deprovisioning {
            step: tenure_core::plan::StepAction::Disable,
            ..
        }]
    ));
    assert!(
        w.plan(&left, now() + Duration::hours(12))
            .operations
            .is_empty()
    );

    let ops = w.apply(&left, day_n(1));
    assert_eq!(
        briefs(&ops),
        [
            "crm ada remove_membership sales-rep",
            "wiki ada remove_membership readers",
            "wiki ada remove_membership sales-space",
        ]
    );
    assert!(w.plan(&left, day_n(29)).operations.is_empty());

    let ops = w.apply(&left, day_n(30));
    assert_eq!(briefs(&ops), ["crm ada delete", "wiki ada delete"]);
    assert_eq!(w.links, [link("wiki", "grace", "E1002")]);
    assert!(w.plan(&left, day_n(31)).operations.is_empty());
}

#[test]
fn a_leaver_seen_late_gets_every_step_due_at_once() {
    let w = provisioned(&[ada().build()]);
    let left = [ada().ends("2026-03-02").build()];
    let d = w.plan(&left, day_n(3));
    assert_eq!(
        briefs(&d.operations),
        [
            "crm ada disable",
            "crm ada remove_membership sales-rep",
            "wiki ada disable",
            "wiki ada remove_membership readers",
            "wiki ada remove_membership sales-space",
        ]
    );
}

#[test]
fn a_contractor_leaver_is_deleted_at_once() {
    let mut w = provisioned(&[ken().build()]);
    let ops = w.apply(&[ken().ends("2026-03-02").build()], now());
    assert_eq!(briefs(&ops), ["wiki ken delete"]);
}

#[test]
fn a_system_that_cannot_disable_gets_leavers_deleted() {
    let mut w = provisioned(&[ada().build()]);
    w.infos.get_mut(&sys("crm")).unwrap().capabilities.disable = false;
    let d = w.plan(&[ada().ends("2026-03-02").build()], now());
    assert_eq!(
        briefs(&d.operations),
        ["crm ada delete", "wiki ada disable"]
    );
    assert_eq!(
        d.findings,
        [Finding::Unsupported {
            system: sys("crm"),
            message: "cannot disable E1001's account ada; deleting it instead".into()
        }]
    );
}

#[test]
fn a_system_that_cannot_delete_gets_leavers_disabled_and_stripped() {
    let mut w = provisioned(&[ada().build()]);
    w.infos.get_mut(&sys("wiki")).unwrap().capabilities.delete = false;
    let d = w.plan(&[ada().ends("2026-03-02").build()], day_n(30));
    assert_eq!(
        briefs(&d.operations),
        [
            "crm ada delete",
            "wiki ada disable",
            "wiki ada remove_membership readers",
            "wiki ada remove_membership sales-space",
        ]
    );
    assert_eq!(d.findings.len(), 1);
    assert!(
        matches!(&d.findings[0], Finding::Unsupported { system, message }
        if system.as_str() == "wiki" && message.contains("cannot delete"))
    );
}

#[test]
fn a_system_without_memberships_gets_no_membership_operations() {
    let mut w = World::new();
    w.infos
        .get_mut(&sys("wiki"))
        .unwrap()
        .capabilities
        .memberships = false;
    let people = [ada().build()];
    let ops = w.apply(&people, now());
    assert_eq!(
        briefs(&ops),
        [
            "crm ada create",
            "crm ada add_membership sales-rep",
            "wiki ada create"
        ]
    );
    assert!(w.plan(&people, now()).operations.is_empty());
    let left = [ada().ends("2026-03-02").build()];
    let d = w.plan(&left, day_n(1));
    assert_eq!(
        briefs(&d.operations),
        [
            "crm ada disable",
            "crm ada remove_membership sales-rep",
            "wiki ada disable"
        ]
    );
}

#[test]
fn a_system_that_cannot_create_or_update_is_reported_not_forced() {
    let mut w = provisioned(&[ada().build()]);
    let caps = Capabilities {
        create: false,
        update: false,
        ..Capabilities::FULL
    };
    w.infos.get_mut(&sys("crm")).unwrap().capabilities = caps;
    let people = [
        ada().attr("email", "ada.lovelace@example.com").build(),
        margaret().build(),
    ];
    let d = w.plan(&people, now());
    // Ada's CRM account is not renamed or updated; Margaret's is not created
    assert!(
        !d.operations.iter().any(|o| o.system.as_str() == "crm"),
        "{:?}",
        briefs(&d.operations)
    );
    assert_eq!(
        d.findings,
        [Finding::Unsupported {
            system: sys("crm"),
            message: "E1004 needs an account but the system cannot create accounts".into()
        }]
    );
    // the wiki can: Ada's email is updated there
    assert!(briefs(&d.operations).contains(&"wiki ada update email".to_owned()));
}

fn with_orphans(policy: OrphanPolicy) -> tenure_core::plan::Diff {
    let mut w = provisioned(&[ada().build()]);
    let crm = w.actual.systems.get_mut(&sys("crm")).unwrap();
    for a in [
        account("ghost", &[], true, &["sales-rep"]),
        account("zombie", &[], false, &[]),
        account("departed", &[], true, &[]),
    ] {
        crm.accounts.insert(a.key.clone(), a);
    }
    // linked to someone the store no longer knows
    w.links.push(link("crm", "departed", "E0001"));
    w.infos.get_mut(&sys("crm")).unwrap().orphans = policy;
    w.plan(&[ada().build()], now())
}

#[test]
fn orphans_are_reported_and_acted_on_only_when_policy_says_so() {
    let orphan = |a: &str| Finding::Orphan {
        system: sys("crm"),
        account: key(a),
    };
    let report = with_orphans(OrphanPolicy::Report);
    assert!(report.operations.is_empty());
    assert_eq!(
        report.findings,
        [orphan("departed"), orphan("ghost"), orphan("zombie")]
    );

    let disable = with_orphans(OrphanPolicy::Disable);
    // an already disabled orphan is left as it is
    assert_eq!(
        briefs(&disable.operations),
        ["crm departed disable", "crm ghost disable"]
    );
    assert!(
        disable
            .operations
            .iter()
            .all(|o| o.identity.is_none() && o.reasons == [Reason::Orphan])
    );
    assert_eq!(disable.findings.len(), 3);

    let delete = with_orphans(OrphanPolicy::Delete);
    assert_eq!(
        briefs(&delete.operations),
        [
            "crm departed delete",
            "crm ghost delete",
            "crm zombie delete"
        ]
    );

    // the orphan policy comes from the configuration
    let text = SYSTEMS.replace(
        "kind = \"sql\"\nentitlements = [\"readers\"",
        "kind = \"sql\"\norphans = \"delete\"\nentitlements = [\"readers\"",
    );
    assert_ne!(text, SYSTEMS);
    let files: Vec<_> = files()
        .into_iter()
        .map(|(n, t)| {
            if n == "systems.toml" {
                (n, text.clone())
            } else {
                (n, t)
            }
        })
        .collect();
    let p = compile(files).unwrap();
    let infos = infos(&p);
    assert_eq!(infos[&sys("wiki")].orphans, OrphanPolicy::Delete);
    assert_eq!(infos[&sys("crm")].orphans, OrphanPolicy::Report);
}

#[test]
fn skipped_identities_are_left_alone_and_are_not_orphans() {
    let partners = r#"
[[rule]]
id = "partners"
when = 'identity.email.split("@")[1] == "partner.example"'
roles = ["staff"]
"#;
    let mut w = provisioned(&[ada().build(), grace().build()]);
    w.policy = compile(files_with(&[("partners.toml", partners)])).unwrap();
    // Grace's email loses its domain: her evaluation fails from now on
    let people = [
        ada().build(),
        grace()
            .attr("email", "grace")
            .attr("department", "Sales")
            .build(),
    ];
    let (desired, errors) = w.policy.evaluate_all(&people, &[], now());
    assert_eq!(errors.len(), 1);
    assert!(desired.skipped.contains(&iid("E1002")));
    let d = diff(&DiffInput {
        systems: &w.infos,
        desired: &desired,
        actual: &w.actual,
        links: &w.links,
    });
    assert!(d.operations.is_empty(), "{:?}", briefs(&d.operations));
    assert!(d.findings.is_empty(), "{:?}", d.findings);
}

#[test]
fn a_key_held_by_someone_else_is_a_conflict() {
    let w = provisioned(&[ada().build()]);
    // another Ada, whose account key would also be `ada`
    let byron = person("E1005", "Ada", "Byron", "Engineering", "Analyst");
    let d = w.plan(&[ada().build(), byron.build()], now());
    assert!(
        !d.operations
            .iter()
            .any(|o| o.identity == Some(iid("E1005")))
    );
    assert_eq!(
        d.findings,
        [Finding::KeyConflict {
            system: sys("wiki"),
            account: key("ada"),
            wanted_by: iid("E1005"),
            held_by: iid("E1001"),
        }]
    );
}

#[test]
fn two_joiners_wanting_the_same_key_do_not_both_create_it() {
    let w = World::new();
    let byron = person("E1005", "Ada", "Byron", "Engineering", "Analyst");
    let d = w.plan(&[ada().build(), byron.build()], now());
    let creates: Vec<String> = briefs(&d.operations)
        .into_iter()
        .filter(|o| o.ends_with("create"))
        .collect();
    assert_eq!(creates, ["crm ada create", "wiki ada create"]);
    assert!(
        d.operations
            .iter()
            .all(|o| o.identity == Some(iid("E1001")))
    );
    assert_eq!(
        d.findings,
        [Finding::KeyConflict {
            system: sys("wiki"),
            account: key("ada"),
            wanted_by: iid("E1005"),
            held_by: iid("E1001"),
        }]
    );
    // and the plan can be applied
    let _ = simulate(&w.actual, &w.links, &d.operations);
}

#[test]
fn an_unlinked_account_with_the_key_is_not_created_over() {
    let mut w = World::new();
    // an account correlation could not attribute (say it was ambiguous)
    w.actual = actual_of(&[(
        "crm",
        vec![account(
            "ada",
            &[("email", "shared@example.com")],
            true,
            &[],
        )],
    )]);
    let d = w.plan(&[ada().build()], now());
    assert!(
        !briefs(&d.operations).iter().any(|o| o.starts_with("crm")),
        "{:?}",
        briefs(&d.operations)
    );
    assert!(d.findings.contains(&Finding::Orphan {
        system: sys("crm"),
        account: key("ada")
    }));
    assert!(
        d.findings
            .iter()
            .any(|f| matches!(f, Finding::Unsupported { system, message }
            if system.as_str() == "crm" && message.contains("linked to no identity")))
    );
    // even an orphan policy that deletes does not also create it in the same plan
    w.infos.get_mut(&sys("crm")).unwrap().orphans = OrphanPolicy::Delete;
    let d = w.plan(&[ada().build()], now());
    assert_eq!(
        briefs(&d.operations)
            .iter()
            .filter(|o| o.starts_with("crm"))
            .collect::<Vec<_>>(),
        ["crm ada delete"]
    );
    let _ = simulate(&w.actual, &w.links, &d.operations);
}

#[test]
fn entitlements_not_declared_on_the_system_are_left_alone() {
    let mut w = provisioned(&[ada().build()]);
    let wiki = w.actual.systems.get_mut(&sys("wiki")).unwrap();
    let acct = wiki.accounts.get_mut(&key("ada")).unwrap();
    acct.entitlements.insert(ent("legacy-admins"));
    acct.entitlements.insert(ent("editors")); // declared, not justified
    let d = w.plan(&[ada().build()], now());
    assert_eq!(
        briefs(&d.operations),
        ["wiki ada remove_membership editors"]
    );
    // not even when a leaver is stripped
    let d = w.plan(&[ada().ends("2026-03-02").build()], day_n(1));
    let wiki_ops: Vec<String> = briefs(&d.operations)
        .into_iter()
        .filter(|o| o.starts_with("wiki"))
        .collect();
    assert_eq!(
        wiki_ops,
        [
            "wiki ada disable",
            "wiki ada remove_membership editors",
            "wiki ada remove_membership readers",
            "wiki ada remove_membership sales-space",
        ]
    );
}

#[test]
fn pending_and_suspended_people_are_disabled_not_deleted() {
    let mut w = provisioned(&[ada().build(), grace().build()]);
    let people = [
        ada().suspended().build(),
        grace().starts("2026-04-01").build(),
    ];
    let ops = w.apply(&people, now());
    assert_eq!(
        briefs(&ops),
        [
            "crm ada disable",
            "wiki ada disable",
            "wiki grace disable",
            "wiki grace remove_membership editors",
            "wiki grace remove_membership readers",
        ]
    );
    assert_eq!(ops[0].reasons, [Reason::Suspended]);
    assert_eq!(ops[2].reasons, [Reason::NotStarted]);
    // lifting the suspension enables the accounts again, entitlements intact
    let ops = w.apply(
        &[ada().build(), grace().starts("2026-04-01").build()],
        now(),
    );
    assert_eq!(briefs(&ops), ["crm ada enable", "wiki ada enable"]);
}

#[test]
fn links_to_accounts_that_vanished_lead_to_a_new_account() {
    let mut w = provisioned(&[ada().build()]);
    w.actual
        .systems
        .get_mut(&sys("wiki"))
        .unwrap()
        .accounts
        .clear();
    let d = w.plan(&[ada().build()], now());
    assert_eq!(
        briefs(&d.operations),
        [
            "wiki ada create",
            "wiki ada add_membership readers",
            "wiki ada add_membership sales-space",
        ]
    );
}

#[test]
fn the_plan_does_not_depend_on_the_order_of_links() {
    let w = provisioned(&[ada().build()]);
    // Ada has a second, older wiki account, also linked to her
    let mut actual: ActualState = w.actual.clone();
    actual
        .systems
        .get_mut(&sys("wiki"))
        .unwrap()
        .accounts
        .insert(
            key("a.lovelace"),
            account("a.lovelace", &[], false, &["editors"]),
        );
    let mut links = w.links.clone();
    links.push(link("wiki", "a.lovelace", "E1001"));
    let desired = w.desired(&[ada().build()], &[], now());
    let plan = |links: &[tenure_core::Link]| {
        diff(&DiffInput {
            systems: &w.infos,
            desired: &desired,
            actual: &actual,
            links,
        })
    };
    let forward = plan(&links);
    links.reverse();
    let backward = plan(&links);
    assert_eq!(forward, backward);
}
