//! Vendor profiles and services that announce less than everything, each
//! tested for the behaviour it changes, against scim2-server (configured
//! through its ServiceProviderConfig where a service would differ).

use crate::scim_support::*;
use serde_json::{Value, json};
use tenure_connectors::Connector;
use tenure_core::AccountKey;

fn spc(patch: bool, filter: bool) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": patch}, "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": filter, "maxResults": 1000}, "changePassword": {"supported": false},
        "sort": {"supported": false}, "etag": {"supported": true}
    })
}

fn with_profile(base: &str, profile: &str) -> toml::Table {
    let mut s = settings(base);
    s.insert("profile".into(), profile.into());
    s
}

fn ok(r: &[Result<(), tenure_connectors::ConnectorError>]) {
    for (i, r) in r.iter().enumerate() {
        if let Err(e) = r {
            panic!("operation {i}: {e}");
        }
    }
}

#[tokio::test]
async fn put_only_updates_by_get_then_put() {
    let Some(srv) = ScimServer::start("scim_profiles::put_only", None).await else {
        return;
    };
    let c = connector(
        &system(with_profile(&srv.base(), "put_only"), &[]),
        srv.dir.path(),
    )
    .await;
    ok(&c.apply(&[create("hana", "Sales")]).await);
    let before = c.requests();
    ok(&c
        .apply(&[update(
            "hana",
            &[
                ("department", Some("Sales"), "Ops"),
                ("email", Some("hana@example.com"), ""),
            ],
        )])
        .await);
    assert_eq!(c.requests() - before, 2, "GET then PUT");
    let u = srv.user("hana").await.unwrap();
    assert_eq!(u[ENTERPRISE]["department"], "Ops");
    assert!(
        u.get("emails")
            .is_none_or(|e| e.as_array().is_some_and(|a| a.is_empty())),
        "{u}"
    );
    assert_eq!(u["displayName"], "hana Example", "the rest is kept");
    let before = c.requests();
    ok(&c.apply(&[disable("hana")]).await);
    assert_eq!(c.requests() - before, 2);
    assert_eq!(srv.user("hana").await.unwrap()["active"], false);
}

#[tokio::test]
async fn a_service_without_patch_gets_put_and_no_memberships() {
    let Some(srv) = ScimServer::start("scim_profiles::without_patch", Some(spc(false, true))).await
    else {
        return;
    };
    srv.create_group("Staff").await;
    let c = connector(&system(settings(&srv.base()), &["Staff"]), srv.dir.path()).await;
    let e = c.check().await.unwrap_err();
    assert!(e.to_string().contains("PATCH"), "{e}");
    assert!(
        !c.capabilities().memberships,
        "no PATCH: member lists would have to be rewritten"
    );
    ok(&c
        .apply(&[
            create("ines", "Sales"),
            update("ines", &[("department", Some("Sales"), "Ops")]),
        ])
        .await);
    assert_eq!(
        srv.user("ines").await.unwrap()[ENTERPRISE]["department"],
        "Ops"
    );
    let r = c.apply(&[add("ines", "Staff")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(
        !e.is_transient() && e.to_string().contains("never rewrites"),
        "{e}"
    );
}

#[tokio::test]
async fn a_service_without_filters_is_searched_by_listing() {
    let Some(srv) =
        ScimServer::start("scim_profiles::without_filters", Some(spc(true, false))).await
    else {
        return;
    };
    srv.create_group("Staff").await;
    let sys = system(settings(&srv.base()), &["Staff"]);
    let c = connector(&sys, srv.dir.path()).await;
    ok(&c
        .apply(&[create("jon", "Sales"), create("kim", "Sales")])
        .await);
    // A fresh connector knows no ids: it lists users and groups, once per batch.
    let c = connector(&sys, srv.dir.path()).await;
    ok(&c
        .apply(&[add("jon", "Staff"), disable("kim"), delete("nobody")])
        .await);
    let m = srv.memberships().await;
    assert_eq!(m["Staff"], vec!["jon"]);
    assert_eq!(srv.user("kim").await.unwrap()["active"], false);
}

#[tokio::test]
async fn delete_required_cannot_disable() {
    let Some(srv) = ScimServer::start("scim_profiles::delete_required", None).await else {
        return;
    };
    let c = connector(
        &system(with_profile(&srv.base(), "delete_required"), &[]),
        srv.dir.path(),
    )
    .await;
    assert!(!c.capabilities().disable, "the planner deletes instead");
    ok(&c.apply(&[create("lea", "Sales")]).await);
    assert!(
        srv.user("lea").await.unwrap().get("active").is_none(),
        "active is not sent"
    );
    let r = c.apply(&[disable("lea")]).await;
    assert!(!r[0].as_ref().unwrap_err().is_transient());
    ok(&c.apply(&[delete("lea")]).await);
    assert!(srv.user("lea").await.is_none());
}

#[tokio::test]
async fn case_insensitive_user_names() {
    let Some(srv) = ScimServer::start("scim_profiles::case_insensitive_username", None).await
    else {
        return;
    };
    // The account exists as "Dave"; Tenure's key is "dave". scim2-server,
    // like many services, compares user names without case.
    let mut body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE], "userName": "Dave", "active": true});
    for (k, v) in attrs("dave", "Sales") {
        let path = MAPPING.iter().find(|(n, _, _)| *n == k).unwrap().2;
        match path {
            "displayName" => body["displayName"] = json!(v),
            "name.givenName" => body["name"] = json!({"givenName": v}),
            p if p.starts_with("emails") => body["emails"] = json!([{"type": "work", "value": v}]),
            _ => body[ENTERPRISE] = json!({"department": v}),
        }
    }
    srv.create_user(body).await;

    let standard = connector(&system(settings(&srv.base()), &[]), srv.dir.path()).await;
    let r = standard.apply(&[create("dave", "Sales")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(e.to_string().contains("case_insensitive_username"), "{e}");

    let c = connector(
        &system(with_profile(&srv.base(), "case_insensitive_username"), &[]),
        srv.dir.path(),
    )
    .await;
    ok(&c.apply(&[create("dave", "Sales")]).await);
    let read = c.read_accounts().await.unwrap();
    assert!(
        read.accounts
            .contains_key(&AccountKey::new("dave").unwrap()),
        "{:?}",
        read.accounts.keys()
    );
    ok(&c.apply(&[disable("dave")]).await);
    let users = srv.users().await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["userName"], "Dave");
    assert_eq!(users[0]["active"], false);
}

#[tokio::test]
async fn aws_identity_center_reads_memberships_by_filter() {
    let Some(srv) = ScimServer::start("scim_profiles::aws_identity_center", None).await else {
        return;
    };
    srv.create_group("Dev").await;
    srv.create_group("Ops").await;
    srv.create_group("Unmanaged").await;
    let sys = system(
        with_profile(&srv.base(), "aws_identity_center"),
        &["Dev", "Ops"],
    );
    let c = connector(&sys, srv.dir.path()).await;
    ok(&c
        .apply(&[
            create("mia", "Sales"),
            add("mia", "Dev"),
            add("mia", "Ops"),
            create("ned", "Sales"),
            add("ned", "Ops"),
            create("oli", "Sales"),
        ])
        .await);
    let c = connector(&sys, srv.dir.path()).await;
    let read = c.read_accounts().await.unwrap();
    let ents = |k: &str| {
        read.accounts[&AccountKey::new(k).unwrap()]
            .entitlements
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ents("mia"), vec!["Dev", "Ops"]);
    assert_eq!(ents("ned"), vec!["Ops"]);
    assert!(ents("oli").is_empty());
    // 3 discovery documents, 1 page of users, 1 filter per managed group,
    // then one membership check per (group, user): the group lists are never read.
    assert_eq!(c.requests(), 3 + 1 + 2 + 2 * 3);
    // Updates by PATCH: one request.
    let before = c.requests();
    ok(&c
        .apply(&[
            update("ned", &[("department", Some("Sales"), "Ops")]),
            remove("mia", "Dev"),
        ])
        .await);
    assert_eq!(c.requests() - before, 2);
    assert_eq!(srv.memberships().await["Dev"], Vec::<String>::new());
}
