//! Correlation: which existing account belongs to whom; never a guess.

use crate::common::*;
use tenure_core::config::CorrelationConfig;
use tenure_core::correlate::{Correlation, correlate};
use tenure_core::plan::Finding;
use tenure_core::state::{ActualState, DesiredState};
use tenure_core::{Identity, Link};

fn by_email() -> CorrelationConfig {
    CorrelationConfig {
        account: "email".into(),
        identity: "email".into(),
    }
}

fn run(
    system: &str,
    actual: &ActualState,
    stored: &[Link],
    people: &[Identity],
    rule: Option<&CorrelationConfig>,
) -> Correlation {
    // identities whose evaluation fails are still candidates by attribute
    let (desired, _errors): (DesiredState, _) = policy().evaluate_all(people, &[], now());
    correlate(
        &sys(system),
        &actual.systems[&sys(system)],
        stored,
        people,
        &desired,
        rule,
    )
}

fn ambiguous(system: &str, account: &str, ids: &[&str]) -> Finding {
    Finding::Ambiguous {
        system: sys(system),
        account: key(account),
        identities: ids.iter().map(|i| iid(i)).collect(),
    }
}

#[test]
fn accounts_are_matched_by_email_without_case_or_space() {
    let actual = actual_of(&[(
        "crm",
        vec![
            account("alovelace", &[("email", "  ADA@Example.COM ")], true, &[]),
            account("mhamilton", &[("email", "margaret@example.com")], true, &[]),
            account("nobody", &[("email", "nobody@example.com")], true, &[]),
            account("blank", &[("email", "  ")], true, &[]),
        ],
    )]);
    let people = [
        ada().build(),
        margaret().build(),
        grace().attr("email", "").build(),
    ];
    let c = run("crm", &actual, &[], &people, Some(&by_email()));
    assert_eq!(
        c.add,
        [
            link("crm", "alovelace", "E1001"),
            link("crm", "mhamilton", "E1004")
        ]
    );
    assert_eq!(c.links, c.add);
    assert!(c.remove.is_empty());
    // no match is not a finding: those accounts are orphans, for the diff to report
    assert!(c.findings.is_empty(), "{:?}", c.findings);
}

#[test]
fn accounts_are_matched_by_the_key_policy_would_give() {
    // no email on the account, but its key is the one Ada's account would get
    let actual = actual_of(&[(
        "wiki",
        vec![
            account("ADA", &[], true, &[]),
            account("grace", &[], true, &[]),
        ],
    )]);
    let people = [ada().build(), grace().build()];
    let c = run("wiki", &actual, &[], &people, None);
    assert_eq!(
        c.add,
        [link("wiki", "ADA", "E1001"), link("wiki", "grace", "E1002")]
    );
    // a leaver has no desired account, so nothing is matched by key for them
    let c = run(
        "wiki",
        &actual,
        &[],
        &[ada().ends("2026-03-02").build()],
        None,
    );
    assert!(c.add.is_empty());
    // ... but the correlation rule still finds their account
    let emailed = actual_of(&[(
        "wiki",
        vec![account("x1", &[("email", "ada@example.com")], true, &[])],
    )]);
    let c = run(
        "wiki",
        &emailed,
        &[],
        &[ada().ends("2026-03-02").build()],
        Some(&by_email()),
    );
    assert_eq!(c.add, [link("wiki", "x1", "E1001")]);
}

#[test]
fn correlation_by_id_and_key() {
    let rule = CorrelationConfig {
        account: "key".into(),
        identity: "id".into(),
    };
    let actual = actual_of(&[("crm", vec![account("e1001", &[], true, &[])])]);
    let c = run("crm", &actual, &[], &[ada().build()], Some(&rule));
    assert_eq!(c.add, [link("crm", "e1001", "E1001")]);
}

#[test]
fn two_identities_with_one_email_are_ambiguous() {
    let actual = actual_of(&[(
        "crm",
        vec![account(
            "shared",
            &[("email", "team@example.com")],
            true,
            &[],
        )],
    )]);
    let people = [
        ada().attr("email", "team@example.com").build(),
        margaret().attr("email", "Team@Example.com").build(),
    ];
    let c = run("crm", &actual, &[], &people, Some(&by_email()));
    assert!(c.add.is_empty() && c.links.is_empty());
    assert_eq!(
        c.findings,
        [ambiguous("crm", "shared", &["E1001", "E1004"])]
    );
}

#[test]
fn one_identity_matching_two_accounts_is_ambiguous() {
    let actual = actual_of(&[(
        "crm",
        vec![
            // one by key, one by email
            account("ada", &[], true, &[]),
            account("a.lovelace", &[("email", "ada@example.com")], true, &[]),
            // a clear match for someone else is still made
            account("margaret", &[], true, &[]),
        ],
    )]);
    let people = [ada().build(), margaret().build()];
    let c = run("crm", &actual, &[], &people, Some(&by_email()));
    assert_eq!(c.add, [link("crm", "margaret", "E1004")]);
    assert_eq!(
        c.findings,
        [
            ambiguous("crm", "a.lovelace", &["E1001"]),
            ambiguous("crm", "ada", &["E1001"])
        ]
    );
}

#[test]
fn an_account_matching_two_people_in_two_ways_is_ambiguous() {
    // its key is Ada's, its email is Margaret's
    let actual = actual_of(&[(
        "crm",
        vec![account(
            "ada",
            &[("email", "margaret@example.com")],
            true,
            &[],
        )],
    )]);
    let c = run(
        "crm",
        &actual,
        &[],
        &[ada().build(), margaret().build()],
        Some(&by_email()),
    );
    assert!(c.add.is_empty());
    assert_eq!(c.findings, [ambiguous("crm", "ada", &["E1001", "E1004"])]);
}

#[test]
fn stored_links_are_kept_and_links_to_vanished_accounts_removed() {
    let actual = actual_of(&[(
        "crm",
        vec![
            account("first", &[("email", "ada@example.com")], true, &[]),
            account("second", &[("email", "ada@example.com")], true, &[]),
        ],
    )]);
    let stored = [
        link("crm", "first", "E1001"),
        link("crm", "gone", "E1004"),
        // another system's links are none of this correlation's business
        link("wiki", "gone-too", "E1004"),
    ];
    let people = [ada().build(), margaret().build()];
    let c = run("crm", &actual, &stored, &people, Some(&by_email()));
    assert!(c.add.is_empty(), "{:?}", c.add);
    assert_eq!(c.links, [link("crm", "first", "E1001")]);
    assert_eq!(c.remove, [(sys("crm"), key("gone"))]);
    // Ada is linked already: a second account with her email is not hers, nor ambiguous
    assert!(c.findings.is_empty(), "{:?}", c.findings);
    // Margaret, whose link vanished, can be matched again
    let actual = actual_of(&[(
        "crm",
        vec![account(
            "mh",
            &[("email", "margaret@example.com")],
            true,
            &[],
        )],
    )]);
    let c = run("crm", &actual, &stored, &people, Some(&by_email()));
    assert_eq!(c.add, [link("crm", "mh", "E1004")]);
    assert_eq!(
        c.remove,
        [(sys("crm"), key("first")), (sys("crm"), key("gone"))]
    );
}

#[test]
fn a_stored_link_wins_over_a_match() {
    // the account's email says Margaret, but it is stored as Ada's
    let actual = actual_of(&[(
        "crm",
        vec![account(
            "x",
            &[("email", "margaret@example.com")],
            true,
            &[],
        )],
    )]);
    let c = run(
        "crm",
        &actual,
        &[link("crm", "x", "E1001")],
        &[ada().build(), margaret().build()],
        Some(&by_email()),
    );
    assert!(c.add.is_empty());
    assert_eq!(c.links, [link("crm", "x", "E1001")]);
    assert!(c.findings.is_empty());
}
