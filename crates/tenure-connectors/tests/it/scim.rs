//! The SCIM connector against a real scim2-server (see `scim_support`).
//!
//! Every test starts its own server and checks what the server holds after
//! the connector's operations, through the server's own API.

use crate::scim_support::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tenure_connectors::{Connector, ConnectorError};
use tenure_core::Capabilities;

fn ok(results: &[Result<(), ConnectorError>]) {
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            panic!("operation {i} failed: {e}");
        }
    }
}

fn groups_of(m: &BTreeMap<String, Vec<String>>, group: &str) -> Vec<String> {
    m.get(group).cloned().unwrap_or_default()
}

#[tokio::test]
async fn lifecycle_operations() {
    let Some(srv) = ScimServer::start("scim::lifecycle_operations", None).await else {
        return;
    };
    srv.create_group("Admins").await;
    srv.create_group("Staff").await;
    let sys = system(settings(&srv.base()), &["Admins", "Staff"]);
    let c = connector(&sys, srv.dir.path()).await;
    c.check().await.unwrap();
    assert_eq!(
        c.capabilities(),
        Capabilities {
            last_login: false,
            ..Capabilities::FULL
        }
    );

    ok(&c
        .apply(&[
            create("alice", "Sales"),
            add("alice", "Admins"),
            add("alice", "Staff"),
        ])
        .await);
    let u = srv.user("alice").await.expect("alice on the server");
    assert_eq!(u["displayName"], "alice Example");
    assert_eq!(u["name"]["givenName"], "alice");
    assert_eq!(
        u["emails"],
        json!([{"type": "work", "value": "alice@example.com"}])
    );
    assert_eq!(u[ENTERPRISE]["department"], "Sales");
    assert_eq!(u["active"], true);
    assert!(
        u["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE))
    );
    let m = srv.memberships().await;
    assert_eq!(groups_of(&m, "Admins"), vec!["alice"]);
    assert_eq!(groups_of(&m, "Staff"), vec!["alice"]);

    // Update: replace two values, remove one (an empty value).
    ok(&c
        .apply(&[update(
            "alice",
            &[
                ("email", Some("alice@example.com"), "alice@new.example"),
                ("department", Some("Sales"), "Ops"),
                ("display_name", Some("alice Example"), ""),
            ],
        )])
        .await);
    let u = srv.user("alice").await.unwrap();
    assert_eq!(
        u["emails"],
        json!([{"type": "work", "value": "alice@new.example"}])
    );
    assert_eq!(u[ENTERPRISE]["department"], "Ops");
    assert!(u.get("displayName").is_none(), "{u}");
    assert_eq!(u["name"]["givenName"], "alice", "untouched");

    ok(&c.apply(&[disable("alice")]).await);
    assert_eq!(srv.user("alice").await.unwrap()["active"], false);
    ok(&c.apply(&[enable("alice")]).await);
    assert_eq!(srv.user("alice").await.unwrap()["active"], true);

    ok(&c.apply(&[remove("alice", "Admins")]).await);
    let m = srv.memberships().await;
    assert!(groups_of(&m, "Admins").is_empty());
    assert_eq!(groups_of(&m, "Staff"), vec!["alice"]);

    // What it reads back is what it wrote.
    let read = c.read_accounts().await.unwrap();
    let a = &read.accounts[&tenure_core::AccountKey::new("alice").unwrap()];
    assert!(a.enabled);
    assert_eq!(a.attributes["email"], "alice@new.example");
    assert_eq!(a.attributes["department"], "Ops");
    assert_eq!(a.attributes["display_name"], "", "absent reads as empty");
    assert_eq!(
        a.entitlements
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>(),
        vec!["Staff"]
    );

    ok(&c.apply(&[delete("alice")]).await);
    assert!(srv.user("alice").await.is_none());
    // (scim2-server keeps a deleted user's id in the groups it was in;
    // that id names nobody any more.)
    assert!(!groups_of(&srv.memberships().await, "Staff").contains(&"alice".to_owned()));
    // Deleting, or removing a membership of, what is gone is success.
    ok(&c.apply(&[delete("alice"), remove("alice", "Staff")]).await);
    // Updating it is not.
    let r = c.apply(&[disable("alice")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(
        e.to_string().contains("system app") && e.to_string().contains("alice"),
        "{e}"
    );
}

#[tokio::test]
async fn idempotent_replay() {
    let Some(srv) = ScimServer::start("scim::idempotent_replay", None).await else {
        return;
    };
    srv.create_group("Staff").await;
    let sys = system(settings(&srv.base()), &["Staff"]);
    let batch = [
        create("bob", "Sales"),
        add("bob", "Staff"),
        update("bob", &[("department", Some("Sales"), "Ops")]),
    ];
    let c = connector(&sys, srv.dir.path()).await;
    ok(&c.apply(&batch).await);
    let before = (srv.users().await, srv.memberships().await);
    // Replayed after a crash, by a fresh process (no cache).
    let c2 = connector(&sys, srv.dir.path()).await;
    ok(&c2.apply(&batch).await);
    let after = (srv.users().await, srv.memberships().await);
    assert_eq!(before.0.len(), 1);
    assert_eq!(before.1, after.1);
    assert_eq!(groups_of(&after.1, "Staff"), vec!["bob"]);
    assert_eq!(after.0[0][ENTERPRISE]["department"], "Ops");
    assert_eq!(after.0[0]["externalId"], "bob", "the identity's id");
    // A create for another identity whose key is taken is refused.
    let mut other = create("bob", "Sales");
    other.identity = Some(tenure_core::IdentityId::new("E-2").unwrap());
    let r = c2.apply(&[other]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient());
    assert!(
        e.to_string().contains("409") && e.to_string().contains("externalId"),
        "{e}"
    );
}

#[tokio::test]
async fn existing_account_is_not_taken_over() {
    let Some(srv) = ScimServer::start("scim::existing_account_is_not_taken_over", None).await
    else {
        return;
    };
    srv.create_user(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "carol", "displayName": "Someone Else"}))
        .await;
    let c = connector(&system(settings(&srv.base()), &[]), srv.dir.path()).await;
    let r = c.apply(&[create("carol", "Sales")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains("not taken over"), "{e}");
    let u = srv.user("carol").await.unwrap();
    assert_eq!(u["displayName"], "Someone Else");
    assert!(u.get("emails").is_none());
}

async fn paged_read(test: &str, spc: Option<serde_json::Value>, expect_cursor: bool) {
    let Some(srv) = ScimServer::start(test, spc).await else {
        return;
    };
    srv.create_group("G1").await;
    srv.create_group("G2").await;
    let mut s = settings(&srv.base());
    s.insert("page_size".into(), 7.into());
    s.insert("max_concurrency".into(), 8.into());
    let sys = system(s, &["G1", "G2"]);
    let c = connector(&sys, srv.dir.path()).await;
    let mut ops = Vec::new();
    for i in 0..25 {
        let name = format!("user{i:02}");
        ops.push(create(&name, "Dept"));
        ops.push(add(&name, if i % 2 == 0 { "G1" } else { "G2" }));
    }
    ok(&c.apply(&ops).await);
    // A fresh connector: discovery, then pages.
    let c = connector(&sys, srv.dir.path()).await;
    let read = c.read_accounts().await.unwrap();
    assert_eq!(read.accounts.len(), 25);
    for (i, (k, a)) in read.accounts.iter().enumerate() {
        assert_eq!(k.as_str(), format!("user{i:02}"));
        assert_eq!(a.attributes["email"], format!("user{i:02}@example.com"));
        let want = if i % 2 == 0 { "G1" } else { "G2" };
        assert_eq!(
            a.entitlements
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>(),
            vec![want]
        );
    }
    // 3 discovery documents, 4 pages of users (7+7+7+4; a cursor page size
    // of 4 makes 7 pages), 1 of groups.
    let user_pages = if expect_cursor { 7 } else { 4 };
    assert_eq!(c.requests(), 3 + user_pages + 1, "pages read");
}

#[tokio::test]
async fn reads_every_page_by_index() {
    paged_read("scim::reads_every_page_by_index", None, false).await;
}

#[tokio::test]
async fn reads_every_page_by_cursor() {
    let spc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true}, "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": 1000}, "changePassword": {"supported": false},
        "sort": {"supported": false}, "etag": {"supported": false},
        "pagination": {"cursor": true, "index": false, "defaultPaginationMethod": "cursor", "maxPageSize": 4}
    });
    paged_read("scim::reads_every_page_by_cursor", Some(spc), true).await;
}

#[tokio::test]
async fn hostile_values_are_escaped_in_filters() {
    let Some(srv) = ScimServer::start("scim::hostile_values_are_escaped_in_filters", None).await
    else {
        return;
    };
    // Decoys: an unescaped filter built from the hostile names would match them.
    for decoy in ["y", "z"] {
        srv.create_user(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": decoy, "active": true}))
            .await;
    }
    let group = r#"Ops "core" (eq) \ 管理"#;
    srv.create_group(group).await;
    srv.create_group("y").await;
    let names = [
        r#"x" or userName eq "y"#,
        r#"back\slash"#,
        r#"q"uote"#,
        r#"eq) or (userName eq "z"#,
        "名前 ü é",
        r#"tail\"#,
    ];
    let sys = system(settings(&srv.base()), &[group, "y"]);
    let c = connector(&sys, srv.dir.path()).await;
    let mut ops = Vec::new();
    for n in names {
        ops.push(create(n, "Sales"));
    }
    ok(&c.apply(&ops).await);
    // A fresh connector finds each account by a filter on its key.
    let c = connector(&sys, srv.dir.path()).await;
    let mut ops = Vec::new();
    for n in names {
        ops.push(add(n, group));
        ops.push(update(n, &[("department", Some("Sales"), "Ops")]));
        ops.push(disable(n));
    }
    ok(&c.apply(&ops).await);
    for n in names {
        let u = srv
            .user(n)
            .await
            .unwrap_or_else(|| panic!("{n} on the server"));
        assert_eq!(u[ENTERPRISE]["department"], "Ops", "{n}");
        assert_eq!(u["active"], false, "{n}");
    }
    for decoy in ["y", "z"] {
        let u = srv.user(decoy).await.unwrap();
        assert_eq!(u["active"], true, "decoy {decoy} untouched");
        assert!(u.get(ENTERPRISE).is_none(), "decoy {decoy} untouched");
    }
    let m = srv.memberships().await;
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(groups_of(&m, group), want);
    assert!(groups_of(&m, "y").is_empty());
    // Membership removal filters on the member's id, escaped too; deletes
    // find each account again.
    let c = connector(&sys, srv.dir.path()).await;
    let mut ops = Vec::new();
    for n in names {
        ops.push(remove(n, group));
        ops.push(delete(n));
    }
    ok(&c.apply(&ops).await);
    let left: Vec<String> = srv
        .users()
        .await
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(groups_of(&srv.memberships().await, group).is_empty());
}

#[tokio::test]
async fn wrong_token_is_a_clear_permanent_error() {
    let Some(srv) = ScimServer::start("scim::wrong_token_is_a_clear_permanent_error", None).await
    else {
        return;
    };
    std::fs::write(srv.dir.path().join("scim-token"), "not-the-token").unwrap();
    let c = connector(&system(settings(&srv.base()), &[]), srv.dir.path()).await;
    let e = c.check().await.unwrap_err();
    let msg = e.to_string();
    assert!(!e.is_transient(), "{msg}");
    assert!(
        msg.contains("system app") && msg.contains("401") && msg.contains("credentials"),
        "{msg}"
    );
    assert!(
        !msg.contains("not-the-token"),
        "the token is never shown: {msg}"
    );
    let r = c.apply(&[create("dan", "Sales")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient());
    assert!(
        e.to_string().contains("create of account \"dan\"") && e.to_string().contains("401"),
        "{e}"
    );
    assert!(c.read_accounts().await.is_err());
    assert!(srv.users().await.is_empty());
}

/// The server stops answering in the middle of a batch (frozen with
/// SIGSTOP), then is stopped for good (SIGINT, which dumps what it held):
/// no operation is reported done that the server does not hold, the rest
/// are transient. A new server with that data then takes the failed
/// operations, and ends with everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopped_mid_batch() {
    let Some(mut srv) = ScimServer::start("scim::server_stopped_mid_batch", None).await else {
        return;
    };
    srv.create_group("Staff").await;
    let mut s = settings(&srv.base());
    s.insert("timeout_seconds".into(), 2.into());
    let sys = system(s, &["Staff"]);
    let c = Arc::new(connector(&sys, srv.dir.path()).await);
    let names: Vec<String> = (0..60).map(|i| format!("m{i:02}")).collect();
    let mut ops = Vec::new();
    for n in &names {
        ops.push(create(n, "Sales"));
        ops.push(add(n, "Staff"));
    }
    let runner = {
        let c = Arc::clone(&c);
        let ops = ops.clone();
        tokio::spawn(async move { c.apply(&ops).await })
    };
    // Freeze the server once a third of the requests went out.
    while c.requests() < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    srv.signal("STOP");
    let results = runner.await.unwrap();
    // Close the connector's connections: the server's request threads must
    // end before it exits (and dumps what it holds).
    drop(c);
    srv.signal("CONT");
    let dump = srv.stop_and_dump().await;
    let held: Vec<&str> = dump.iter().filter_map(|r| r["userName"].as_str()).collect();
    let staff: Vec<&str> = dump
        .iter()
        .find(|r| r["displayName"] == "Staff")
        .and_then(|g| g["members"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| m["value"].as_str())
        .collect();
    let id_of = |n: &str| {
        dump.iter()
            .find(|r| r["userName"] == n)
            .and_then(|r| r["id"].as_str())
    };
    let (mut done, mut failed) = (0, Vec::new());
    for (op, r) in ops.iter().zip(&results) {
        let n = op.account.as_str();
        match r {
            Ok(()) => {
                done += 1;
                match op.action {
                    tenure_core::Action::CreateAccount { .. } => assert!(
                        held.contains(&n),
                        "{n} reported created but not on the server"
                    ),
                    _ => assert!(
                        id_of(n).is_some_and(|id| staff.contains(&id)),
                        "{n} reported in Staff but is not"
                    ),
                }
            }
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                assert!(
                    e.to_string().contains("system app") && e.to_string().contains(n),
                    "{e}"
                );
                failed.push(op.clone());
            }
        }
    }
    assert!(
        done > 0 && !failed.is_empty(),
        "done {done}, failed {}",
        failed.len()
    );

    // Restart: scim2-server keeps nothing, so the new one is given what
    // the old one held (new ids: every id the connector cached is stale).
    srv.launch().await;
    let mut s = settings(&srv.base());
    s.insert("timeout_seconds".into(), 5.into());
    let gid = srv.create_group("Staff").await;
    let mut members = Vec::new();
    for r in dump.iter().filter(|r| r.get("userName").is_some()) {
        let mut body = r.clone();
        body.as_object_mut()
            .unwrap()
            .retain(|k, _| k != "id" && k != "meta");
        let created = srv.create_user(body).await;
        if id_of(r["userName"].as_str().unwrap()).is_some_and(|old| staff.contains(&old)) {
            members.push(json!({"value": created["id"]}));
        }
    }
    if !members.is_empty() {
        let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "members", "value": members}]});
        let (st, b) = srv
            .request(
                reqwest::Method::PATCH,
                &format!("/Groups/{gid}"),
                Some(patch),
            )
            .await;
        assert!(st < 300, "{b}");
    }
    // The same connector (stale caches) is pointed at the new server.
    let sys2 = system(s, &["Staff"]);
    let c2 = connector(&sys2, srv.dir.path()).await;
    ok(&c2.apply(&failed).await);
    let mut users: Vec<String> = srv
        .users()
        .await
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    assert_eq!(users, names);
    assert_eq!(groups_of(&srv.memberships().await, "Staff"), names);
}

#[tokio::test]
async fn check_reports_mapping_and_group_problems() {
    let Some(srv) = ScimServer::start("scim::check_reports_mapping_and_group_problems", None).await
    else {
        return;
    };
    let mut s = settings(&srv.base());
    let mut attrs = toml::Table::new();
    attrs.insert("display_name".into(), "nickNames".into());
    attrs.insert("given_name".into(), "name.middle".into());
    attrs.insert("email".into(), "emails[type eq \"work\"].value".into());
    attrs.insert(
        "department".into(),
        format!("{ENTERPRISE}:division2").into(),
    );
    s.insert("attributes".into(), attrs.into());
    let c = connector(&system(s, &["Missing Group"]), srv.dir.path()).await;
    let msg = c.check().await.unwrap_err().to_string();
    for needle in [
        "nickNames",
        "middle",
        "division2",
        "Missing Group",
        "settings.attributes.display_name",
    ] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
}

#[test]
fn settings_are_validated_with_every_problem() {
    let mut s = settings("http://scim.example.com/v2");
    s.insert(
        "auth".into(),
        toml::Value::Table({
            let mut a = toml::Table::new();
            a.insert("type".into(), "bearer".into());
            a.insert("token".into(), "s3cr3t-inline".into());
            a
        }),
    );
    s.insert("profile".into(), "nonsense".into());
    s.insert("page_size".into(), 0.into());
    s.insert("key_attribute".into(), "mail".into());
    let mut attrs = toml::Table::new();
    attrs.insert("email".into(), "emails[type co \"w\"].value".into());
    attrs.insert("department".into(), "active".into());
    attrs.insert("nothing".into(), "title".into());
    s.insert("attributes".into(), attrs.into());
    let problems = tenure_connectors::validate(&system(s, &[])).unwrap_err();
    let all = problems.join("\n");
    for needle in [
        "settings.base_url",
        "settings.auth.token",
        "settings.profile",
        "settings.page_size",
        "settings.key_attribute",
        "settings.attributes.email",
        "settings.attributes.department",
        "settings.attributes.nothing",
    ] {
        assert!(all.contains(needle), "{needle} missing in:\n{all}");
    }
    assert!(!all.contains("s3cr3t-inline"), "{all}");
    assert_eq!(problems.len(), 8, "{all}");
    // OAuth 2.0 and basic need their parts.
    let mut s = settings("https://scim.example.com/v2");
    s.insert(
        "auth".into(),
        toml::Value::Table({
            let mut a = toml::Table::new();
            a.insert("type".into(), "oauth2".into());
            a.insert("token_url".into(), "http://idp.example.com/token".into());
            a
        }),
    );
    let all = tenure_connectors::validate(&system(s, &[]))
        .unwrap_err()
        .join("\n");
    for needle in [
        "settings.auth.token_url",
        "settings.auth.client_id",
        "settings.auth.client_secret",
    ] {
        assert!(all.contains(needle), "{needle} missing in:\n{all}");
    }
    assert!(
        tenure_connectors::validate(&system(settings("https://scim.example.com/v2"), &[])).is_ok()
    );
}
