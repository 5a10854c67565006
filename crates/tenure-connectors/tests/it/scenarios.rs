//! Scenarios run against every backend (see `main.rs`).

use crate::support::*;
use std::collections::{BTreeMap, BTreeSet};
use tenure_connectors::ConnectorError;
use tenure_core::Capabilities;
use tenure_core::state::{Account, AccountQuery, SystemAccounts};

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

pub async fn check_detects_missing_table_and_column(db: TestDb) {
    // Before the tables exist.
    let c = db.connector(&db.system(|_| {})).await;
    let e = c.check().await.unwrap_err();
    assert!(matches!(e, ConnectorError::Schema { .. }), "{e}");
    assert!(e.to_string().contains("users"), "{e}");
    assert!(!e.is_transient());

    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    c.check().await.unwrap();

    let c = db
        .connector(&db.system(|t| {
            t.insert("accounts_table".into(), "people".into());
        }))
        .await;
    let e = c.check().await.unwrap_err();
    assert!(e.to_string().contains("people"), "{e}");
    assert!(e.to_string().contains("crm"), "{e}");

    let c = db
        .connector(&db.system(|t| {
            let mut cols = toml::Table::new();
            cols.insert("display_name".into(), "nickname".into());
            t.insert("attribute_columns".into(), cols.into());
        }))
        .await;
    let e = c.check().await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("nickname"), "{msg}");
    // employee_number is now unmapped, so it maps to a column of that name, which is missing too.
    assert!(msg.contains("employee_number"), "{msg}");

    let c = db
        .connector(&db.system(|t| {
            t.insert("enabled_column".into(), "is_active".into());
            t.insert("membership_entitlement_column".into(), "grp".into());
        }))
        .await;
    let msg = c.check().await.unwrap_err().to_string();
    assert!(msg.contains("is_active"), "{msg}");
    assert!(msg.contains("grp"), "{msg}");

    let c = db
        .connector(&db.system(|t| {
            t.insert("memberships_table".into(), "groups_of_users".into());
        }))
        .await;
    let msg = c.check().await.unwrap_err().to_string();
    assert!(msg.contains("groups_of_users"), "{msg}");
    // Applying to a mismatched schema fails every operation with the same explanation.
    let results = c.apply(&[create_full("alice"), add("alice", "g")]).await;
    assert_eq!(results.len(), 2);
    for r in results {
        let e = r.unwrap_err();
        assert!(e.to_string().contains("groups_of_users"), "{e}");
        assert!(!e.is_transient());
    }
    assert!(db.users().await.is_empty());
}

pub async fn lifecycle_operations(db: TestDb) {
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    c.check().await.unwrap();

    all_ok(&c.apply(&[create_full("alice")]).await);
    assert_eq!(db.users().await, vec![full_row("alice", "1")]);

    all_ok(
        &c.apply(&[update(
            "alice",
            &[("email", "alice@new.example"), ("department", "Ops")],
        )])
        .await,
    );
    assert_eq!(
        db.users().await,
        vec![vec![
            s("alice"),
            s("alice@new.example"),
            s("alice Example"),
            s("Ops"),
            s("42"),
            s("1")
        ]]
    );

    all_ok(&c.apply(&[disable("alice")]).await);
    assert_eq!(db.users().await[0][5], s("0"));
    all_ok(&c.apply(&[enable("alice")]).await);
    assert_eq!(db.users().await[0][5], s("1"));

    all_ok(
        &c.apply(&[add("alice", "admins"), add("alice", "staff")])
            .await,
    );
    assert_eq!(
        db.memberships().await,
        vec![
            ("alice".into(), "admins".into()),
            ("alice".into(), "staff".into())
        ]
    );
    all_ok(&c.apply(&[remove("alice", "admins")]).await);
    assert_eq!(
        db.memberships().await,
        vec![("alice".into(), "staff".into())]
    );
    // Removing what is absent is a no-op.
    all_ok(&c.apply(&[remove("alice", "admins")]).await);
    assert_eq!(db.memberships().await.len(), 1);

    all_ok(&c.apply(&[delete("alice")]).await);
    assert!(db.users().await.is_empty());
    assert!(db.memberships().await.is_empty());
    // Deleting what is absent is a no-op.
    all_ok(&c.apply(&[delete("alice")]).await);

    // Operations on an account that does not exist are refused, permanently,
    // and leave nothing behind (no dangling membership).
    let results = c
        .apply(&[
            update("ghost", &[("email", "g@x")]),
            disable("ghost"),
            enable("ghost"),
            add("ghost", "admins"),
        ])
        .await;
    for r in results {
        let e = r.unwrap_err();
        assert!(matches!(e, ConnectorError::Rejected { .. }), "{e}");
        assert!(!e.is_transient());
        let msg = e.to_string();
        assert!(msg.contains("ghost") && msg.contains("crm"), "{msg}");
    }
    assert!(db.users().await.is_empty());
    assert!(db.memberships().await.is_empty());

    // An empty batch does nothing.
    assert!(c.apply(&[]).await.is_empty());
}

pub async fn idempotent_replay(db: TestDb) {
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    let batch = vec![
        create_full("bob"),
        add("bob", "g1"),
        add("bob", "g2"),
        create_full("carol"),
        update("carol", &[("display_name", "Carol C")]),
        disable("carol"),
        add("carol", "g1"),
        remove("carol", "g1"),
        create_full("dave"),
        add("dave", "g1"),
        delete("dave"),
        enable("bob"),
    ];
    let first = c.apply(&batch).await;
    assert_eq!(first.len(), batch.len());
    all_ok(&first);
    let users = db.users().await;
    let memberships = db.memberships().await;
    assert_eq!(
        memberships,
        vec![("bob".into(), "g1".into()), ("bob".into(), "g2".into())]
    );
    assert_eq!(users.len(), 2);

    let second = c.apply(&batch).await;
    all_ok(&second);
    assert_eq!(db.users().await, users);
    assert_eq!(db.memberships().await, memberships);

    // Someone changed bob by hand; replaying his creation makes the row match
    // again (and enabled), without a second row.
    db.exec("UPDATE users SET email = 'tampered', full_name = NULL WHERE username = 'bob'")
        .await;
    db.exec(match db.backend {
        Backend::Postgres => "UPDATE users SET active = FALSE WHERE username = 'bob'",
        _ => "UPDATE users SET active = 0 WHERE username = 'bob'",
    })
    .await;
    all_ok(&c.apply(&[create_full("bob"), add("bob", "g1")]).await);
    assert_eq!(db.users().await, users);
    assert_eq!(db.memberships().await, memberships);
}

pub async fn failing_operation_fails_alone(db: TestDb) {
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    let long = "x".repeat(30);
    let batch = vec![
        create_full("ok1"),
        // NOT NULL email missing.
        create("no_email", &[("display_name", "No Email")]),
        // department is limited to 20 characters.
        create(
            "too_long",
            &[("email", "t@example.com"), ("department", long.as_str())],
        ),
        add("ok1", "g1"),
        // No such account.
        add("ghost", "g1"),
        update("ok1", &[("display_name", "Ok One")]),
        // NUL in a value is refused before it reaches the database.
        create("nul", &[("email", "a\0b@example.com")]),
        // No column for this attribute.
        create(
            "unknown_attr",
            &[("email", "u@example.com"), ("shoe-size", "44")],
        ),
        create_full("ok2"),
        update("ok2", &[("department", long.as_str())]),
        add("ok2", "g2"),
    ];
    let results = c.apply(&batch).await;
    assert_eq!(results.len(), batch.len());
    let oks: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(
        oks,
        vec![
            true, false, false, true, false, true, false, false, true, false, true
        ],
        "{results:?}"
    );
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            assert!(!e.is_transient(), "{i}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("crm"), "{msg}");
            assert!(msg.contains(batch[i].account.as_str()), "{msg}");
        }
    }
    // The database's own answer is in the message and kept as the source.
    let e = results[1].as_ref().unwrap_err();
    assert!(matches!(e, ConnectorError::Operation { .. }), "{e}");
    assert!(std::error::Error::source(e).is_some());
    assert!(e.to_string().to_lowercase().contains("email"), "{e}");
    assert!(matches!(
        results[6].as_ref().unwrap_err(),
        ConnectorError::Rejected { .. }
    ));

    assert_eq!(
        db.users().await,
        vec![
            vec![
                s("ok1"),
                s("ok1@example.com"),
                s("Ok One"),
                s("Sales"),
                s("42"),
                s("1")
            ],
            full_row("ok2", "1"),
        ]
    );
    assert_eq!(
        db.memberships().await,
        vec![("ok1".into(), "g1".into()), ("ok2".into(), "g2".into())]
    );
}

pub async fn read_accounts_round_trip(db: TestDb) {
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    assert_eq!(c.read_accounts().await.unwrap(), SystemAccounts::default());
    all_ok(
        &c.apply(&[
            create_full("erin"),
            add("erin", "admins"),
            add("erin", "staff"),
            create_full("frank"),
            disable("frank"),
            add("frank", "staff"),
        ])
        .await,
    );
    // A row the application made itself, with NULLs, and memberships of an
    // account that does not exist.
    db.exec("INSERT INTO users (username, email) VALUES ('gina', 'gina@example.com')")
        .await;
    db.exec("INSERT INTO user_groups (username, group_name) VALUES ('gina', 'readers'), ('nobody', 'admins')")
        .await;

    let read = c.read_accounts().await.unwrap();
    let full = |name: &str| -> BTreeMap<String, String> { attrs(name).into_iter().collect() };
    let mut expected = SystemAccounts::default();
    for (name, enabled, groups, attributes) in [
        ("erin", true, vec!["admins", "staff"], full("erin")),
        ("frank", false, vec!["staff"], full("frank")),
        (
            "gina",
            true,
            vec!["readers"],
            [("email".to_owned(), "gina@example.com".to_owned())]
                .into_iter()
                .collect(),
        ),
    ] {
        expected.accounts.insert(
            key(name),
            Account {
                key: key(name),
                attributes,
                enabled,
                entitlements: groups.into_iter().map(ent).collect::<BTreeSet<_>>(),
                archived: false,
            },
        );
    }
    assert_eq!(read, expected);
}

/// A targeted read returns exactly what a full read filtered by the same
/// query returns: keys and correlation values compared ignoring case and
/// surrounding spaces, memberships included, hostile values only bound.
pub async fn read_accounts_matching_reads_only_what_is_asked(db: TestDb) {
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    all_ok(
        &c.apply(&[
            create_full("erin"),
            add("erin", "admins"),
            create_full("frank"),
            disable("frank"),
            add("frank", "staff"),
            create_full("harry"),
            create_full("O'Brien"),
            add("O'Brien", "staff"),
        ])
        .await,
    );
    db.exec("INSERT INTO users (username, email) VALUES ('gina', 'Gina@Example.com')")
        .await;
    let all = c.read_accounts().await.unwrap();
    assert_eq!(all.accounts.len(), 5);
    let query = |keys: &[&str], values: Option<&[&str]>| AccountQuery {
        keys: keys.iter().map(|k| key(k)).collect(),
        attribute: values.map(|v| {
            (
                "email".to_owned(),
                v.iter().map(|s| (*s).to_owned()).collect(),
            )
        }),
    };
    let cases = [
        query(&[], None),
        query(&["frank"], None),
        query(&["ERIN", "frank", "nobody"], None),
        query(&["o'brien"], None),
        query(&["x') OR 1=1 --", "*"], Some(&["' OR '1'='1"])),
        query(&["harry"], Some(&[" gina@example.COM "])),
    ];
    for q in cases {
        let got = c.read_accounts_matching(&q).await.unwrap();
        assert_eq!(got, q.filter(all.clone()), "{q:?}");
    }
    let some = c
        .read_accounts_matching(&query(&["ERIN", "frank"], None))
        .await
        .unwrap();
    let keys: Vec<&str> = some.accounts.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, vec!["erin", "frank"]);
    let frank = &some.accounts[&key("frank")];
    assert!(!frank.enabled);
    assert_eq!(frank.entitlements, BTreeSet::from([ent("staff")]));
}

pub async fn hostile_values_are_stored_verbatim(db: TestDb) {
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    let hostile = [
        "o'brien",
        "x'); DROP TABLE users; --",
        "'; DROP TABLE users; --",
        "back\\slash\\",
        "\"double\" `tick`",
        "ünï©ødé 🚀 עברית ǅ",
        "%_*?",
        "$1 ? :name",
    ];
    let mut batch = Vec::new();
    for (i, h) in hostile.iter().enumerate() {
        batch.push(create(
            h,
            &[
                ("email", h),
                ("display_name", &format!("{h}{h}")),
                ("department", &format!("d{i}")),
            ],
        ));
        batch.push(add(h, "'; DROP TABLE user_groups; --"));
        batch.push(add(h, h));
    }
    batch.push(create("nul", &[("email", "before\0after")]));
    let results = c.apply(&batch).await;
    let last = results.len() - 1;
    all_ok(&results[..last]);
    assert!(matches!(
        results[last].as_ref().unwrap_err(),
        ConnectorError::Rejected { .. }
    ));

    let mut expected_users: Vec<Vec<Option<String>>> = hostile
        .iter()
        .enumerate()
        .map(|(i, h)| {
            vec![
                s(h),
                s(h),
                Some(format!("{h}{h}")),
                Some(format!("d{i}")),
                None,
                s("1"),
            ]
        })
        .collect();
    expected_users.sort();
    assert_eq!(db.users().await, expected_users);
    let mut expected_m: Vec<(String, String)> = hostile
        .iter()
        .flat_map(|h| {
            [
                (h.to_string(), "'; DROP TABLE user_groups; --".to_owned()),
                (h.to_string(), h.to_string()),
            ]
        })
        .collect();
    expected_m.sort();
    assert_eq!(db.memberships().await, expected_m);

    // The round trip gives the same values back.
    let read = c.read_accounts().await.unwrap();
    assert_eq!(read.accounts.len(), hostile.len());
    for (i, h) in hostile.iter().enumerate() {
        let a = &read.accounts[&key(h)];
        assert_eq!(a.attributes["email"], *h);
        assert_eq!(a.attributes["display_name"], format!("{h}{h}"));
        assert_eq!(a.attributes["department"], format!("d{i}"));
        assert!(a.entitlements.contains(&ent(h)));
        assert!(
            a.entitlements
                .contains(&ent("'; DROP TABLE user_groups; --"))
        );
    }
    // Replaying and removing with hostile keys also works.
    all_ok(&c.apply(&batch[..last]).await);
    let removals: Vec<_> = hostile.iter().map(|h| remove(h, h)).collect();
    all_ok(&c.apply(&removals).await);
    assert_eq!(db.memberships().await.len(), hostile.len());
    let deletions: Vec<_> = hostile.iter().map(|h| delete(h)).collect();
    all_ok(&c.apply(&deletions).await);
    assert!(db.users().await.is_empty());
    assert!(db.memberships().await.is_empty());
}

pub async fn capabilities_reflect_settings(db: TestDb) {
    db.app_schema().await;
    let full = db.connector(&db.system(|_| {})).await;
    assert_eq!(full.capabilities(), Capabilities::FULL);
    assert_eq!(full.system().as_str(), "crm");

    let minimal = db
        .connector(&db.system(|t| {
            for k in [
                "enabled_column",
                "memberships_table",
                "membership_account_column",
                "membership_entitlement_column",
            ] {
                t.remove(k);
            }
        }))
        .await;
    let caps = minimal.capabilities();
    assert!(caps.read && caps.create && caps.update && caps.delete);
    assert!(!caps.disable && !caps.memberships && !caps.last_login);
    minimal.check().await.unwrap();

    let results = minimal
        .apply(&[
            create_full("hank"),
            disable("hank"),
            add("hank", "g1"),
            remove("hank", "g1"),
            delete("hank"),
        ])
        .await;
    assert!(results[0].is_ok());
    for r in &results[1..4] {
        let e = r.as_ref().unwrap_err();
        assert!(matches!(e, ConnectorError::Rejected { .. }), "{e}");
        assert!(!e.is_transient());
    }
    assert!(results[4].is_ok());
    all_ok(&minimal.apply(&[create_full("ivy")]).await);
    db.exec(match db.backend {
        Backend::Postgres => "UPDATE users SET active = FALSE",
        _ => "UPDATE users SET active = 0",
    })
    .await;
    db.exec("INSERT INTO user_groups (username, group_name) VALUES ('ivy', 'g1')")
        .await;
    // Without an enabled column every account reads as enabled; without a
    // membership table none has entitlements.
    let read = minimal.read_accounts().await.unwrap();
    let ivy = &read.accounts[&key("ivy")];
    assert!(ivy.enabled);
    assert!(ivy.entitlements.is_empty());
}

pub async fn secret_file_url(db: TestDb) {
    db.app_schema().await;
    std::fs::create_dir_all(db.dir.path().join("secrets")).unwrap();
    std::fs::write(
        db.dir.path().join("secrets/crm-url"),
        format!("{}\n", db.url),
    )
    .unwrap();
    let system = db.system(|t| {
        let mut r = toml::Table::new();
        r.insert("file".into(), "secrets/crm-url".into());
        t.insert("url".into(), r.into());
    });
    let c = db.connector(&system).await;
    c.check().await.unwrap();
    all_ok(&c.apply(&[create_full("judy")]).await);
    assert_eq!(db.users().await, vec![full_row("judy", "1")]);

    let missing = db.system(|t| {
        let mut r = toml::Table::new();
        r.insert("file".into(), "secrets/nope".into());
        t.insert("url".into(), r.into());
    });
    let Err(e) = tenure_connectors::build(&missing, db.dir.path()).await else {
        panic!("a missing secret file must fail");
    };
    assert!(matches!(e, ConnectorError::Secret { .. }), "{e}");
    assert!(e.to_string().contains("secrets/nope"), "{e}");
}

pub async fn large_batch(db: TestDb) {
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    let n = 1500;
    let mut batch = Vec::with_capacity(n * 2);
    for i in 0..n {
        let name = format!("user{i:05}");
        batch.push(create(
            &name,
            &[
                ("email", &format!("{name}@example.com")),
                ("employee_number", &i.to_string()),
            ],
        ));
        batch.push(add(&name, if i % 2 == 0 { "even" } else { "odd" }));
    }
    let started = std::time::Instant::now();
    all_ok(&c.apply(&batch).await);
    eprintln!(
        "{:?}: {} operations in {:?}",
        db.backend,
        batch.len(),
        started.elapsed()
    );
    assert_eq!(db.users().await.len(), n);
    assert_eq!(db.memberships().await.len(), n);
    let read = c.read_accounts().await.unwrap();
    assert_eq!(read.accounts.len(), n);
    assert_eq!(
        read.accounts[&key("user00007")].attributes["employee_number"],
        "7"
    );
}

pub async fn schema_qualified_tables(db: TestDb) {
    db.app_schema().await;
    let schema = match db.backend {
        Backend::Sqlite => "main".to_owned(),
        Backend::Postgres => "public".to_owned(),
        Backend::MySql => db.name.clone(),
    };
    let c = db
        .connector(&db.system(|t| {
            t.insert("accounts_table".into(), format!("{schema}.users").into());
            t.insert(
                "memberships_table".into(),
                format!("{schema}.user_groups").into(),
            );
        }))
        .await;
    c.check().await.unwrap();
    all_ok(&c.apply(&[create_full("kim"), add("kim", "g")]).await);
    assert_eq!(db.users().await, vec![full_row("kim", "1")]);
    assert_eq!(c.read_accounts().await.unwrap().accounts.len(), 1);
}

pub async fn demo_schema(db: TestDb) {
    let system = db.system(|_| {});
    tenure_connectors::sql::create_demo_schema(&system, db.dir.path())
        .await
        .unwrap();
    // Twice is fine.
    tenure_connectors::sql::create_demo_schema(&system, db.dir.path())
        .await
        .unwrap();
    let c = db.connector(&system).await;
    c.check().await.unwrap();
    all_ok(
        &c.apply(&[
            create_full("liz"),
            add("liz", "g1"),
            add("liz", "g1"),
            create_full("max"),
            disable("max"),
        ])
        .await,
    );
    let read = c.read_accounts().await.unwrap();
    assert_eq!(read.accounts.len(), 2);
    assert!(read.accounts[&key("liz")].enabled);
    assert!(!read.accounts[&key("max")].enabled);
    assert_eq!(
        read.accounts[&key("liz")].attributes,
        attrs("liz").into_iter().collect::<BTreeMap<_, _>>()
    );
    assert_eq!(read.accounts[&key("liz")].entitlements.len(), 1);
}

pub async fn wrong_system_is_refused(db: TestDb) {
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    let mut other = create_full("nina");
    other.system = tenure_core::SystemId::new("hr-app").unwrap();
    let results = c.apply(&[other, create_full("olga")]).await;
    let e = results[0].as_ref().unwrap_err();
    assert!(e.to_string().contains("hr-app"), "{e}");
    assert!(results[1].is_ok());
    assert_eq!(db.users().await, vec![full_row("olga", "1")]);
}

pub async fn commit_failure_fails_every_operation(db: TestDb) {
    db.app_schema().await;
    // Another table of the application references users, with a foreign key
    // checked only at COMMIT (PostgreSQL, SQLite). MySQL has no deferred
    // constraints: there the violation is immediate and fails alone.
    db.exec(match db.backend {
        Backend::MySql => "CREATE TABLE profiles (username VARCHAR(64) NOT NULL, FOREIGN KEY (username) REFERENCES users (username)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        _ => "CREATE TABLE profiles (username VARCHAR(64) NOT NULL REFERENCES users (username) DEFERRABLE INITIALLY DEFERRED)",
    })
    .await;
    let c = db.connector(&db.system(|_| {})).await;
    all_ok(&c.apply(&[create_full("alice")]).await);
    db.exec("INSERT INTO profiles (username) VALUES ('alice')")
        .await;

    let results = c
        .apply(&[create_full("bob"), add("bob", "g1"), delete("alice")])
        .await;
    assert_eq!(results.len(), 3);
    if db.backend == Backend::MySql {
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        let e = results[2].as_ref().unwrap_err();
        assert!(matches!(e, ConnectorError::Operation { .. }), "{e}");
        assert!(!e.is_transient());
        assert_eq!(
            db.users().await,
            vec![full_row("alice", "1"), full_row("bob", "1")]
        );
    } else {
        for r in &results {
            let e = r.as_ref().unwrap_err();
            assert!(matches!(e, ConnectorError::NotApplied { .. }), "{e}");
            assert!(e.to_string().contains("commit failed"), "{e}");
            assert!(e.to_string().contains("crm"), "{e}");
            assert!(!e.is_transient(), "{e}");
        }
        // Nothing of the batch is there.
        assert_eq!(db.users().await, vec![full_row("alice", "1")]);
        assert!(db.memberships().await.is_empty());
    }
}

pub async fn lock_timeout_is_transient_and_fails_alone(db: TestDb) {
    if db.backend != Backend::Postgres {
        // SQLite's busy timeout and MySQL's lock wait timeout cannot be
        // shortened from the URL; the classification of their codes is unit-tested.
        notice(&format!(
            "NOT APPLICABLE lock_timeout_is_transient_and_fails_alone on {:?} (PostgreSQL only)",
            db.backend
        ));
        return;
    }
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    all_ok(&c.apply(&[create_full("alice")]).await);
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}options=-c%20lock_timeout%3D300", db.url);
    let c = db
        .connector(&db.system(|t| {
            t.insert("url".into(), url.into());
        }))
        .await;
    // Someone else holds alice's row.
    let mut other = db.pool.begin().await.unwrap();
    sqlx::query("UPDATE users SET full_name = 'locked' WHERE username = 'alice'")
        .execute(&mut *other)
        .await
        .unwrap();
    let results = c
        .apply(&[create_full("bob"), disable("alice"), add("bob", "g1")])
        .await;
    other.rollback().await.unwrap();
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let e = results[1].as_ref().unwrap_err();
    assert!(matches!(e, ConnectorError::Operation { .. }), "{e}");
    assert!(e.is_transient(), "{e}");
    assert_eq!(
        db.users().await,
        vec![full_row("alice", "1"), full_row("bob", "1")]
    );
    // Retried later, it succeeds.
    all_ok(&c.apply(&[disable("alice")]).await);
    assert_eq!(db.users().await[0][5], s("0"));
}

/// The application's documents, owned by the account key (for the `archive` step).
async fn documents_schema(db: &TestDb) {
    let ddl = match db.backend {
        Backend::Sqlite => {
            "CREATE TABLE documents (id INTEGER PRIMARY KEY, title VARCHAR(100) NOT NULL, owner VARCHAR(64) NOT NULL)"
        }
        Backend::Postgres => {
            "CREATE TABLE documents (id SERIAL PRIMARY KEY, title VARCHAR(100) NOT NULL, owner VARCHAR(64) NOT NULL)"
        }
        Backend::MySql => {
            "CREATE TABLE documents (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(100) NOT NULL, owner VARCHAR(64) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        }
    };
    db.exec(ddl).await;
}

fn archive_to(account: &str, to: Option<&str>) -> tenure_core::Operation {
    op(
        account,
        tenure_core::Action::ArchiveAccount { to: to.map(key) },
    )
}

fn with_transfer(t: &mut toml::Table) {
    t.insert("transfer_table".into(), "documents".into());
    t.insert("transfer_owner_column".into(), "owner".into());
}

pub async fn archive_transfers_data_to_the_manager(db: TestDb) {
    db.app_schema().await;
    documents_schema(&db).await;
    let hostile = "x'); UPDATE documents SET owner = 'mallory'; --";
    let c = db.connector(&db.system(with_transfer)).await;
    c.check().await.unwrap();
    let caps = c.capabilities();
    assert!(caps.archive && caps.archive_to_manager, "{caps:?}");
    all_ok(
        &c.apply(&[
            create_full("alice"),
            create_full("bob"),
            create_full("mallory"),
            create(hostile, &[("email", "h@example.com")]),
        ])
        .await,
    );
    for (title, owner) in [
        ("plan", "alice"),
        ("budget", "alice"),
        ("notes", "bob"),
        ("secret", hostile),
    ] {
        db.exec(&format!(
            "INSERT INTO documents (title, owner) VALUES ('{title}', '{}')",
            owner.replace('\'', "''")
        ))
        .await;
    }
    let read = c.read_accounts().await.unwrap();
    let archived = |a: &SystemAccounts, k: &str| a.accounts[&key(k)].archived;
    assert!(!archived(&read, "alice") && !archived(&read, "bob"));
    assert!(archived(&read, "mallory"), "no data: nothing to archive");

    // Alice's documents go to Bob, her manager; nothing else changes.
    all_ok(&c.apply(&[archive_to("alice", Some("bob"))]).await);
    let docs = || db.rows("documents", &["title", "owner"]);
    assert_eq!(
        docs().await,
        vec![
            vec![s("budget"), s("bob")],
            vec![s("notes"), s("bob")],
            vec![s("plan"), s("bob")],
            vec![s("secret"), s(hostile)],
        ]
    );
    let read = c.read_accounts().await.unwrap();
    assert!(archived(&read, "alice"), "read back as archived");
    // So does the read by key (incremental plans).
    let q = AccountQuery {
        keys: [key("alice"), key(hostile)].into_iter().collect(),
        attribute: None,
    };
    let some = c.read_accounts_matching(&q).await.unwrap();
    assert!(archived(&some, "alice") && !archived(&some, hostile));

    // Replay: changes nothing.
    all_ok(&c.apply(&[archive_to("alice", Some("bob"))]).await);
    assert_eq!(docs().await[0], vec![s("budget"), s("bob")]);

    // A hostile key is a value like any other: bound, never spliced.
    all_ok(&c.apply(&[archive_to(hostile, Some("alice"))]).await);
    assert_eq!(
        docs().await,
        vec![
            vec![s("budget"), s("bob")],
            vec![s("notes"), s("bob")],
            vec![s("plan"), s("bob")],
            vec![s("secret"), s("alice")],
        ]
    );

    // The receiver must exist; a refusal changes nothing.
    let r = c.apply(&[archive_to("bob", Some("nobody"))]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(
        matches!(e, ConnectorError::Rejected { .. }) && e.to_string().contains("nobody"),
        "{e}"
    );
    // No receiver named: refused.
    let r = c.apply(&[archive_to("bob", None)]).await;
    assert!(r[0].is_err());
    assert_eq!(docs().await[1], vec![s("notes"), s("bob")]);

    // A fixed receiver (`archive_to`): the system no longer needs the manager.
    let c = db
        .connector(&db.system(|t| {
            with_transfer(t);
            t.insert("archive_to".into(), "mallory".into());
        }))
        .await;
    assert!(!c.capabilities().archive_to_manager);
    all_ok(&c.apply(&[archive_to("bob", None)]).await);
    assert_eq!(
        docs().await,
        vec![
            vec![s("budget"), s("mallory")],
            vec![s("notes"), s("mallory")],
            vec![s("plan"), s("mallory")],
            vec![s("secret"), s("alice")],
        ]
    );

    // A missing transfer table or column is found by check.
    let c = db
        .connector(&db.system(|t| {
            with_transfer(t);
            t.insert("transfer_owner_column".into(), "author".into());
        }))
        .await;
    let e = c.check().await.unwrap_err().to_string();
    assert!(
        e.contains("author") && e.contains("transfer_owner_column"),
        "{e}"
    );
    // Without a transfer table the system cannot archive.
    let c = db.connector(&db.system(|_| {})).await;
    assert!(!c.capabilities().archive);
    let r = c.apply(&[archive_to("alice", Some("bob"))]).await;
    assert!(
        r[0].as_ref()
            .unwrap_err()
            .to_string()
            .contains("transfer_table")
    );
}

/// Runs of memberships to add go many rows per statement: the outcome is the
/// same as one by one. Held ones are fine, one whose account is missing is
/// refused alone (and changes nothing), hostile values are stored verbatim,
/// and a run follows the operations before it in the batch.
pub async fn memberships_added_many_at_a_time(db: TestDb) {
    db.app_schema().await;
    let c = db.connector(&db.system(|_| {})).await;
    let hostile = "x'); DROP TABLE user_groups; --";
    all_ok(&c.apply(&[create_full("erin"), add("erin", "g0")]).await);
    let mut batch = vec![create_full("fay"), create_full(hostile)];
    // A run: held already, new ones, a missing account, the same pair twice.
    batch.push(add("erin", "g0"));
    for g in 1..=5 {
        batch.push(add("erin", &format!("g{g}")));
        batch.push(add("fay", &format!("g{g}")));
    }
    batch.push(add("nobody", "g1"));
    batch.push(add(hostile, hostile));
    batch.push(add("fay", "g1"));
    batch.push(add("fay", "g9"));
    let results = c.apply(&batch).await;
    assert_eq!(results.len(), batch.len());
    for (i, r) in results.iter().enumerate() {
        if batch[i].account.as_str() == "nobody" {
            let e = r.as_ref().unwrap_err();
            assert!(matches!(e, ConnectorError::Rejected { .. }), "{e}");
            assert!(
                e.to_string().contains("a membership needs an account"),
                "{e}"
            );
        } else {
            assert!(
                r.is_ok(),
                "operation {i} ({:?}) failed: {r:?}",
                batch[i].action
            );
        }
    }
    let mut expected: Vec<(String, String)> = (0..=5)
        .map(|g| ("erin".to_owned(), format!("g{g}")))
        .chain((1..=5).map(|g| ("fay".to_owned(), format!("g{g}"))))
        .chain([
            ("fay".to_owned(), "g9".to_owned()),
            (hostile.to_owned(), hostile.to_owned()),
        ])
        .collect();
    expected.sort();
    assert_eq!(db.memberships().await, expected);
    // A replay changes nothing and fails nothing but the missing account.
    let again = c.apply(&batch).await;
    assert_eq!(
        again.iter().filter(|r| r.is_err()).count(),
        1,
        "only the missing account: {again:?}"
    );
    assert_eq!(db.memberships().await, expected);
    // A long run (over one statement's rows) for one account each.
    let many: Vec<_> = (0..450).map(|i| create_full(&format!("u{i:03}"))).collect();
    all_ok(&c.apply(&many).await);
    let adds: Vec<_> = (0..450).map(|i| add(&format!("u{i:03}"), "big")).collect();
    all_ok(&c.apply(&adds).await);
    let big = db
        .memberships()
        .await
        .into_iter()
        .filter(|(_, g)| g == "big")
        .count();
    assert_eq!(big, 450);
}
