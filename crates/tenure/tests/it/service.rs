//! The service's scheduler on the example organisation, with time moved by
//! the test: source files watched, incremental plans, dates coming due, a
//! full reconciliation on its cron schedule that survives a restart, and a
//! system quarantined and recovered.

use crate::support::{Org, at, full_plan_ops};
use std::sync::Arc;
use tenure_engine::service::Scheduler;
use tenure_engine::{Engine, FixedClock};

/// The example organisation, its source reading `hr/current.csv`, the wiki
/// reconciled at 03:00 every day.
fn prepare() -> Org {
    let org = Org::new();
    let cfg = org.path("config/tenure.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        "path = \"../hr/2026-11-01.csv\"",
        "path = \"../hr/current.csv\"",
    );
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[service]\ntick = \"1s\"\nquarantine_after = 2\nquarantine_retry = \"10m\"\n"
        ),
    )
    .unwrap();
    let sys = org.path("config/systems.toml");
    let text = std::fs::read_to_string(&sys).unwrap();
    let text = text.replacen(
        "id = \"wiki\"\n",
        "id = \"wiki\"\nreconcile = \"0 3 * * *\"\n",
        1,
    );
    std::fs::write(&sys, text).unwrap();
    std::fs::copy(org.path("hr/2026-11-01.csv"), org.path("hr/current.csv")).unwrap();
    org
}

async fn wiki(org: &Org, sql: &'static str) -> Vec<(String, i64)> {
    use sqlx::Connection;
    let url = format!("sqlite:{}", org.path("apps/wiki.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    if sql.starts_with("UPDATE") {
        sqlx::query(sql).execute(&mut c).await.unwrap();
        return Vec::new();
    }
    sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_follows_sources_dates_and_schedules() {
    let org = prepare();
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let engine = org.engine(&clock).await;
    let sched = Scheduler::new(&engine);

    // First tick: the export is imported, planned and applied.
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(t.imported.len(), 1, "{t:?}");
    assert!(t.planned > 100, "{t:?}");
    assert_eq!(t.executed.done as usize, t.planned, "{t:?}");
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");
    let next = sched.next_reconciliations().await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        next[0].1,
        at(2026, 11, 2, 3),
        "the wiki's next reconciliation"
    );

    // Nothing changed: nothing is imported, planned or executed.
    let t = sched.tick().await;
    assert!(t.errors.is_empty() && t.imported.is_empty(), "{t:?}");
    assert_eq!((t.planned, t.executed.done), (0, 0), "{t:?}");

    // Someone changes an account behind Tenure's back: an incremental plan
    // does not look, the nightly reconciliation of the wiki does.
    wiki(
        &org,
        "UPDATE users SET active = 0 WHERE login = 'dennis.ritchie'",
    )
    .await;
    clock.set(at(2026, 11, 1, 18));
    let t = sched.tick().await;
    assert_eq!(t.planned, 0, "{t:?}");
    assert!(t.reconciled.is_empty(), "{t:?}");
    clock.set(at(2026, 11, 2, 3) + chrono::Duration::seconds(5));
    // A restart: the schedule comes from the store.
    let engine = org.engine(&clock).await;
    let sched = Scheduler::new(&engine);
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(
        t.reconciled,
        vec![(tenure_core::SystemId::new("wiki").unwrap(), 1)]
    );
    assert_eq!(
        wiki(
            &org,
            "SELECT login, active FROM users WHERE login = 'dennis.ritchie'"
        )
        .await,
        vec![("dennis.ritchie".to_owned(), 1)]
    );
    assert_eq!(
        sched.next_reconciliations().await.unwrap()[0].1,
        at(2026, 11, 3, 3)
    );

    // The next export: joiners, movers and leavers, planned and applied on the next tick.
    std::fs::copy(org.path("hr/2026-11-24.csv"), org.path("hr/current.csv")).unwrap();
    clock.set(at(2026, 11, 24, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    let counts = &t.imported[0].1;
    assert!(
        counts.get("leaver").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
    assert!(
        t.planned > 0 && t.executed.done as usize >= t.planned,
        "{t:?}"
    );
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");

    // The next day the staged leaver's memberships go, by the date alone.
    clock.set(at(2026, 11, 25, 9));
    let t = sched.tick().await;
    assert!(t.errors.is_empty() && t.imported.is_empty(), "{t:?}");
    assert!(t.planned > 0, "{t:?}");
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");

    let audit = engine.store.audit_page(0, 100_000).await.unwrap();
    assert!(audit.iter().any(|r| r.event.action == "import.leaver"));
    assert!(audit.iter().any(|r| r.event.actor == "service:test"));
}

/// The real ledger connector, with its writes cut off while `down` is set
/// (as a network outage would): every operation fails with a transient error.
struct Outage {
    inner: Arc<dyn tenure_connectors::Connector>,
    down: Arc<std::sync::atomic::AtomicBool>,
    attempts: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl tenure_connectors::Connector for Outage {
    fn system(&self) -> &tenure_core::SystemId {
        self.inner.system()
    }
    fn capabilities(&self) -> tenure_core::Capabilities {
        self.inner.capabilities()
    }
    async fn check(&self) -> Result<(), tenure_connectors::ConnectorError> {
        self.inner.check().await
    }
    async fn read_accounts(
        &self,
    ) -> Result<tenure_core::state::SystemAccounts, tenure_connectors::ConnectorError> {
        self.inner.read_accounts().await
    }
    async fn apply(
        &self,
        ops: &[tenure_core::Operation],
    ) -> Vec<Result<(), tenure_connectors::ConnectorError>> {
        use std::sync::atomic::Ordering;
        self.attempts.fetch_add(ops.len(), Ordering::SeqCst);
        if !self.down.load(Ordering::SeqCst) {
            return self.inner.apply(ops).await;
        }
        ops.iter()
            .map(|_| {
                Err(tenure_connectors::ConnectorError::Http {
                    system: self.inner.system().clone(),
                    what: "the write".to_owned(),
                    message: "connection reset by peer".to_owned(),
                    status: None,
                    transient: true,
                    retry_after: None,
                })
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_system_is_quarantined_others_carry_on_and_it_recovers() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let org = prepare();
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let mut engine = org.engine(&clock).await;
    let ledger = tenure_core::SystemId::new("ledger").unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let attempts = Arc::new(AtomicUsize::new(0));
    let inner = engine.connectors[&ledger].clone();
    engine.connectors.insert(
        ledger.clone(),
        Arc::new(Outage {
            inner,
            down: down.clone(),
            attempts: attempts.clone(),
        }),
    );
    let sched = Scheduler::new(&engine);
    let health = |e: &Engine| {
        let e = e.store.clone();
        async move { e.system_health().await.unwrap() }
    };

    // The ledger is down: the others are provisioned, its operations wait.
    let t = sched.tick().await;
    assert!(t.executed.done > 100 && t.executed.failed > 0, "{t:?}");
    let queued = engine.store.queue_counts().await.unwrap().queued;
    assert!(queued > 0, "the ledger's operations wait");
    let h = health(&engine).await;
    assert_eq!((h.len(), h[0].failures), (1, 1), "{h:?}");
    assert!(h[0].quarantined_since.is_none());

    // A second failed batch (after the operations' backoff): quarantined.
    clock.set(at(2026, 11, 1, 9) + chrono::Duration::minutes(1));
    sched.tick().await;
    let h = health(&engine).await;
    assert_eq!(h[0].failures, 2, "{h:?}");
    assert!(h[0].quarantined_since.is_some(), "{h:?}");
    assert_eq!(
        h[0].retry_at,
        Some(at(2026, 11, 1, 9) + chrono::Duration::minutes(11))
    );
    assert!(
        h[0].last_error
            .as_deref()
            .unwrap()
            .contains("connection reset")
    );

    // While quarantined it is not tried, and nothing is dropped.
    let before = attempts.load(Ordering::SeqCst);
    clock.set(at(2026, 11, 1, 9) + chrono::Duration::minutes(6));
    let t = sched.tick().await;
    assert_eq!(attempts.load(Ordering::SeqCst), before, "{t:?}");
    assert_eq!(engine.store.queue_counts().await.unwrap().queued, queued);

    // Its retry time comes, it is back: one probe, then everything.
    down.store(false, Ordering::SeqCst);
    clock.set(at(2026, 11, 1, 9) + chrono::Duration::minutes(12));
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(t.executed.done as u64, queued, "{t:?}");
    let h = health(&engine).await;
    assert_eq!((h[0].failures, h[0].quarantined_since), (0, None), "{h:?}");
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");
    let audit = engine.store.audit_page(0, 100_000).await.unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|r| r.event.subject == "system:ledger")
        .map(|r| r.event.action.as_str())
        .collect();
    assert_eq!(actions, vec!["system.quarantined", "system.recovered"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_is_lifted_by_hand_and_the_work_runs_at_once() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let org = prepare();
    let clock = Arc::new(FixedClock::new(at(2026, 11, 1, 9)));
    let mut engine = org.engine(&clock).await;
    let ledger = tenure_core::SystemId::new("ledger").unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let inner = engine.connectors[&ledger].clone();
    engine.connectors.insert(
        ledger.clone(),
        Arc::new(Outage {
            inner,
            down: down.clone(),
            attempts: Arc::new(AtomicUsize::new(0)),
        }),
    );
    let sched = Scheduler::new(&engine);
    let lift = |system: &str| {
        let engine = &engine;
        let system = tenure_core::SystemId::new(system).unwrap();
        async move {
            tenure_engine::executor::lift_quarantine(engine, "cli:oncall", &system, "ledger fixed")
                .await
        }
    };
    sched.tick().await;
    let err = lift("ledger").await.unwrap_err().to_string();
    assert!(err.contains("not quarantined"), "{err}");
    let err = lift("payroll").await.unwrap_err().to_string();
    assert!(err.contains("payroll"), "{err}");
    clock.set(at(2026, 11, 1, 9) + chrono::Duration::minutes(1));
    sched.tick().await;
    let queued = engine.store.queue_counts().await.unwrap().queued;
    assert!(queued > 0);
    assert!(
        engine.store.system_health().await.unwrap()[0]
            .quarantined_since
            .is_some()
    );

    // Fixed; lifted by hand long before the next probe: everything runs now.
    down.store(false, Ordering::SeqCst);
    clock.set(at(2026, 11, 1, 9) + chrono::Duration::minutes(2));
    lift("ledger").await.unwrap();
    let h = engine.store.system_health().await.unwrap();
    assert_eq!((h[0].failures, h[0].quarantined_since), (0, None), "{h:?}");
    let t = sched.tick().await;
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(t.executed.done as u64, queued, "{t:?}");
    assert_eq!(full_plan_ops(&engine).await, 0, "converged");
    let audit = engine.store.audit_page(0, 100_000).await.unwrap();
    let lifted: Vec<_> = audit
        .iter()
        .filter(|r| r.event.subject == "system:ledger")
        .map(|r| (r.event.action.as_str(), r.event.actor.as_str()))
        .collect();
    assert_eq!(
        lifted,
        vec![
            ("system.quarantined", "service:test"),
            ("system.quarantine_lifted", "cli:oncall")
        ]
    );
}
