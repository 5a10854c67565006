//! The `archive` deprovisioning step and per-system step overrides: their
//! checks, evaluation per system, the archive operation only where a system
//! can archive, the manager's account as the receiver, convergence, and the
//! legal hold.

use crate::common::*;
use std::collections::BTreeSet;
use tenure_core::plan::{Action, Finding, Reason, StepAction};
use tenure_core::state::{Capabilities, Desired, DesiredIdentity};
use tenure_core::{Identity, PolicyId};

/// A staged pipeline with an archive step; the wiki never deletes (only
/// disables) and the CRM skips the disable step.
const PIPELINE: &str = r#"
[[deprovisioning]]
id = "employees"
when = "true"
mode = "staged"

[[deprovisioning.step]]
after = "0d"
action = "disable"

[[deprovisioning.step]]
after = "1d"
action = "remove_memberships"

[[deprovisioning.step]]
after = "7d"
action = "archive"

[[deprovisioning.step]]
after = "30d"
action = "delete"

[[deprovisioning.override]]
system = "wiki"
action = "delete"
instead = "disable"

[[deprovisioning.override]]
system = "crm"
action = "disable"
instead = "nothing"
"#;

fn files_with_pipeline(text: &str) -> Vec<(String, String)> {
    files()
        .into_iter()
        .map(|(n, t)| {
            if n == "deprovisioning.toml" {
                (n, text.to_owned())
            } else {
                (n, t)
            }
        })
        .collect()
}

fn pipeline() -> tenure_core::policy::Policy {
    compile(files_with_pipeline(PIPELINE)).unwrap_or_else(|e| panic!("{e}"))
}

fn reason(step: StepAction, instead_of: Option<StepAction>) -> Vec<Reason> {
    vec![Reason::Deprovisioning {
        policy: PolicyId::new("employees").unwrap(),
        step,
        since: day("2026-03-02"),
        instead_of,
    }]
}

/// Margaret (Sales Manager) manages Ada, who leaves on 2 March.
fn ada_leaves() -> Identity {
    ada().manager("E1004").ends("2026-03-02").build()
}

fn on<'a>(d: &'a DesiredIdentity, system: &str) -> &'a Desired {
    d.systems.get(&sys(system)).unwrap()
}

/// The only problem reported when the deprovisioning file is `text`.
fn the_problem(text: &str) -> tenure_core::config::ConfigError {
    let errs = problems(files_with_pipeline(text));
    assert_eq!(errs.len(), 1, "exactly one problem expected: {errs:#?}");
    errs.into_iter().next().unwrap()
}

fn with_override(system: &str, action: &str, instead: &str) -> String {
    format!(
        "{PIPELINE}\n[[deprovisioning.override]]\nsystem = \"{system}\"\naction = \"{action}\"\ninstead = \"{instead}\"\n"
    )
}

#[test]
fn bad_overrides_are_reported_at_their_file_and_line() {
    let cases = [
        (
            with_override("ledger", "delete", "disable"),
            "system = \"ledger\"",
            vec!["employees", "unknown system", "ledger"],
        ),
        (
            with_override("wiki", "erase", "disable"),
            "action = \"erase\"",
            vec!["unknown step action", "erase", "archive"],
        ),
        (
            with_override("crm", "delete", "shred"),
            "instead = \"shred\"",
            vec!["shred", "not a step action", "nothing"],
        ),
        (
            with_override("crm", "archive", "archive"),
            "instead = \"archive\"",
            vec!["archive with itself", "crm"],
        ),
        (
            with_override("wiki", "delete", "nothing"),
            "system = \"wiki\"",
            vec!["delete on system wiki is already overridden at deprovisioning.toml:"],
        ),
    ];
    for (text, needle, words) in cases {
        let e = the_problem(&text);
        // the last line holding the needle: the override added at the end
        let line = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .map(|(n, _)| n + 1)
            .last()
            .unwrap();
        assert_eq!(
            (e.location.file.as_str(), e.location.line),
            ("deprovisioning.toml", line),
            "{e}"
        );
        for w in words {
            assert!(e.message.contains(w), "{:?} does not say {w:?}", e.message);
        }
    }
}

#[test]
fn an_override_of_a_step_the_policy_does_not_have_is_meaningless() {
    let text = r#"
[[deprovisioning]]
id = "contractors"
when = "true"
mode = "immediate"

[[deprovisioning.override]]
system = "wiki"
action = "archive"
instead = "nothing"
"#;
    let e = the_problem(text);
    assert_eq!(e.location.line, line_of(text, "action = \"archive\""));
    assert!(
        e.message.contains("does not have") && e.message.contains("only delete"),
        "{e}"
    );
    // an immediate policy's delete may be overridden
    let ok = text.replace("action = \"archive\"", "action = \"delete\"");
    compile(files_with_pipeline(&ok)).unwrap();
}

#[test]
fn an_archive_webhook_must_name_a_webhook() {
    let text = SYSTEMS.replacen(
        "kind = \"sql\"\n",
        "kind = \"sql\"\narchive_webhook = \"archiver\"\n",
        1,
    );
    let files: Vec<(String, String)> = files()
        .into_iter()
        .map(|(n, t)| {
            if n == "systems.toml" {
                (n, text.clone())
            } else {
                (n, t)
            }
        })
        .collect();
    let errs = problems(files.clone());
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].location.file, "systems.toml");
    assert_eq!(errs[0].location.line, line_of(&text, "archive_webhook"));
    assert!(errs[0].message.contains("\"archiver\""), "{}", errs[0]);
    let mut with_hook = files;
    with_hook.push((
        "hooks.toml".to_owned(),
        "[[webhook]]\nid = \"archiver\"\nurl = \"http://127.0.0.1:9/archive\"\nsecret = { env = \"ARCHIVE_SECRET\" }\n"
            .to_owned(),
    ));
    compile(with_hook).unwrap();
}

#[test]
fn the_archive_step_comes_at_its_delay_and_is_the_next_due_moment() {
    let p = pipeline();
    let leaver = ada_leaves();
    let (_, steps) = p.leaver_schedule(&leaver).unwrap();
    assert_eq!(
        steps,
        [
            (StepAction::Disable, at("2026-03-02T00:00:00Z")),
            (StepAction::RemoveMemberships, at("2026-03-03T00:00:00Z")),
            (StepAction::Archive, at("2026-03-09T00:00:00Z")),
            (StepAction::Delete, at("2026-04-01T00:00:00Z")),
        ]
    );
    assert_eq!(
        p.next_due(&leaver, &[], at("2026-03-04T00:00:00Z")),
        Some(at("2026-03-09T00:00:00Z"))
    );
    assert_eq!(
        p.next_due(&leaver, &[], at("2026-03-09T00:00:00Z")),
        Some(at("2026-04-01T00:00:00Z"))
    );
}

#[test]
fn overrides_make_evaluation_per_system() {
    let p = pipeline();
    let leaver = ada_leaves();
    // Day 0: the wiki is disabled; on the CRM the disable is overridden to
    // nothing, so access there continues as if active.
    let d = p
        .evaluate(&leaver, &[], at("2026-03-02T09:00:00Z"))
        .unwrap();
    assert_eq!(
        on(&d, "wiki"),
        &Desired::Restricted {
            keep_entitlements: true,
            reasons: reason(StepAction::Disable, None)
        }
    );
    assert!(matches!(on(&d, "crm"), Desired::Account(_)), "{d:?}");
    assert!(d.archive.is_empty());
    // Day 1: stripped everywhere.
    let d = p
        .evaluate(&leaver, &[], at("2026-03-03T09:00:00Z"))
        .unwrap();
    for s in ["crm", "wiki"] {
        assert_eq!(
            on(&d, s),
            &Desired::Restricted {
                keep_entitlements: false,
                reasons: reason(StepAction::RemoveMemberships, None)
            }
        );
    }
    // Day 7: the archive is due on every system, with the manager named.
    let d = p
        .evaluate(&leaver, &[], at("2026-03-09T00:00:00Z"))
        .unwrap();
    assert_eq!(
        d.archive.keys().map(|s| s.as_str()).collect::<Vec<_>>(),
        ["crm", "wiki"]
    );
    let request = &d.archive[&sys("crm")];
    assert_eq!(request.manager, Some(iid("E1004")));
    assert_eq!(request.reasons, reason(StepAction::Archive, None));
    assert!(!request.held);
    // Day 30: the CRM account goes; the wiki's delete is a disable there.
    let d = p
        .evaluate(&leaver, &[], at("2026-04-01T00:00:00Z"))
        .unwrap();
    assert_eq!(
        on(&d, "crm"),
        &Desired::Absent {
            reasons: reason(StepAction::Delete, None)
        }
    );
    assert_eq!(
        on(&d, "wiki"),
        &Desired::Restricted {
            keep_entitlements: false,
            reasons: reason(StepAction::RemoveMemberships, None)
        }
    );
    // A delete overridden to disable is said so where it is the only step.
    let only_delete = r#"
[[deprovisioning]]
id = "employees"
when = "true"
mode = "immediate"

[[deprovisioning.override]]
system = "wiki"
action = "delete"
instead = "disable"
"#;
    let p = compile(files_with_pipeline(only_delete)).unwrap();
    let d = p.evaluate(&leaver, &[], now()).unwrap();
    assert_eq!(
        on(&d, "wiki"),
        &Desired::Restricted {
            keep_entitlements: true,
            reasons: reason(StepAction::Disable, Some(StepAction::Delete))
        }
    );
    assert_eq!(
        reason(StepAction::Disable, Some(StepAction::Delete))[0].to_string(),
        "leaver since 2026-03-02: policy employees, step disable (overridden on this system: instead of delete)"
    );
    assert!(matches!(on(&d, "crm"), Desired::Absent { .. }));
}

/// The world after the leaver's accounts exist, with the CRM able to archive
/// to the manager and the wiki unable to archive.
fn world_with_archive() -> World {
    let mut w = World {
        policy: pipeline(),
        ..World::new()
    };
    w.infos = infos(&w.policy);
    w.infos.get_mut(&sys("crm")).unwrap().capabilities = Capabilities {
        archive: true,
        archive_to_manager: true,
        ..Capabilities::FULL
    };
    let people = [ada().manager("E1004").build(), margaret().build()];
    w.apply(&people, at("2026-02-01T09:00:00Z"));
    w
}

#[test]
fn the_archive_goes_to_the_managers_account_only_where_the_system_can_archive() {
    let mut w = world_with_archive();
    let people = [ada_leaves(), margaret().build()];
    // Days 0 and 1: no archive yet.
    for t in ["2026-03-02T09:00:00Z", "2026-03-03T09:00:00Z"] {
        let ops = w.apply(&people, at(t));
        assert!(
            !ops.iter()
                .any(|o| matches!(o.action, Action::ArchiveAccount { .. })),
            "{:?}",
            briefs(&ops)
        );
    }
    // Day 7: the CRM transfers Ada's data to Margaret's account; the wiki
    // cannot archive and the plan says so.
    let d = w.plan(&people, at("2026-03-09T00:00:00Z"));
    assert_eq!(briefs(&d.operations), ["crm ada archive to margaret"]);
    assert_eq!(d.operations[0].reasons, reason(StepAction::Archive, None));
    assert!(
        d.findings.iter().any(|f| matches!(f,
            Finding::Unsupported { system, message }
                if system.as_str() == "wiki" && message.contains("cannot archive E1001's data"))),
        "{:?}",
        d.findings
    );
    w.apply(&people, at("2026-03-09T00:00:00Z"));
    // Archived: the next plan is empty (no repeated archive).
    let d = w.plan(&people, at("2026-03-10T00:00:00Z"));
    assert!(d.operations.is_empty(), "{:?}", briefs(&d.operations));
    // Day 30: the CRM account is deleted, the wiki's stays (disabled).
    let ops = w.apply(&people, at("2026-04-01T00:00:00Z"));
    assert_eq!(briefs(&ops), ["crm ada delete"]);
    assert!(
        w.plan(&people, at("2026-05-01T00:00:00Z"))
            .operations
            .is_empty()
    );
    let wiki = &w.actual.systems[&sys("wiki")].accounts[&key("ada")];
    assert!(!wiki.enabled && wiki.entitlements.is_empty());
}

#[test]
fn an_archive_due_with_the_delete_runs_before_it() {
    let w = world_with_archive();
    let people = [ada_leaves(), margaret().build()];
    let d = w.plan(&people, at("2026-04-01T00:00:00Z"));
    let crm: Vec<String> = briefs(&d.operations)
        .into_iter()
        .filter(|b| b.starts_with("crm ada"))
        .collect();
    assert_eq!(crm, ["crm ada archive to margaret", "crm ada delete"]);
}

#[test]
fn without_a_manager_or_the_managers_account_the_archive_waits_and_says_why() {
    let w = world_with_archive();
    // no manager
    let alone = ada().ends("2026-03-02").build();
    let d = w.plan(&[alone, margaret().build()], at("2026-03-09T00:00:00Z"));
    assert!(
        !d.operations
            .iter()
            .any(|o| matches!(o.action, Action::ArchiveAccount { .. }))
    );
    let why: Vec<&str> = d
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::ArchiveWaiting { system, why, .. } if system.as_str() == "crm" => {
                Some(why.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(why.len(), 1, "{:?}", d.findings);
    assert!(why[0].contains("has no manager"), "{}", why[0]);
    // a manager with no CRM account (Grace is in Engineering: no CRM role)
    let d = w.plan(
        &[
            ada().manager("E1002").ends("2026-03-02").build(),
            grace().build(),
            margaret().build(),
        ],
        at("2026-03-09T00:00:00Z"),
    );
    assert!(
        d.findings.iter().any(|f| matches!(f,
            Finding::ArchiveWaiting { why, .. } if why.contains("manager E1002 has no account on this system"))),
        "{:?}",
        d.findings
    );
    assert!(
        !d.operations
            .iter()
            .any(|o| matches!(o.action, Action::ArchiveAccount { .. }))
    );
}

#[test]
fn a_legal_hold_stops_the_archive_as_it_stops_the_delete() {
    let w = world_with_archive();
    let people = [ada_leaves(), margaret().build()];
    let mut desired = w.desired(&people, &[], at("2026-04-01T00:00:00Z"));
    desired.hold(&BTreeSet::from([iid("E1001")]));
    assert!(desired.identities[&iid("E1001")].archive[&sys("crm")].held);
    let d = tenure_core::plan::diff(&tenure_core::plan::DiffInput {
        systems: &w.infos,
        desired: &desired,
        actual: &w.actual,
        links: &w.links,
    });
    assert!(
        !d.operations.iter().any(|o| matches!(
            o.action,
            Action::ArchiveAccount { .. } | Action::DeleteAccount
        )),
        "{:?}",
        briefs(&d.operations)
    );
    assert!(
        d.findings.iter().any(|f| matches!(f,
            Finding::ArchiveWaiting { system, why, .. }
                if system.as_str() == "crm" && why.contains("legal hold"))),
        "{:?}",
        d.findings
    );
}

#[test]
fn on_a_system_that_cannot_disable_the_archive_runs_before_the_delete_that_replaces_it() {
    let mut w = world_with_archive();
    w.infos.get_mut(&sys("crm")).unwrap().capabilities = Capabilities {
        archive: true,
        archive_to_manager: true,
        disable: false,
        ..Capabilities::FULL
    };
    let people = [ada_leaves(), margaret().build()];
    // Day 7 reached before any step ran: on the CRM the disable is a delete.
    let d = w.plan(&people, at("2026-03-09T00:00:00Z"));
    let crm: Vec<String> = briefs(&d.operations)
        .into_iter()
        .filter(|b| b.starts_with("crm ada"))
        .collect();
    assert_eq!(crm, ["crm ada archive to margaret", "crm ada delete"]);
}

#[test]
fn a_plan_made_a_slice_at_a_time_finds_the_manager_in_another_slice() {
    let mut w = world_with_archive();
    let people = [ada_leaves(), margaret().build()];
    let now = at("2026-03-09T00:00:00Z");
    // With Margaret's link and without it (then her desired account names
    // the key the data goes to).
    for forget_manager_link in [false, true] {
        if forget_manager_link {
            w.links.retain(|l| l.identity.as_str() != "E1004");
        }
        let whole = w.plan(&people, now);
        assert!(
            briefs(&whole.operations).contains(&"crm ada archive to margaret".to_owned()),
            "{:?}",
            briefs(&whole.operations)
        );
        // Ada's slice, with only her manager's desired state as context
        // (what the engine evaluates for a manager outside the slice), then
        // Margaret's slice.
        let all = w.desired(&people, &[], now);
        let mut differ = tenure_core::plan::Differ::new(&w.infos, &w.actual, &w.links);
        let mut context = tenure_core::state::DesiredState::default();
        context
            .identities
            .insert(iid("E1004"), all.identities[&iid("E1004")].clone());
        differ.add(&w.desired(&people[..1], &[], now), &context);
        differ.add(
            &w.desired(&people[1..], &[], now),
            &tenure_core::state::DesiredState::default(),
        );
        assert_eq!(differ.finish(), whole);
    }
}
