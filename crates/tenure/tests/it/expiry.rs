//! Lifecycle over time, with time moved by the test (issue 3, parts 4 to 6):
//! expiring access (grants with windows, reminders before they end, people
//! who must have an end date), movers keeping a role through its grace
//! period, and an HR correction or a rehire in the middle of a leaver's
//! pipeline.

use crate::support::{Org, at, full_plan_ops};
use chrono::Duration;
use std::sync::Arc;
use tenure_engine::service::Scheduler;
use tenure_engine::{Engine, FixedClock, NoProgress};

/// The example organisation reading `hr/current.csv`, with contractors who
/// must have an end date, reminders 7 days ahead told to a webhook (never
/// delivered here: the test reads the outbox), and a 14-day grace period on
/// the sales role.
fn prepare() -> Org {
    let org = Org::new();
    let cfg = org.path("config/tenure.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        "path = \"../hr/2026-11-01.csv\"",
        "path = \"../hr/current.csv\"",
    );
    std::fs::write(org.path("config/hook.key"), "a-test-webhook-key").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[expiry]\nrequire_end_date = 'identity.employment_type in [\"contractor\", \"temp\"]'\nremind_before = \"7d\"\n\n\
             [[webhook]]\nid = \"hr-desk\"\nurl = \"http://127.0.0.1:9/hooks\"\nsecret = {{ file = \"hook.key\" }}\nevents = [\"expiry_upcoming\", \"expired\", \"mover\"]\n"
        ),
    )
    .unwrap();
    let roles = org.path("config/roles.toml");
    let text = std::fs::read_to_string(&roles).unwrap();
    assert!(text.contains("id = \"sales\"\n"));
    std::fs::write(
        &roles,
        text.replacen("id = \"sales\"\n", "id = \"sales\"\ngrace = \"14d\"\n", 1),
    )
    .unwrap();
    std::fs::copy(org.path("hr/2026-11-01.csv"), org.path("hr/current.csv")).unwrap();
    org
}

/// Rewrites one person's row of the current export.
fn edit(org: &Org, id: &str, f: impl Fn(&mut Vec<String>)) {
    let path = org.path("hr/current.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with(&format!("{id},")) {
            let mut cells: Vec<String> = line.split(',').map(str::to_owned).collect();
            f(&mut cells);
            out.push_str(&cells.join(","));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}

async fn query(org: &Org, db: &str, sql: &str) -> Vec<(String, String)> {
    use sqlx::Connection;
    let url = format!("sqlite:{}", org.path(&format!("apps/{db}.db")).display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&mut c)
        .await
        .unwrap()
}

async fn crm_roles(org: &Org, user: &str) -> Vec<String> {
    query(
        org,
        "crm",
        &format!(
            "SELECT username, role FROM crm_user_roles WHERE username = '{user}' ORDER BY role"
        ),
    )
    .await
    .into_iter()
    .map(|(_, r)| r)
    .collect()
}

async fn crm_enabled(org: &Org, user: &str) -> Option<String> {
    query(
        org,
        "crm",
        &format!("SELECT username, CAST(enabled AS TEXT) FROM crm_users WHERE username = '{user}'"),
    )
    .await
    .into_iter()
    .map(|(_, e)| e)
    .next()
}

/// The outbox's messages of one kind about one person.
async fn told(engine: &Engine, event: &str, person: &str) -> Vec<String> {
    engine
        .store
        .deliveries(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.event == event && d.payload.contains(person))
        .map(|d| d.payload)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_expire_with_reminders_and_contractors_need_an_end_date() {
    let org = prepare();
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let engine = org.engine(&clock).await;
    let sched = Scheduler::new(&engine);
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");

    // A contractor without an end date rejects the whole export, with the line.
    edit(&org, "E1042", |c| c[10] = String::new());
    let err = tenure_engine::import::import(&engine, None, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("current.csv:43"), "{err}");
    assert!(err.contains("E1042 has no end date"), "{err}");
    assert!(err.contains("require_end_date"), "{err}");
    let stored = engine
        .store
        .identity(&tenure_core::IdentityId::new("E1042").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.record.end_date.is_some(), "nothing was stored");
    std::fs::copy(org.path("hr/2026-11-01.csv"), org.path("hr/current.csv")).unwrap();

    // A grant: Alan (engineering) gets the sales role for ten days.
    let alan = tenure_core::IdentityId::new("E1003").unwrap();
    let until = at(2026, 11, 11, 9);
    let g = tenure_engine::grants::add_grant(
        &engine,
        "cli:approver",
        tenure_engine::grants::NewGrant {
            identity: alan.clone(),
            role: "sales".to_owned(),
            reason: "request #12: covering the Lisbon desk".to_owned(),
            valid_from: None,
            valid_until: Some(until),
        },
    )
    .await
    .unwrap();
    // The next round gives the access, through an incremental plan.
    clock.set(at(2026, 11, 1, 10));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert!(t.planned >= 2, "an account and its role: {t:?}");
    assert_eq!(crm_roles(&org, "alan.turing").await, vec!["sales-rep"]);
    assert_eq!(crm_enabled(&org, "alan.turing").await.as_deref(), Some("1"));
    assert_eq!(full_plan_ops(&engine).await, 0, "converged with the grant");
    let timeline = tenure_engine::timeline::timeline(&engine, &alan)
        .await
        .unwrap();
    assert_eq!(timeline.grants.len(), 1);
    assert_eq!(timeline.grants[0].state, "active");
    assert_eq!(
        timeline.next_due,
        Some(until - Duration::days(7)),
        "looked at again for the reminder"
    );

    // Seven days before the end: the reminder, once.
    assert!(told(&engine, "expiry_upcoming", "E1003").await.is_empty());
    clock.set(until - Duration::days(7) + Duration::minutes(1));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(t.planned, 0, "{t:?}");
    let reminders = told(&engine, "expiry_upcoming", "E1003").await;
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert!(
        reminders[0].contains(&format!("grant #{}", g.id)),
        "{}",
        reminders[0]
    );
    clock.set(until - Duration::days(3));
    sched.tick().await;
    assert_eq!(
        told(&engine, "expiry_upcoming", "E1003").await.len(),
        1,
        "once"
    );

    // The end: the access goes, and the holder is told.
    clock.set(until + Duration::minutes(1));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert!(t.planned > 0, "{t:?}");
    assert!(crm_roles(&org, "alan.turing").await.is_empty());
    assert_eq!(crm_enabled(&org, "alan.turing").await.as_deref(), Some("0"));
    assert_eq!(told(&engine, "expired", "E1003").await.len(), 1);
    assert_eq!(
        full_plan_ops(&engine).await,
        0,
        "converged without the grant"
    );

    // A contractor's grant must end; and a revoked grant takes access away at once.
    let marvin = tenure_core::IdentityId::new("E1042").unwrap();
    let new = |until| tenure_engine::grants::NewGrant {
        identity: marvin.clone(),
        role: "engineering".to_owned(),
        reason: "request #13".to_owned(),
        valid_from: None,
        valid_until: until,
    };
    let err = tenure_engine::grants::add_grant(&engine, "cli:approver", new(None))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("must have an end date"), "{err}");
    let g = tenure_engine::grants::add_grant(&engine, "cli:approver", new(Some(at(2027, 1, 1, 0))))
        .await
        .unwrap();
    let t = sched.tick().await;
    assert!(t.errors.is_empty() && t.planned > 0, "{t:?}");
    let wiki = |user: &'static str| {
        let org = &org;
        async move {
            query(
                org,
                "wiki",
                &format!("SELECT login, group_name FROM group_members WHERE login = '{user}' ORDER BY group_name"),
            )
            .await
            .into_iter()
            .map(|(_, g)| g)
            .collect::<Vec<_>>()
        }
    };
    assert!(
        wiki("marvin.minsky")
            .await
            .contains(&"engineering".to_owned())
    );
    tenure_engine::grants::revoke_grant(&engine, "cli:approver", g.id, "request withdrawn")
        .await
        .unwrap();
    let t = sched.tick().await;
    assert!(t.errors.is_empty() && t.planned > 0, "{t:?}");
    assert!(
        !wiki("marvin.minsky")
            .await
            .contains(&"engineering".to_owned())
    );
    let audit = engine.store.audit_page(0, 100_000).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event.action == "grant.revoked" && r.event.actor == "cli:approver")
    );

    // The contractor's own end date: reminded 7 days before it.
    clock.set(at(2027, 3, 24, 0) + Duration::minutes(5));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    let told_end = told(&engine, "expiry_upcoming", "E1042").await;
    assert_eq!(told_end.len(), 1, "{told_end:?}");
    assert!(told_end[0].contains("2027-03-31"), "{}", told_end[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mover_keeps_a_role_through_its_grace_period() {
    let org = prepare();
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let engine = org.engine(&clock).await;
    let sched = Scheduler::new(&engine);
    assert!(sched.tick().await.errors.is_empty());
    assert_eq!(crm_roles(&org, "ada.lovelace").await, vec!["sales-rep"]);

    // Ada moves from Sales to Finance: finance access now, sales kept 14 days.
    edit(&org, "E1001", |c| c[4] = "Finance".to_owned());
    clock.set(at(2026, 11, 2, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(t.imported[0].1.get("mover"), Some(&1), "{t:?}");
    assert_eq!(crm_roles(&org, "ada.lovelace").await, vec!["sales-rep"]);
    let ledger = query(
        &org,
        "ledger",
        "SELECT employee_no, permission FROM ledger_permissions WHERE employee_no = 'E1001'",
    )
    .await;
    assert_eq!(ledger.len(), 1, "finance access given at once: {ledger:?}");
    assert_eq!(full_plan_ops(&engine).await, 0, "converged, grace included");
    let ada = tenure_core::IdentityId::new("E1001").unwrap();
    let tl = tenure_engine::timeline::timeline(&engine, &ada)
        .await
        .unwrap();
    let grace = &tl.grants[0].grant.grant;
    assert_eq!(grace.role.as_str(), "sales");
    assert_eq!(grace.valid_until, Some(at(2026, 11, 16, 9)));
    assert!(grace.reason.contains("14 days"), "{}", grace.reason);
    assert!(tl.events.iter().any(|e| e.action == "grant.grace"));
    let text = tenure_core::render::trace_text(
        &tenure_engine::explain::traces(&engine, std::slice::from_ref(&ada))
            .await
            .unwrap()[0],
    );
    assert!(text.contains("grace period after a move"), "{text}");

    // The day the grace period ends, the old access goes by the date alone.
    clock.set(at(2026, 11, 16, 9) + Duration::minutes(1));
    let t = sched.tick().await;
    assert!(t.errors.is_empty() && t.imported.is_empty(), "{t:?}");
    assert!(t.planned > 0, "{t:?}");
    assert!(crm_roles(&org, "ada.lovelace").await.is_empty());
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_mid_pipeline_restores_access_and_a_rehire_after_deletion_starts_afresh() {
    let org = prepare();
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let engine = org.engine(&clock).await;
    let sched = Scheduler::new(&engine);
    assert!(sched.tick().await.errors.is_empty());
    let wiki = |user: &'static str| {
        let org = &org;
        async move {
            let enabled = query(
                org,
                "wiki",
                &format!("SELECT login, CAST(active AS TEXT) FROM users WHERE login = '{user}'"),
            )
            .await
            .into_iter()
            .map(|(_, a)| a)
            .next();
            let groups: Vec<String> = query(
                org,
                "wiki",
                &format!("SELECT login, group_name FROM group_members WHERE login = '{user}' ORDER BY group_name"),
            )
            .await
            .into_iter()
            .map(|(_, g)| g)
            .collect();
            (enabled, groups)
        }
    };
    let before_margaret = wiki("margaret.hamilton").await;
    assert_eq!(before_margaret.0.as_deref(), Some("1"));
    assert!(!before_margaret.1.is_empty());

    // Margaret (staged: disable at once, memberships after a day, delete
    // after 30 days) and Ken are terminated on 2 November.
    edit(&org, "E1009", |c| c[10] = "2026-11-02".to_owned());
    edit(&org, "E1010", |c| c[10] = "2026-11-02".to_owned());
    clock.set(at(2026, 11, 2, 9));
    assert!(sched.tick().await.errors.is_empty());
    assert_eq!(wiki("margaret.hamilton").await.0.as_deref(), Some("0"));
    clock.set(at(2026, 11, 3, 9));
    assert!(sched.tick().await.errors.is_empty());
    assert_eq!(
        wiki("margaret.hamilton").await,
        (Some("0".to_owned()), vec![])
    );

    // HR corrects Margaret's record before the pipeline ends: access comes
    // back as it was, nothing is created again, and her pending steps are gone.
    edit(&org, "E1009", |c| c[10] = String::new());
    clock.set(at(2026, 11, 5, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(wiki("margaret.hamilton").await, before_margaret);
    let margaret = tenure_core::IdentityId::new("E1009").unwrap();
    let tl = tenure_engine::timeline::timeline(&engine, &margaret)
        .await
        .unwrap();
    assert!(tl.schedule.is_empty(), "{:?}", tl.schedule);
    let after_correction: Vec<&str> = tl
        .operations
        .iter()
        .filter(|o| o.done_at.is_some_and(|d| d >= at(2026, 11, 5, 0)))
        .map(|o| o.action.as_str())
        .collect();
    assert!(!after_correction.is_empty());
    assert!(
        after_correction
            .iter()
            .all(|a| *a == "enable" || a.starts_with("add_membership")),
        "{after_correction:?}"
    );
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");
    // The 30th day passes: nothing of Margaret's is deleted.
    clock.set(at(2026, 12, 3, 9));
    assert!(sched.tick().await.errors.is_empty());
    assert_eq!(wiki("margaret.hamilton").await, before_margaret);
    assert_eq!(
        wiki("ken.thompson").await,
        (None, vec![]),
        "Ken's accounts are deleted"
    );

    // Ken is rehired: provisioned afresh.
    edit(&org, "E1010", |c| {
        c[9] = "2026-12-07".to_owned();
        c[10] = String::new();
    });
    clock.set(at(2026, 12, 4, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(
        wiki("ken.thompson").await.0,
        None,
        "not before the start date"
    );
    clock.set(at(2026, 12, 7, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    let ken = wiki("ken.thompson").await;
    assert_eq!(ken.0.as_deref(), Some("1"), "{ken:?}");
    assert!(!ken.1.is_empty());
    let tl =
        tenure_engine::timeline::timeline(&engine, &tenure_core::IdentityId::new("E1010").unwrap())
            .await
            .unwrap();
    assert!(
        tl.operations
            .iter()
            .any(|o| o.action == "create" && o.done_at.is_some_and(|d| d >= at(2026, 12, 7, 0)))
    );
    assert!(
        tl.events.iter().any(|e| e.action == "import.rehire"),
        "{:?}",
        tl.events
    );
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");
}

/// Queued work that is no longer what policy wants is cancelled by the plan
/// that finds so: a leaver's disables wait in the queue (queued only, as when
/// a system is unreachable), HR corrects the record, and the next plan
/// replaces them instead of letting them run later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_cancels_a_leavers_queued_steps_that_have_not_run() {
    use tenure_engine::engine::{ApplyOptions, Scope};
    let org = prepare();
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let engine = org.engine(&clock).await;
    assert!(Scheduler::new(&engine).tick().await.errors.is_empty());
    let queue_only = ApplyOptions {
        scope: Scope::Changed,
        allow_mass_change: false,
        execute: false,
        priority: 0,
        finish_queued_first: false,
    };
    let margaret = tenure_core::IdentityId::new("E1009").unwrap();
    let waiting = |engine: &Engine| {
        let margaret = margaret.clone();
        let store = engine.store.clone();
        async move {
            store
                .pending_operations(Some(&[margaret]))
                .await
                .unwrap()
                .into_iter()
                .map(|p| format!("{}:{}", p.system, p.action))
                .collect::<Vec<_>>()
        }
    };

    edit(&org, "E1009", |c| c[10] = "2026-11-02".to_owned());
    clock.set(at(2026, 11, 2, 9));
    tenure_engine::import::import(&engine, None, None, false)
        .await
        .unwrap();
    let (planned, _) = engine
        .apply_with(queue_only.clone(), None, &NoProgress)
        .await
        .unwrap();
    assert!(planned.plan.superseded.is_empty());
    let queued = waiting(&engine).await;
    assert!(queued.iter().any(|q| q.ends_with(":disable")), "{queued:?}");

    // The correction: the queued disables are cancelled, nothing replaces them.
    edit(&org, "E1009", |c| c[10] = String::new());
    clock.set(at(2026, 11, 2, 10));
    tenure_engine::import::import(&engine, None, None, false)
        .await
        .unwrap();
    let (planned, _) = engine
        .apply_with(queue_only, None, &NoProgress)
        .await
        .unwrap();
    let superseded: Vec<String> = planned
        .plan
        .superseded
        .iter()
        .map(|s| format!("{}:{}", s.system, s.actions.join("+")))
        .collect();
    assert_eq!(
        superseded.len(),
        queued.len(),
        "{superseded:?} vs {queued:?}"
    );
    assert!(
        superseded.iter().all(|s| s.ends_with(":disable")),
        "{superseded:?}"
    );
    assert!(
        waiting(&engine).await.is_empty(),
        "nothing of hers waits any more"
    );
    engine.execute(&NoProgress).await.unwrap();
    let active = query(
        &org,
        "wiki",
        "SELECT login, CAST(active AS TEXT) FROM users WHERE login = 'margaret.hamilton'",
    )
    .await;
    assert_eq!(
        active,
        vec![("margaret.hamilton".to_owned(), "1".to_owned())]
    );
    let audit = engine.store.audit_page(0, 100_000).await.unwrap();
    let cancelled: Vec<_> = audit
        .iter()
        .filter(|r| r.event.action == "operation.cancelled")
        .collect();
    assert_eq!(cancelled.len(), queued.len());
    assert!(
        cancelled
            .iter()
            .all(|r| r.event.subject == "identity:E1009")
    );
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");
    let tl = tenure_engine::timeline::timeline(&engine, &margaret)
        .await
        .unwrap();
    assert!(tl.events.iter().any(|e| e.action == "operation.cancelled"));
}
