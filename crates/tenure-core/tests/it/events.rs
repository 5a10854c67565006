//! Import classification edge cases.

use crate::common::*;
use tenure_core::config::MissingPolicy;
use tenure_core::events::{ChangeKind, Classification, classify};
use tenure_core::{Identity, IdentityRecord, LifecycleStatus};

fn import(
    stored: &[Identity],
    incoming: Vec<IdentityRecord>,
    missing: MissingPolicy,
) -> Classification {
    classify(&hr(), stored, incoming, missing, today())
}

fn only(c: &Classification) -> (ChangeKind, Option<LifecycleStatus>, LifecycleStatus) {
    assert_eq!(c.changes.len(), 1, "{c:#?}");
    let ch = &c.changes[0];
    (ch.kind, ch.before, ch.after)
}

#[test]
fn a_deleted_identity_who_comes_back_is_a_rehire() {
    let gone = ada().ends("2025-06-30").deleted().build();
    assert_eq!(gone.status, LifecycleStatus::Deleted);
    // rehired: the termination is cleared and a new start date set
    let back = ada().starts("2026-03-02").record;
    let c = import(
        std::slice::from_ref(&gone),
        vec![back],
        MissingPolicy::Ignore,
    );
    assert_eq!(
        only(&c),
        (
            ChangeKind::Rehire,
            Some(LifecycleStatus::Deleted),
            LifecycleStatus::Active
        )
    );
    assert_eq!(c.upserts.len(), 1);
    assert_eq!(c.upserts[0].status, LifecycleStatus::Active);
    assert_eq!(c.upserts[0].record.end_date, None);
    let fields: Vec<&str> = c.changes[0]
        .fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(fields, ["start_date", "end_date"]);

    // rehired with a future start: back, but pending
    let later = ada().starts("2026-04-01").record;
    let c = import(
        std::slice::from_ref(&gone),
        vec![later],
        MissingPolicy::Ignore,
    );
    assert_eq!(
        only(&c),
        (
            ChangeKind::Rehire,
            Some(LifecycleStatus::Deleted),
            LifecycleStatus::Pending
        )
    );

    // the same export again: still deleted, nothing rewritten
    let c = import(
        std::slice::from_ref(&gone),
        vec![gone.record.clone()],
        MissingPolicy::Leaver,
    );
    assert_eq!(
        only(&c),
        (
            ChangeKind::Unchanged,
            Some(LifecycleStatus::Deleted),
            LifecycleStatus::Deleted
        )
    );
    assert!(c.upserts.is_empty());

    // a corrected end date does not resurrect a deleted identity
    let corrected = ada().ends("2025-06-27").record;
    let c = import(
        std::slice::from_ref(&gone),
        vec![corrected],
        MissingPolicy::Ignore,
    );
    assert_eq!(
        only(&c),
        (
            ChangeKind::Updated,
            Some(LifecycleStatus::Deleted),
            LifecycleStatus::Deleted
        )
    );
    assert_eq!(c.upserts[0].status, LifecycleStatus::Deleted);

    // and a full export without them does not make them a leaver again
    let c = import(&[gone], vec![], MissingPolicy::Leaver);
    assert!(c.changes.is_empty() && c.upserts.is_empty());
}

#[test]
fn an_operator_suspension_survives_an_import() {
    let stored = ada().suspended().build();
    // a mover
    let c = import(
        std::slice::from_ref(&stored),
        vec![ada().attr("title", "Sales Manager").record],
        MissingPolicy::Ignore,
    );
    assert_eq!(only(&c).0, ChangeKind::Mover);
    assert!(c.upserts[0].suspended);
    assert_eq!(c.upserts[0].status_on(today()), LifecycleStatus::Suspended);
    // unchanged
    let c = import(
        std::slice::from_ref(&stored),
        vec![stored.record.clone()],
        MissingPolicy::Ignore,
    );
    assert_eq!(only(&c).0, ChangeKind::Unchanged);
    // a leaver
    let c = import(
        std::slice::from_ref(&stored),
        vec![ada().ends("2026-03-02").record],
        MissingPolicy::Ignore,
    );
    assert_eq!(only(&c).0, ChangeKind::Leaver);
    assert!(c.upserts[0].suspended);
    // missing from a full export
    let c = import(&[stored], vec![], MissingPolicy::Leaver);
    assert_eq!(only(&c).0, ChangeKind::Leaver);
    assert!(c.upserts[0].suspended);
    assert_eq!(
        c.changes[0].note.as_deref(),
        Some("missing from a full export")
    );
}

#[test]
fn a_future_termination_is_scheduled_and_the_person_stays_active() {
    let stored = ada().build();
    let c = import(
        &[stored],
        vec![ada().ends("2026-03-31").record],
        MissingPolicy::Ignore,
    );
    assert_eq!(
        only(&c),
        (
            ChangeKind::LeaverScheduled,
            Some(LifecycleStatus::Active),
            LifecycleStatus::Active
        )
    );
    let up = &c.upserts[0];
    assert_eq!(up.status, LifecycleStatus::Active);
    assert_eq!(up.record.end_date, Some(day("2026-03-31")));
    let f = &c.changes[0].fields;
    assert_eq!(
        (
            f[0].field.as_str(),
            f[0].before.as_str(),
            f[0].after.as_str()
        ),
        ("end_date", "", "2026-03-31")
    );
    // they keep their access until then
    let d = policy().evaluate(up, &[], now()).unwrap();
    assert!(matches!(
        d.on(&sys("crm")).as_ref(),
        tenure_core::Desired::Account(_)
    ));

    // moved to an earlier date, still in the future: scheduled again
    let c = import(
        std::slice::from_ref(up),
        vec![ada().ends("2026-03-15").record],
        MissingPolicy::Ignore,
    );
    assert_eq!(only(&c).0, ChangeKind::LeaverScheduled);
    // the date withdrawn: only a date changed
    let c = import(
        std::slice::from_ref(up),
        vec![ada().record],
        MissingPolicy::Ignore,
    );
    assert_eq!(only(&c).0, ChangeKind::Updated);
    // a scheduled leaver missing from a full export leaves today, not later
    let c = import(std::slice::from_ref(up), vec![], MissingPolicy::Leaver);
    assert_eq!(only(&c).0, ChangeKind::Leaver);
    assert_eq!(c.upserts[0].record.end_date, Some(today()));
    // a future termination with a department change is a mover first
    let c = import(
        &[ada().build()],
        vec![
            ada()
                .ends("2026-03-31")
                .attr("department", "Finance")
                .record,
        ],
        MissingPolicy::Ignore,
    );
    assert_eq!(only(&c).0, ChangeKind::Mover);
    // a joiner with a fixed-term contract is a joiner
    let c = import(
        &[],
        vec![ken().ends("2026-09-30").record],
        MissingPolicy::Ignore,
    );
    assert_eq!(
        only(&c),
        (ChangeKind::Joiner, None, LifecycleStatus::Active)
    );
}

#[test]
fn a_pending_joiner_whose_hire_is_cancelled_is_a_leaver() {
    let stored = grace().starts("2026-04-01").build();
    assert_eq!(stored.status, LifecycleStatus::Pending);
    let c = import(
        &[stored],
        vec![grace().starts("2026-04-01").ends("2026-03-01").record],
        MissingPolicy::Ignore,
    );
    assert_eq!(
        only(&c),
        (
            ChangeKind::Leaver,
            Some(LifecycleStatus::Pending),
            LifecycleStatus::Leaver
        )
    );
}

#[test]
fn managers_and_groups_are_mover_fields() {
    let stored = ada().build();
    let c = import(
        std::slice::from_ref(&stored),
        vec![ada().manager("E1004").record],
        MissingPolicy::Ignore,
    );
    assert_eq!(only(&c).0, ChangeKind::Mover);
    assert_eq!(c.changes[0].fields[0].field, "manager");
    let c = import(
        &[stored],
        vec![ada().group("b").group("a").record],
        MissingPolicy::Ignore,
    );
    assert_eq!(only(&c).0, ChangeKind::Mover);
    assert_eq!(c.changes[0].fields[0].after, "a,b");
}

#[test]
fn a_contractor_becoming_an_employee_is_a_mover() {
    let mut employed = ken().record;
    employed.employment_type = tenure_core::EmploymentType::Employee;
    let c = import(&[ken().build()], vec![employed], MissingPolicy::Ignore);
    assert_eq!(only(&c).0, ChangeKind::Mover);
    assert_eq!(
        (
            c.changes[0].fields[0].before.as_str(),
            c.changes[0].fields[0].after.as_str()
        ),
        ("contractor", "employee")
    );
}
