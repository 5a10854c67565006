//! The command line on the example organisation.

use crate::support::{BIN, Org, write};

#[test]
fn demo_output_is_stable_and_tells_the_story() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = std::process::Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    // The audit records hold the files' full paths, so the chain's head hash depends on the directory.
    let mask = |text: String| -> String {
        text.lines()
            .map(|l| {
                match l
                    .strip_prefix("Head: record ")
                    .and_then(|r| r.split_once(", hash "))
                {
                    Some((n, rest)) => format!(
                        "Head: record {n}, hash <HASH>{}",
                        &rest[rest.find(' ').unwrap_or(rest.len())..]
                    ),
                    None => l.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let out = mask(String::from_utf8_lossy(&o.stdout).replace(&dir.display().to_string(), "<DIR>"));
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for must in [
        "joiner",
        "mover",
        "leaver",
        "leaver_scheduled",
        "Audit log intact",
        "orphaned",
    ] {
        assert!(out.contains(must), "demo output lacks {must:?}:\n{out}");
    }
    insta::assert_snapshot!("demo", out);
    // Running it again starts afresh.
    let again = std::process::Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        mask(String::from_utf8_lossy(&again.stdout).replace(&dir.display().to_string(), "<DIR>")),
        out
    );
}

#[test]
fn demo_refuses_a_directory_it_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("precious.txt"), "keep me");
    let o = std::process::Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a Tenure demo directory"));
    assert!(tmp.path().join("precious.txt").exists());
}

/// Batches of one: each lane records a batch while it claims and runs the
/// next, and a membership becomes runnable only when the record of its
/// account's create commits. The lanes keep claiming until nothing is left,
/// so one apply still does every operation, each exactly once.
#[test]
fn batches_of_one_pipelined_finish_every_operation_once() {
    let org = Org::new();
    org.import("2026-11-01", "hr/2026-11-01.csv");
    let planned = org.pending_operations("2026-11-01");
    let applied = org
        .run(&["--now", "2026-11-01", "--batch", "1", "apply", "--json"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&applied.stdout).unwrap();
    assert_eq!(v["executed"]["done"].as_u64(), Some(planned as u64), "{v}");
    assert_eq!(v["executed"]["failed"].as_u64(), Some(0), "{v}");
    assert_eq!(org.pending_operations("2026-11-01"), 0);
    let done: Vec<_> = org
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "operation.done")
        .map(|r| r["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(done.len(), planned);
    let unique: std::collections::BTreeSet<_> = done.iter().collect();
    assert_eq!(
        unique.len(),
        planned,
        "an operation was recorded done twice"
    );
}

#[test]
fn lifecycle_converges_and_every_operation_is_audited_once() {
    let org = Org::new();
    org.import("2026-11-01", "hr/2026-11-01.csv");
    let applied = org.run(&["--now", "2026-11-01", "apply", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&applied.stdout).unwrap();
    let first = v["executed"]["done"].as_u64().unwrap();
    assert!(first > 100, "{v}");
    assert_eq!(
        org.pending_operations("2026-11-01"),
        0,
        "after apply, the systems match policy"
    );

    org.import("2026-11-24", "hr/2026-11-24.csv");
    let second = org.run(&["--now", "2026-11-24", "apply", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(org.pending_operations("2026-11-24"), 0);

    // Time moves on: the staged deprovisioning of E1030 strips memberships the next day, deletes after 30 days.
    let plan = org.run(&["--now", "2026-11-25T09:00:00Z", "plan"]).ok();
    assert!(
        plan.stdout.contains("remove karen.jones from all-staff"),
        "{}",
        plan.stdout
    );
    let plan = org.run(&["--now", "2026-12-24T09:00:00Z", "plan"]).ok();
    assert!(
        plan.stdout.contains("delete account karen.jones"),
        "{}",
        plan.stdout
    );

    let audit = org.audit();
    let done: Vec<&serde_json::Value> = audit
        .iter()
        .filter(|r| r["action"] == "operation.done")
        .collect();
    assert_eq!(
        done.len() as u64,
        first + v["executed"]["done"].as_u64().unwrap()
    );
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "import.leaver" && r["subject"] == "identity:E1030")
    );
    assert!(
        audit
            .iter()
            .all(|r| r["actor"] == "cli:tester" || r["actor"] == "tenure"),
        "actors recorded"
    );
    org.run(&["audit", "verify"]).ok();

    let access = org
        .run(&["--now", "2026-11-24", "report", "access", "--format", "csv"])
        .ok();
    assert!(
        access
            .stdout
            .starts_with("identity,name,status,system,account,state,entitlements,why")
    );
    assert!(
        access.stdout.contains(
            "E1016,Dennis Ritchie,active,crm,dennis.ritchie,enabled,\"sales-manager,sales-rep\""
        ),
        "{}",
        access.stdout
    );
    let leavers = org
        .run(&[
            "--now",
            "2026-11-24",
            "report",
            "leavers",
            "--format",
            "json",
        ])
        .ok();
    let rows: serde_json::Value = serde_json::from_str(&leavers.stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        1,
        "only Karen still holds something: {rows}"
    );
    assert_eq!(rows[0]["identity"], "E1030");
    let orphans = org.run(&["report", "orphans"]).ok();
    assert!(orphans.stdout.contains("old-admin"), "{}", orphans.stdout);
}

#[test]
fn a_bad_hr_file_is_rejected_whole_and_changes_nothing() {
    let org = Org::new();
    org.import("2026-11-01", "hr/2026-11-01.csv");
    let before = org
        .run(&["--now", "2026-11-01", "plan", "--json"])
        .ok()
        .stdout;
    let good = std::fs::read_to_string(org.path("hr/2026-11-24.csv")).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replace("2020-03-12", "2020-13-45"); // line 4: a date that does not exist
    let bad = org.path("hr/bad.csv");
    write(&bad, &(lines.join("\n") + "\n"));
    let r = org
        .run(&["--now", "2026-11-24", "import", bad.to_str().unwrap()])
        .fails_with(1);
    assert!(r.stderr.contains("bad.csv:4"), "{}", r.stderr);
    assert!(r.stderr.contains("2020-13-45"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was imported"), "{}", r.stderr);
    // The joiners and movers in the rest of the file were not stored.
    assert_eq!(
        org.run(&["--now", "2026-11-01", "plan", "--json"])
            .ok()
            .stdout,
        before
    );
    let audit = org.audit();
    assert!(!audit.iter().any(|r| r["subject"] == "identity:E1051"));
}

#[test]
fn the_mass_change_guard_refuses_a_truncated_file_until_overridden() {
    let org = Org::new();
    let full = org.path("hr/2026-11-01.csv");
    org.run(&["--now", "2026-11-01", "import", full.to_str().unwrap()])
        .ok();
    org.run(&["--now", "2026-11-01", "apply"]).ok();
    // A truncated export: the header and 20 people. The source says missing people have left.
    let text = std::fs::read_to_string(&full).unwrap();
    let truncated: Vec<&str> = text.lines().take(21).collect();
    let cut = org.path("hr/truncated.csv");
    write(&cut, &(truncated.join("\n") + "\n"));
    let r = org
        .run(&["--now", "2026-11-02", "import", cut.to_str().unwrap()])
        .fails_with(3);
    assert!(
        r.stderr.contains("30 of 50 identities becoming leavers"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--allow-mass-change"), "{}", r.stderr);
    assert_eq!(org.pending_operations("2026-11-02"), 0, "nothing changed");
    assert!(org.audit().iter().any(|r| r["action"] == "guard.refused"));

    org.run(&[
        "--now",
        "2026-11-02",
        "import",
        "--allow-mass-change",
        cut.to_str().unwrap(),
    ])
    .ok();
    let audit = org.audit();
    let o = audit
        .iter()
        .find(|r| r["action"] == "guard.override")
        .expect("override recorded");
    assert_eq!(o["actor"], "cli:tester");
    // The plan would now disable many accounts: the plan guard refuses too.
    let r = org.run(&["--now", "2026-11-02", "apply"]).fails_with(3);
    assert!(
        r.stderr.contains("accounts disabled or deleted"),
        "{}",
        r.stderr
    );
    org.run(&["--now", "2026-11-02", "apply", "--allow-mass-change"])
        .ok();
    assert_eq!(org.pending_operations("2026-11-02"), 0);
}

#[test]
fn a_saved_plan_is_applied_exactly_or_refused_when_stale() {
    let org = Org::new();
    org.import("2026-11-01", "hr/2026-11-01.csv");
    let saved = org.path("plan.json");
    org.run(&[
        "--now",
        "2026-11-01",
        "plan",
        "--out",
        saved.to_str().unwrap(),
    ])
    .ok();
    // Something changes before it is applied: a new export arrives.
    org.import("2026-11-24", "hr/2026-11-24.csv");
    let r = org
        .run(&["--now", "2026-11-24", "apply", saved.to_str().unwrap()])
        .fails_with(3);
    assert!(r.stderr.contains("no longer matches"), "{}", r.stderr);
    // A fresh plan applies.
    org.run(&[
        "--now",
        "2026-11-24",
        "plan",
        "--out",
        saved.to_str().unwrap(),
    ])
    .ok();
    let r = org
        .run(&[
            "--now",
            "2026-11-24",
            "apply",
            "--json",
            saved.to_str().unwrap(),
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let planned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        v["executed"]["done"].as_u64().unwrap() as usize,
        planned["operations"].as_array().unwrap().len()
    );
    // Garbage is not a plan.
    write(&saved, "{\n  \"format\": 1,\n  \"operations\": [oops]\n}\n");
    let r = org.run(&["apply", saved.to_str().unwrap()]).fails_with(1);
    assert!(
        r.stderr.contains("not a Tenure plan") && r.stderr.contains("line 3"),
        "{}",
        r.stderr
    );
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let org = Org::new();
    org.run(&["check"]).ok();
    let rules = org.path("config/rules.toml");
    let text = std::fs::read_to_string(&rules).unwrap();
    let broken = text
        .replace("roles = [\"engineering\"]", "roles = [\"enginering\"]")
        .replace(
            "identity.department == \"Finance\" && identity.employment_type",
            "identity.departmnet == \"Finance\" && identity.employment_type",
        );
    write(&rules, &broken);
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let r = org.run(&["check"]).fails_with(1);
    assert!(
        r.stderr
            .contains(&format!("rules.toml:{}", line_of("enginering"))),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("unknown role \"enginering\""),
        "{}",
        r.stderr
    );
    // Every command refuses an invalid configuration.
    org.run(&["plan"]).fails_with(1);

    // The service's settings: a reconciliation schedule that is no cron
    // pattern, and a delay that is no delay.
    write(&rules, &text);
    let systems = org.path("config/systems.toml");
    let sys = std::fs::read_to_string(&systems).unwrap().replacen(
        "id = \"crm\"\n",
        "id = \"crm\"\nreconcile = \"every night\"\n",
        1,
    );
    write(&systems, &sys);
    let cfg = org.path("config/tenure.toml");
    let tenure = format!(
        "{}\n[service]\nquarantine_retry = \"soon\"\n",
        std::fs::read_to_string(&cfg).unwrap()
    );
    write(&cfg, &tenure);
    let r = org.run(&["check"]).fails_with(1);
    let line = sys.lines().position(|l| l.contains("every night")).unwrap() + 1;
    assert!(
        r.stderr.contains(&format!("systems.toml:{line}"))
            && r.stderr
                .contains("reconcile \"every night\" is not a cron pattern"),
        "{}",
        r.stderr
    );
    let line = tenure.lines().position(|l| l == "[service]").unwrap() + 1;
    assert!(
        r.stderr.contains(&format!("tenure.toml:{line}"))
            && r.stderr.contains("[service] quarantine_retry"),
        "{}",
        r.stderr
    );
}

#[test]
fn audit_verify_names_a_tampered_record() {
    let org = Org::new();
    org.import("2026-11-01", "hr/2026-11-01.csv");
    org.run(&["--now", "2026-11-01", "apply"]).ok();
    org.run(&["audit", "verify"]).ok();
    let db = org.path("tenure.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 7")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let r = org.run(&["audit", "verify"]).fails_with(4);
    assert!(
        r.stdout.contains("record 7") && r.stdout.contains("edited"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_refused_operation_stays_visible_until_an_operator_retries_it() {
    let org = Org::new();
    let crm = org.path("apps/crm.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exec = |sql: &'static str| {
        rt.block_on(async {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&format!("sqlite:{}", crm.display()))
                .await
                .unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        })
    };
    // The CRM refuses one user name.
    exec(
        "CREATE TRIGGER reserved BEFORE INSERT ON crm_users WHEN NEW.username = 'donald.knuth' \
          BEGIN SELECT RAISE(ABORT, 'username is reserved'); END",
    );
    org.import("2026-11-01", "hr/2026-11-01.csv");
    let r = org.run(&["--now", "2026-11-01", "apply"]).fails_with(1);
    assert!(
        r.stdout.contains("failed for good and need attention"),
        "{}",
        r.stdout
    );
    let q = org.run(&["queue"]).ok();
    assert!(
        q.stdout.contains("username is reserved") && q.stdout.contains("donald.knuth"),
        "{}",
        q.stdout
    );
    let audit = org.audit();
    assert!(
        audit.iter().any(|r| r["action"] == "operation.failed"
            && r["subject"] == "system:crm/account:donald.knuth")
    );
    // Planning again does not queue the same change twice.
    let plan = org.run(&["--now", "2026-11-01", "plan"]).ok();
    assert!(
        plan.stdout
            .contains("create of donald.knuth is already queued"),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("+ create account donald.knuth"),
        "{}",
        plan.stdout
    );
    // The cause is fixed; an operator retries; the work finishes.
    exec("DROP TRIGGER reserved");
    let r = org
        .run(&["--now", "2026-11-01", "queue", "--retry-failed"])
        .ok();
    assert!(
        r.stdout.contains("1 failed operation(s) queued again"),
        "{}",
        r.stdout
    );
    org.run(&["--now", "2026-11-01", "work"]).ok();
    let q = org.run(&["queue"]).ok();
    assert!(
        q.stdout
            .starts_with("queued 0, running 0, done 175, failed 0"),
        "{}",
        q.stdout
    );
    assert_eq!(org.pending_operations("2026-11-01"), 0);
    let audit = org.audit();
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "queue.retry_failed" && r["actor"] == "cli:tester")
    );
    assert!(
        audit.iter().any(|r| r["action"] == "operation.done"
            && r["subject"] == "system:crm/account:donald.knuth")
    );
}

#[test]
fn discover_reports_linked_correlated_and_orphaned_accounts_and_changes_nothing() {
    let org = Org::new();
    org.import("2026-11-01", "hr/2026-11-01.csv");
    // Before the first apply: Ada's wiki account is found by correlation.
    let wiki = org
        .run(&[
            "--now",
            "2026-11-01",
            "discover",
            "wiki",
            "--format",
            "json",
        ])
        .ok();
    let rows: serde_json::Value = serde_json::from_str(&wiki.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["account"], "alovelace");
    assert_eq!(rows[0]["status"], "correlated");
    assert_eq!(rows[0]["entitlements"], serde_json::json!(["all-staff"]));
    let ada = rows[0]["identity"].as_str().unwrap().to_owned();
    // Discovering saved nothing: the wiki account is correlated again, not linked.
    let again = org
        .run(&[
            "--now",
            "2026-11-01",
            "discover",
            "wiki",
            "--format",
            "json",
        ])
        .ok();
    assert_eq!(again.stdout, wiki.stdout);

    org.run(&["--now", "2026-11-01", "apply"]).ok();
    let crm = org.run(&["--now", "2026-11-01", "discover", "crm"]).ok();
    assert!(
        crm.stdout
            .lines()
            .any(|l| l.contains("old-admin") && l.contains("orphaned")),
        "{}",
        crm.stdout
    );
    assert!(
        crm.stdout
            .contains("0 correlated now, 1 orphaned, 0 ambiguous")
            && crm.stdout.contains("Nothing was changed."),
        "{}",
        crm.stdout
    );
    let wiki = org
        .run(&["--now", "2026-11-01", "discover", "wiki", "--format", "csv"])
        .ok();
    assert!(
        wiki.stdout
            .lines()
            .any(|l| l.starts_with("alovelace,enabled,linked,") && l.contains(&ada)),
        "{}",
        wiki.stdout
    );

    // A system that cannot be read: the error names it and says why.
    std::fs::write(org.path("apps/crm.db"), b"this is not a database").unwrap();
    let unreadable = org.run(&["--now", "2026-11-01", "discover", "crm"]);
    assert_ne!(unreadable.code, 0);
    assert!(
        unreadable
            .stderr
            .contains("could not read the accounts: system crm:"),
        "{}",
        unreadable.stderr
    );

    let unknown = org.run(&["discover", "payroll"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown
            .stderr
            .contains("no system payroll in the configuration"),
        "{}",
        unknown.stderr
    );
}

/// The shipped example of an LDAP directory, Active Directory and a SCIM
/// application stays valid (checked without connecting); a mistake in a
/// connector setting is reported with its file and line.
#[test]
fn the_directories_example_configuration_is_valid() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/directories/config");
    let out = std::process::Command::new(crate::support::BIN)
        .args(["--config", example.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 system(s)"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    for f in ["tenure.toml", "roles.toml", "rules.toml", "systems.toml"] {
        let text = std::fs::read_to_string(example.join(f)).unwrap();
        let text = if f == "systems.toml" {
            text.replace(
                "disable_method = \"ppolicy\"",
                "disable_method = \"vanish\"",
            )
        } else {
            text.replace("../../acme/hr", "hr")
        };
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    let out = std::process::Command::new(crate::support::BIN)
        .args(["--config", dir.path().to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("systems.toml") && stderr.contains("disable_method"),
        "{stderr}"
    );
}

/// Operations of `plan --json` (with `--changed` or not) at `now`, and whether
/// the plan was made for the changed people only.
fn plan_ops(org: &Org, now: &str, changed: bool) -> (Vec<serde_json::Value>, bool) {
    let mut args = vec!["--now", now, "plan", "--json"];
    if changed {
        args.push("--changed");
    }
    let r = org.run(&args).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    (
        v["operations"].as_array().unwrap().clone(),
        v["changed_only"].as_bool().unwrap_or(false),
    )
}

#[test]
fn incremental_plans_match_full_reconciliation_through_joiners_movers_leavers_and_dates() {
    let org = Org::new();
    org.import("2026-11-01", "hr/2026-11-01.csv");
    // No plan applied yet: --changed covers everyone, and says so.
    let first = org.run(&["--now", "2026-11-01", "plan", "--changed"]).ok();
    assert!(
        first.stdout.contains("this plan covers everyone"),
        "{}",
        first.stdout
    );
    let (ops, changed_only) = plan_ops(&org, "2026-11-01", true);
    assert!(!changed_only);
    assert_eq!(ops, plan_ops(&org, "2026-11-01", false).0);
    org.run(&["--now", "2026-11-01", "apply", "--changed"]).ok();
    let (ops, changed_only) = plan_ops(&org, "2026-11-01", true);
    assert!(changed_only, "a plan was applied: only changes are planned");
    assert!(ops.is_empty(), "{ops:?}");

    // Joiners, movers and leavers of the next export.
    org.import("2026-11-24", "hr/2026-11-24.csv");
    let (incremental, changed_only) = plan_ops(&org, "2026-11-24", true);
    assert!(changed_only);
    let (full, _) = plan_ops(&org, "2026-11-24", false);
    assert!(full.len() > 10, "{full:?}");
    assert_eq!(incremental, full, "the same operations, in the same order");
    let text = org
        .run(&["--now", "2026-11-24", "plan", "--changed"])
        .ok()
        .stdout;
    assert!(text.contains("who changed or whose dates came"), "{text}");

    // A saved incremental plan is applied exactly.
    let saved = org.path("changed-plan.json");
    org.run(&[
        "--now",
        "2026-11-24",
        "plan",
        "--changed",
        "--out",
        saved.to_str().unwrap(),
    ])
    .ok();
    org.run(&["--now", "2026-11-24", "apply", saved.to_str().unwrap()])
        .ok();
    assert_eq!(org.pending_operations("2026-11-24"), 0);
    assert!(plan_ops(&org, "2026-11-24", true).0.is_empty());

    // Nobody changed, but the staged leaver's next step comes the next day,
    // and deletion after 30 days: the incremental plan sees both, by their dates.
    for (now, step) in [
        ("2026-11-25T09:00:00Z", "remove_membership"),
        ("2026-12-24T09:00:00Z", "delete_account"),
    ] {
        let (incremental, changed_only) = plan_ops(&org, now, true);
        assert!(changed_only);
        let (full, _) = plan_ops(&org, now, false);
        assert!(!full.is_empty(), "a step is due at {now}");
        assert_eq!(incremental, full, "at {now}");
        let karen: Vec<&str> = incremental
            .iter()
            .filter(|o| o["identity"] == "E1030")
            .map(|o| o["action"].as_str().unwrap())
            .collect();
        assert!(
            karen.contains(&step),
            "Karen's {step} is due at {now}: {incremental:?}"
        );
        org.run(&["--now", now, "apply", "--changed"]).ok();
        assert_eq!(org.pending_operations(now), 0, "at {now}");
    }
}

#[test]
fn suspend_disables_everywhere_first_and_resume_restores_access() {
    let org = Org::new();
    let now = "2026-11-01";
    org.run(&[
        "--now",
        now,
        "import",
        org.path("hr/2026-11-01.csv").to_str().unwrap(),
    ])
    .ok();
    org.run(&["--now", now, "apply"]).ok();
    let access = |org: &Org| {
        org.run(&["--now", now, "report", "access", "--format", "csv"])
            .ok()
            .stdout
            .lines()
            .filter(|l| l.starts_with("E1016,"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let before = access(&org);
    assert!(before.len() >= 2, "{before:?}");
    assert!(before.iter().all(|l| l.contains(",enabled,")), "{before:?}");

    // One person's plan, on demand: only their operations (none now).
    let (ops, _) = {
        let r = org
            .run(&["--now", now, "plan", "--json", "--identity", "E1016"])
            .ok();
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        (v["operations"].as_array().unwrap().clone(), v)
    };
    assert!(ops.is_empty(), "{ops:?}");

    let r = org
        .run(&[
            "--now",
            now,
            "suspend",
            "E1016",
            "--reason",
            "phishing report",
            "--json",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["suspended"], true);
    let systems = v["systems"].as_array().unwrap();
    assert_eq!(
        systems.len(),
        before.len(),
        "every system with an account: {v}"
    );
    for s in systems {
        assert_eq!(s["done"], s["operations"], "{s}");
        assert!(s["confirmed_after_s"].as_f64().unwrap() < 5.0, "{s}");
    }
    let after = access(&org);
    assert!(after.iter().all(|l| l.contains(",disabled,")), "{after:?}");
    assert!(
        after.iter().all(|l| l.contains(",suspended,")),
        "status shown: {after:?}"
    );
    // Entitlements are kept while suspended, so that a resume restores them.
    assert_eq!(
        after
            .iter()
            .map(|l| l.split(',').nth(6).unwrap().to_owned())
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|l| l.split(',').nth(6).unwrap().to_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(org.pending_operations(now), 0, "a full plan agrees");
    let text = org
        .run(&["--now", now, "suspend", "E1016", "--reason", "again"])
        .ok()
        .stdout;
    assert!(text.contains("already"), "{text}");

    let r = org
        .run(&["--now", now, "resume", "E1016", "--reason", "cleared"])
        .ok();
    assert!(r.stdout.contains("Resumed E1016"), "{}", r.stdout);
    assert!(r.stdout.contains("confirmed after"), "{}", r.stdout);
    assert_eq!(access(&org), before);
    assert_eq!(org.pending_operations(now), 0);

    let audit = org.audit();
    let s = audit
        .iter()
        .find(|e| e["action"] == "identity.suspended")
        .unwrap();
    assert_eq!(s["subject"], "identity:E1016");
    assert_eq!(s["reason"], "phishing report");
    assert_eq!(s["actor"], "cli:tester");
    assert!(audit.iter().any(|e| e["action"] == "identity.resumed"));
    org.run(&["audit", "verify"]).ok();

    // Bad requests: an unknown person, an empty reason.
    let bad = org
        .run(&["--now", now, "suspend", "E9999", "--reason", "x"])
        .fails_with(1);
    assert!(bad.stderr.contains("no identity E9999"), "{}", bad.stderr);
    let bad = org
        .run(&["--now", now, "suspend", "E1016", "--reason", " "])
        .fails_with(1);
    assert!(bad.stderr.contains("needs a reason"), "{}", bad.stderr);
}

#[test]
fn status_shows_a_leavers_timeline_step_by_step() {
    let org = Org::new();
    for (now, file) in [
        ("2026-11-01", "hr/2026-11-01.csv"),
        ("2026-11-24", "hr/2026-11-24.csv"),
    ] {
        org.run(&["--now", now, "import", org.path(file).to_str().unwrap()])
            .ok();
        org.run(&["--now", now, "apply"]).ok();
    }
    let status = |now: &str| -> serde_json::Value {
        let r = org.run(&["--now", now, "status", "E1030", "--json"]).ok();
        serde_json::from_str(&r.stdout).unwrap()
    };
    let t = status("2026-11-24T12:00:00Z");
    assert_eq!(t["status"], "leaver");
    let actions: Vec<&str> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["import.joiner", "import.leaver"], "{t}");
    let schedule: Vec<(&str, bool)> = t["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["reached"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        schedule,
        vec![
            ("disable", true),
            ("remove_memberships", false),
            ("delete", false)
        ]
    );
    assert_eq!(t["next_due"], "2026-11-25T00:00:00Z");
    let ops = t["operations"].as_array().unwrap();
    let disabled: Vec<&serde_json::Value> =
        ops.iter().filter(|o| o["action"] == "disable").collect();
    assert!(!disabled.is_empty(), "{t}");
    for o in &disabled {
        assert_eq!(o["state"], "done", "{o}");
        assert!(o["why"].as_str().unwrap().contains("employees"), "{o}");
    }

    // The next day the memberships go; the timeline shows them done.
    org.run(&["--now", "2026-11-25T09:00:00Z", "apply", "--changed"])
        .ok();
    let t = status("2026-11-25T09:00:00Z");
    assert!(
        t["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["action"] == "remove_membership all-staff" && o["state"] == "done"),
        "{t}"
    );
    let text = org
        .run(&["--now", "2026-11-25T09:00:00Z", "status", "E1030"])
        .ok()
        .stdout;
    assert!(text.contains("Deprovisioning schedule:"), "{text}");
    assert!(text.contains("remove_memberships"), "{text}");
    org.run(&["status", "E9999"]).fails_with(1);
}

#[test]
fn a_legal_hold_stops_deletion_until_released() {
    let org = Org::new();
    for (now, file) in [
        ("2026-11-01", "hr/2026-11-01.csv"),
        ("2026-11-24", "hr/2026-11-24.csv"),
    ] {
        org.run(&["--now", now, "import", org.path(file).to_str().unwrap()])
            .ok();
        org.run(&["--now", now, "apply"]).ok();
    }
    org.run(&["hold", "E1030", "--reason", "case 2026-118"])
        .ok();
    let day30 = "2026-12-24T09:00:00Z";
    // Thirty days on, the staged leaver would be deleted; held, the account stays.
    let r = org.run(&["--now", day30, "plan", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let karen: Vec<&serde_json::Value> = v["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["identity"] == "E1030")
        .collect();
    assert!(
        karen.iter().all(|o| o["action"] != "delete_account"),
        "held: no deletion: {karen:?}"
    );
    org.run(&["--now", day30, "apply", "--changed"]).ok();
    let access = org
        .run(&["--now", day30, "report", "access", "--format", "csv"])
        .ok()
        .stdout;
    assert!(
        access.contains("E1030,Karen Jones,leaver,wiki,karen.jones,disabled"),
        "{access}"
    );
    let status = org.run(&["--now", day30, "status", "E1030"]).ok().stdout;
    assert!(status.contains("Legal hold since"), "{status}");
    assert!(status.contains("case 2026-118"), "{status}");

    // Released: the next plan for her, even an incremental one, deletes.
    org.run(&["release", "E1030", "--reason", "case closed"])
        .ok();
    let r = org
        .run(&["--now", day30, "plan", "--changed", "--json"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        v["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["identity"] == "E1030" && o["action"] == "delete_account"),
        "{v}"
    );
    let audit = org.audit();
    for (action, reason) in [
        ("identity.legal_hold", "case 2026-118"),
        ("identity.legal_hold_released", "case closed"),
    ] {
        assert!(
            audit.iter().any(|r| r["action"] == action
                && r["reason"] == reason
                && r["actor"] == "cli:tester"),
            "{action}"
        );
    }
    org.run(&["hold", "E1030", "--reason", " "]).fails_with(1);
    org.run(&["hold", "E9999", "--reason", "x"]).fails_with(1);
}

/// `plan --identity` and `apply --identity` print the trace of why before
/// the plan: source record → attributes → rules → roles → each system.
#[test]
fn plan_and_apply_for_one_person_print_the_trace_of_why() {
    let org = Org::new();
    let now = "2026-11-01";
    org.run(&["--now", now, "import"]).ok();
    org.run(&["--now", now, "apply"]).ok();

    let r = org.run(&["--now", now, "plan", "--identity", "E1016"]).ok();
    let trace_at = r.stdout.find("Trace for E1016 (source hr)").unwrap();
    let plan_at = r.stdout.find("Plan ").unwrap();
    assert!(trace_at < plan_at, "the trace comes first:\n{}", r.stdout);
    for needle in [
        "    title = \"Account Executive\"",
        "  status: active (started on 2025-07-15)",
        "    sales [identity.department == \"Sales\" && !identity.title.contains(\"Manager\")]: matched → sales",
        "    sales-managers [identity.department == \"Sales\" && identity.title.contains(\"Manager\")]: no match",
        "    sales (gives crm:sales-rep, wiki:sales)\n      via rule sales → role sales",
        "    crm (Sales CRM): account dennis.ritchie  [rule sales → role sales]",
        "        entitlement sales-rep  [rule sales → role sales]",
        "    ledger (Finance ledger): no account: nothing justifies one",
        "Nothing to do: every system matches policy.",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} in\n{}", r.stdout);
    }
    let v: serde_json::Value = serde_json::from_str(
        &org.run(&["--now", now, "plan", "--json", "--identity", "E1016"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["operations"], serde_json::json!([]));
    let t = &v["trace"][0];
    assert_eq!(t["identity"], "E1016");
    assert_eq!(t["status"], "active");
    let matched: Vec<&str> = t["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["matched"] == true)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(matched, ["employees", "sales"]);
    // A full plan's JSON has no trace.
    let full: serde_json::Value =
        serde_json::from_str(&org.run(&["--now", now, "plan", "--json"]).ok().stdout).unwrap();
    assert!(full.get("trace").is_none());

    // HR promotes him: applied for him alone, the trace says why first.
    let later = "2026-11-24";
    org.run(&[
        "--now",
        later,
        "import",
        org.path("hr/2026-11-24.csv").to_str().unwrap(),
    ])
    .ok();
    let r = org
        .run(&["--now", later, "apply", "--identity", "E1016"])
        .ok();
    for needle in [
        "    title = \"Sales Manager\"",
        "matched → sales-manager",
        "    sales (gives crm:sales-rep, wiki:sales)\n      via rule sales-managers → role sales-manager → role sales",
        "entitlement sales-manager  [rule sales-managers → role sales-manager]",
        "    + add dennis.ritchie to sales-manager  [rule sales-managers → role sales-manager]",
        "confirmed by their systems, 0 failed",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} in\n{}", r.stdout);
    }
    // Only he was planned: the other movers and leavers wait.
    assert!(!r.stdout.contains("E1030"), "{}", r.stdout);
    let v: serde_json::Value = serde_json::from_str(
        &org.run(&["--now", later, "apply", "--json", "--identity", "E1006"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["trace"][0]["identity"], "E1006");
    assert!(v["executed"]["done"].as_u64().unwrap() > 0, "{v}");
    // A leaver under a legal hold: the trace shows the step in force and the hold.
    org.run(&["hold", "E1030", "--reason", "case 2026-118"])
        .ok();
    let r = org
        .run(&["--now", "2026-12-30", "plan", "--identity", "E1030"])
        .ok();
    for needle in [
        "  status: leaver (end date 2026-11-24 reached",
        "  legal hold: in force; nothing is deleted until it is released",
        "  deprovisioning: policy ",
        "— due",
        "legal hold: kept, not deleted]",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} in\n{}", r.stdout);
    }
    let bad = org.run(&["--now", later, "plan", "--identity", "E9999"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("no identity E9999"), "{}", bad.stderr);
}

/// `tenure explain IDENTITY SYSTEM`: the rule → role path behind an account
/// and each entitlement, read from the system for that one person; access
/// nothing justifies is named, with what a plan would do about it.
#[test]
fn explain_says_why_a_person_has_access_and_what_nothing_justifies() {
    explain_scenario(&Org::new());
}

/// The same with Tenure's store on PostgreSQL (a fresh database, dropped after).
#[test]
fn explain_says_why_a_person_has_access_on_postgres() {
    let Ok(base) = std::env::var("TENURE_TEST_POSTGRES") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "TENURE_TEST_POSTGRES is not set, and CI runs every variant"
        );
        eprintln!("TENURE_TEST_POSTGRES is not set: explain on PostgreSQL is skipped");
        return;
    };
    let name = format!(
        "tenure_explain_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    });
    let _drop = crate::crash::DropDatabase {
        base: base.clone(),
        name: name.clone(),
    };
    let mut org = Org::new();
    org.database = match base.rfind('/') {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => panic!("TENURE_TEST_POSTGRES must end in /database"),
    };
    explain_scenario(&org);
}

fn explain_scenario(org: &Org) {
    let now = "2026-11-01";
    org.run(&["--now", now, "import"]).ok();
    org.run(&["--now", now, "apply"]).ok();
    let r = org.run(&["--now", now, "explain", "E1016", "crm"]).ok();
    assert_eq!(
        r.stdout,
        "E1016 Dennis Ritchie (active, started on 2025-07-15) on crm (Sales CRM)\n\
         Account dennis.ritchie: exists, enabled, linked to this person\n\
         \x20 because rule sales → role sales\n\
         \x20 → justified\n\
         Entitlements:\n\
         \x20 sales-rep (held)\n\
         \x20   because rule sales → role sales\n\
         \x20   → justified\n\
         A plan would change nothing here for E1016.\n"
    );

    // Someone gives him CRM approvals by hand, and a group Tenure does not manage.
    let crm = org.path("apps/crm.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("sqlite:{}", crm.display()))
            .await
            .unwrap();
        for role in ["sales-manager", "beta-testers"] {
            sqlx::query("INSERT INTO crm_user_roles (username, role) VALUES ('dennis.ritchie', ?)")
                .bind(role)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    });
    let r = org.run(&["--now", now, "explain", "E1016", "crm"]).ok();
    for needle in [
        "  sales-manager (held)\n    → not justified by anything: will be removed\n",
        "  beta-testers (held)\n    → not managed by Tenure (not in the system's entitlements): left alone\n",
        "  sales-rep (held)\n    because rule sales → role sales\n    → justified\n",
        "A plan would:\n  remove membership dennis.ritchie sales-manager  [no longer justified by any rule]\n",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} in\n{}", r.stdout);
    }
    let v: serde_json::Value = serde_json::from_str(
        &org.run(&["--now", now, "explain", "E1016", "crm", "--json"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["account"]["key"], "dennis.ritchie");
    assert_eq!(v["account"]["linked"], true);
    let ents = v["entitlements"].as_array().unwrap();
    let unjustified = ents
        .iter()
        .find(|e| e["entitlement"] == "sales-manager")
        .unwrap();
    assert_eq!(unjustified["held"], true);
    assert_eq!(unjustified["justified_by"], serde_json::json!([]));
    let justified = ents
        .iter()
        .find(|e| e["entitlement"] == "sales-rep")
        .unwrap();
    assert_eq!(
        justified["justified_by"][0],
        serde_json::json!({"kind": "birthright", "rule": "sales", "roles": ["sales"]})
    );
    assert_eq!(v["operations"].as_array().unwrap().len(), 1);
    assert_eq!(v["trace"]["identity"], "E1016");

    // Suspended: the account is disabled, its entitlements kept for a resume.
    org.run(&["--now", now, "suspend", "E1016", "--reason", "phishing"])
        .ok();
    let r = org.run(&["--now", now, "explain", "E1016", "crm"]).ok();
    for needle in [
        "E1016 Dennis Ritchie (suspended, suspended by an operator",
        "Account dennis.ritchie: exists, disabled, linked to this person\n  because identity suspended\n  → disabled, and stays so: identity suspended\n",
        "  sales-rep (held)\n    → kept while the account is disabled: identity suspended\n",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} in\n{}", r.stdout);
    }
    org.run(&["--now", now, "resume", "E1016", "--reason", "new password"])
        .ok();

    // A system with no account for him: nothing justifies one.
    let r = org.run(&["--now", now, "explain", "E1016", "ledger"]).ok();
    assert!(
        r.stdout
            .contains("Account (none): does not exist\n  because no longer justified by any rule\n  → no account, and nothing justifies one\n"),
        "{}",
        r.stdout
    );
    // A leaver: the deprovisioning step in force says why.
    let later = "2026-11-24";
    org.run(&[
        "--now",
        later,
        "import",
        org.path("hr/2026-11-24.csv").to_str().unwrap(),
    ])
    .ok();
    let r = org.run(&["--now", later, "explain", "E1030", "wiki"]).ok();
    assert!(
        r.stdout.contains("(leaver, end date 2026-11-24 reached"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("→ will be disabled: leaver since 2026-11-24"),
        "{}",
        r.stdout
    );

    // A system that cannot be read: said so, and what policy says stands.
    std::fs::write(org.path("apps/crm.db"), b"this is not a database").unwrap();
    let r = org.run(&["--now", later, "explain", "E1016", "crm"]).ok();
    for needle in [
        "  the system could not be read: ",
        "Account dennis.ritchie: unknown (not read), linked to this person\n",
        "  → the system could not be read; policy says: rule sales-managers → role sales-manager",
        "  sales-manager (not held)\n    because rule sales-managers → role sales-manager\n    → justified (the system could not be read)\n",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} in\n{}", r.stdout);
    }

    // Unknown identity or system: a clear error and a non-zero exit.
    let bad = org.run(&["--now", now, "explain", "E9999", "crm"]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("no identity E9999 is known"),
        "{}",
        bad.stderr
    );
    let bad = org.run(&["--now", now, "explain", "E1016", "payroll"]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr
            .contains("no system payroll in the configuration (known: crm, ledger, wiki)"),
        "{}",
        bad.stderr
    );
}

#[test]
fn grants_are_made_listed_shown_and_revoked_from_the_command_line() {
    let org = Org::new();
    let now = "2026-11-01T09:00:00Z";
    org.run(&["--now", now, "import"]).ok();
    org.run(&["--now", now, "apply"]).ok();

    // Bad grants say what is wrong and change nothing.
    let r = org
        .run(&[
            "--now",
            now,
            "grant",
            "add",
            "E1003",
            "astronaut",
            "--reason",
            "r",
        ])
        .fails_with(1);
    assert!(r.stderr.contains("no role \"astronaut\""), "{}", r.stderr);
    let r = org
        .run(&[
            "--now", now, "grant", "add", "E1003", "sales", "--reason", " ",
        ])
        .fails_with(1);
    assert!(r.stderr.contains("needs a reason"), "{}", r.stderr);
    let r = org
        .run(&[
            "--now",
            now,
            "grant",
            "add",
            "E1003",
            "sales",
            "--reason",
            "r",
            "--until",
            "2026-10-01",
        ])
        .fails_with(1);
    assert!(r.stderr.contains("before now"), "{}", r.stderr);
    let r = org
        .run(&[
            "--now", now, "grant", "add", "E1003", "sales", "--reason", "r", "--until", "soon",
        ])
        .fails_with(1);
    assert!(r.stderr.contains("--until \"soon\""), "{}", r.stderr);
    let r = org
        .run(&[
            "--now", now, "grant", "add", "E9999", "sales", "--reason", "r",
        ])
        .fails_with(1);
    assert!(r.stderr.contains("E9999"), "{}", r.stderr);
    assert!(
        org.run(&["grant", "list"])
            .ok()
            .stdout
            .contains("No grants")
    );

    // A grant for ten days: the plan gives the access, with the grant as its reason.
    let r = org
        .run(&[
            "--now",
            now,
            "grant",
            "add",
            "E1003",
            "sales",
            "--reason",
            "request #12",
            "--until",
            "2026-11-11",
        ])
        .ok();
    assert!(r.stdout.contains("Grant #1 made"), "{}", r.stdout);
    let plan = org.run(&["--now", now, "plan", "--changed"]).ok().stdout;
    assert!(plan.contains("request #12"), "{plan}");
    org.run(&["--now", now, "apply", "--changed"]).ok();
    assert_eq!(org.pending_operations(now), 0);
    let list = org.run(&["--now", now, "grant", "list"]).ok().stdout;
    assert!(list.contains("#1") && list.contains("active"), "{list}");
    let status = org.run(&["--now", now, "status", "E1003"]).ok().stdout;
    assert!(
        status.contains("Grants:") && status.contains("until 2026-11-11"),
        "{status}"
    );

    // After its end, the next plan takes the access away; the list shows it ended.
    let later = "2026-11-12T09:00:00Z";
    let plan = org
        .run(&["--now", later, "plan", "--changed", "--json"])
        .ok()
        .stdout;
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert!(!plan["operations"].as_array().unwrap().is_empty(), "{plan}");
    let list = org
        .run(&["--now", later, "grant", "list", "--all"])
        .ok()
        .stdout;
    assert!(list.contains("ended"), "{list}");
    assert!(
        !org.run(&["--now", later, "grant", "list"])
            .ok()
            .stdout
            .contains("#1")
    );

    // Revoking: once, audited with the actor.
    org.run(&[
        "--now",
        now,
        "grant",
        "add",
        "E1004",
        "finance",
        "--reason",
        "audit season",
    ])
    .ok();
    org.run(&["--now", now, "grant", "revoke", "2", "--reason", "done"])
        .ok();
    let r = org
        .run(&["--now", now, "grant", "revoke", "2", "--reason", "done"])
        .fails_with(1);
    assert!(r.stderr.contains("already revoked"), "{}", r.stderr);
    let audit = org.audit();
    assert!(audit.iter().any(|e| e["action"] == "grant.added"
        && e["actor"] == "cli:tester"
        && e["subject"] == "identity:E1003"));
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "grant.revoked" && e["reason"] == "done")
    );
}

#[test]
fn quarantine_lists_each_systems_health_and_refuses_to_lift_a_healthy_one() {
    let org = Org::new();
    let r = org.run(&["quarantine"]).ok();
    for sys in ["wiki", "crm", "ledger"] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(sys) && l.contains("healthy")),
            "{}",
            r.stdout
        );
    }
    let r = org
        .run(&["quarantine", "lift", "wiki", "--reason", "fixed"])
        .fails_with(1);
    assert!(r.stderr.contains("wiki is not quarantined"), "{}", r.stderr);
    let r = org
        .run(&["quarantine", "lift", "payroll", "--reason", "fixed"])
        .fails_with(1);
    assert!(r.stderr.contains("payroll"), "{}", r.stderr);
}
