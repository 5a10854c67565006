//! Expiring access and grace periods in the policy: `[expiry]` and role
//! `grace` are validated with their place; a mover earns a grant for each
//! role with a grace period they lost; due times include grant windows and
//! reminders; people who must have an end date are told apart.

use crate::common::*;
use chrono::Duration;
use tenure_core::config::ConfigError;
use tenure_core::policy::Policy;

const GRACE: &str = r#"
[[role]]
id = "sales-desk"
entitlements = ["crm:reports"]
grace = "14d"

[[role]]
id = "sales-lead"
roles = ["sales-desk"]
grace = "30d"

[[rule]]
id = "sales-desk"
when = 'identity.department == "Sales"'
roles = ["sales-desk"]

[[rule]]
id = "sales-lead"
when = 'identity.department == "Sales" && identity.title.contains("Manager")'
roles = ["sales-lead"]

[expiry]
require_end_date = 'identity.employment_type == "contractor"'
remind_before = "10d"
"#;

fn with_grace() -> Policy {
    compile(files_with(&[("grace.toml", GRACE)])).unwrap()
}

fn only(text: &str) -> ConfigError {
    let errs = problems(files_with(&[("x.toml", text)]));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn expiry_and_grace_settings_are_checked_where_they_are_written() {
    let text = "\n[expiry]\nrequire_end_date = 'identity.cost_centre == \"x\"'\n";
    let e = only(text);
    assert_eq!((e.location.file.as_str(), e.location.line), ("x.toml", 3));
    assert!(e.message.contains("[expiry] require_end_date"), "{e}");
    assert!(e.message.contains("identity.cost_centre"), "{e}");

    let e = only("[expiry]\nremind_before = \"soon\"\n");
    assert_eq!(e.location.line, 2);
    assert!(e.message.contains("remind_before"), "{e}");

    let e = only("[expiry]\nremind_before = \"0d\"\n");
    assert!(e.message.contains("longer than 0"), "{e}");

    let e = only("\n[[role]]\nid = \"temp-access\"\ngrace = \"2 weeks\"\n");
    assert_eq!(e.location.line, 4);
    assert!(e.message.contains("role temp-access: grace"), "{e}");

    let errs = problems(files_with(&[
        ("a.toml", "[expiry]\nremind_before = \"1d\"\n"),
        ("b.toml", "[expiry]\nremind_before = \"2d\"\n"),
    ]));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0]
            .message
            .contains("[expiry] is already set at a.toml:1")
    );
}

#[test]
fn a_mover_keeps_the_roles_with_a_grace_period_they_lost() {
    let p = with_grace();
    let before = ada().build();
    let after = ada().attr("department", "Engineering").build();
    let graces = p.graces(&before, &after, now()).unwrap();
    // sales-rep is lost too, but has no grace period.
    assert_eq!(graces.len(), 1, "{graces:#?}");
    assert_eq!(graces[0].role.as_str(), "sales-desk");
    assert_eq!(graces[0].identity, iid("E1001"));
    assert_eq!(graces[0].valid_until, Some(now() + Duration::days(14)));
    assert!(graces[0].reason.contains("14 days"), "{}", graces[0].reason);

    // A manager loses sales-lead, which contains sales-desk: one grant, the outer role.
    let before = margaret().build();
    let after = margaret().attr("department", "Engineering").build();
    let graces = p.graces(&before, &after, now()).unwrap();
    assert_eq!(graces.len(), 1, "{graces:#?}");
    assert_eq!(graces[0].role.as_str(), "sales-lead");
    assert_eq!(graces[0].valid_until, Some(now() + Duration::days(30)));

    // Keeping a role (a title change within Sales) or leaving earns nothing.
    let after = ada().attr("title", "Senior Account Executive").build();
    assert!(p.graces(&ada().build(), &after, now()).unwrap().is_empty());
    let after = ada()
        .attr("department", "Engineering")
        .ends("2026-03-01")
        .build();
    assert!(p.graces(&ada().build(), &after, now()).unwrap().is_empty());

    // The grant keeps the access while it is in force.
    let after = ada().attr("department", "Engineering").build();
    let g = p.graces(&ada().build(), &after, now()).unwrap();
    let held = p.evaluate(&after, &[&g[0]], now()).unwrap();
    let crm = format!("{:?}", held.systems.get(&sys("crm")));
    assert!(crm.contains("reports"), "{crm}");
    let later = now() + Duration::days(15);
    let gone = p.evaluate(&after, &[&g[0]], later).unwrap();
    assert!(
        !format!("{:?}", gone.systems.get(&sys("crm"))).contains("reports"),
        "the grace period is over"
    );
}

#[test]
fn due_times_include_grant_windows_and_reminders() {
    let p = with_grace();
    let linus = linus().build();
    assert_eq!(p.next_due(&linus, &[], now()), None);
    let g = grant(
        "E1003",
        "sales-desk",
        "request #1",
        Some("2026-03-05T00:00:00Z"),
        Some("2026-04-01T00:00:00Z"),
    );
    // First the start, then the reminder 10 days before the end, then the end.
    assert_eq!(
        p.next_due(&linus, &[&g], now()),
        Some(at("2026-03-05T00:00:00Z"))
    );
    let t = at("2026-03-06T00:00:00Z");
    assert_eq!(
        p.next_due(&linus, &[&g], t),
        Some(at("2026-03-22T00:00:00Z"))
    );
    let t = at("2026-03-23T00:00:00Z");
    assert_eq!(
        p.next_due(&linus, &[&g], t),
        Some(at("2026-04-01T00:00:00Z"))
    );
    assert_eq!(p.remind_before(), Duration::days(10));

    // A contractor's end date is reminded; an employee's is not.
    let ken = ken().ends("2026-06-30").build();
    assert_eq!(
        p.end_reminder(&ken, today()),
        Some(at("2026-06-20T00:00:00Z"))
    );
    assert_eq!(
        p.next_due(&ken, &[], now()),
        Some(at("2026-06-20T00:00:00Z"))
    );
    let leaving = ada().ends("2026-06-30").build();
    assert_eq!(p.end_reminder(&leaving, today()), None);
    assert_eq!(
        p.next_due(&leaving, &[], now()),
        Some(at("2026-06-30T00:00:00Z"))
    );
}

#[test]
fn people_who_must_have_an_end_date_are_told_apart() {
    let p = with_grace();
    let problem = p.end_date_problem(&ken().record, &hr(), today()).unwrap();
    assert!(problem.contains("C2001 has no end date"), "{problem}");
    assert!(problem.contains("a contractor"), "{problem}");
    assert_eq!(
        p.end_date_problem(&ken().ends("2026-12-31").record, &hr(), today()),
        None
    );
    assert_eq!(p.end_date_problem(&ada().record, &hr(), today()), None);
    assert!(p.has_end_date_requirement());
    assert!(!policy().has_end_date_requirement());
    assert_eq!(
        policy().end_date_problem(&ken().record, &hr(), today()),
        None
    );
    assert_eq!(policy().remind_before(), Duration::days(7));
}
