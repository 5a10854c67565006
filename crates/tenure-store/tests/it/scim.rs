//! The SCIM service provider's storage: filters answered by SQL on both
//! databases, conditional writes, memberships, API tokens.

use crate::{TestDb, both, secs, t0};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tenure_scim::ListQuery;
use tenure_scim::filter;
use tenure_scim::schema::ResourceKind;
use tenure_store::{GroupWrite, ScimQueryError, Store, UserWrite};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn person(user_name: &str, given: &str, dept: &str, emails: Value, active: bool) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "userName": user_name,
        "externalId": format!("X-{user_name}"),
        "displayName": format!("{given} {user_name}"),
        "name": {"givenName": given},
        "active": active,
        "emails": emails,
        ENT: {"department": dept},
    })
}

async fn seed(store: &Store) {
    let people = [
        (
            "ada",
            "Ada",
            "Sales",
            json!([{"type": "work", "value": "ada@example.com", "primary": true}, {"type": "home", "value": "ada@home.org"}]),
            true,
        ),
        (
            "Bob",
            "Bob",
            "Finance",
            json!([{"type": "home", "value": "bob@example.com"}]),
            true,
        ),
        (
            "carol",
            "Carol",
            "sales",
            json!([{"type": "work", "value": "carol@EXAMPLE.org"}]),
            false,
        ),
        ("dave_100%", "Dave", "IT", json!([]), true),
        (
            "eve",
            "Éve",
            "IT",
            json!([{"type": "work", "value": "eve@example.com"}]),
            true,
        ),
    ];
    for (i, (u, g, d, e, a)) in people.into_iter().enumerate() {
        let r = person(u, g, d, e, a);
        let id = format!("00000000-0000-0000-0000-00000000000{i}");
        store
            .scim_save_user(
                &UserWrite {
                    id: &id,
                    identity_id: u,
                    resource: &r,
                    expected_version: None,
                    now: t0() + secs(i as i64),
                    grants: &[],
                    actor: "test",
                },
                &[],
                vec![],
            )
            .await
            .unwrap();
    }
}

async fn names(store: &Store, f: &str) -> Vec<String> {
    let q = ListQuery {
        filter: Some(filter::parse(f).unwrap()),
        start_index: 1,
        count: 100,
        ..Default::default()
    };
    let (total, items, _) = store
        .scim_list(ResourceKind::User, &q)
        .await
        .unwrap_or_else(|e| panic!("{f}: {e}"));
    assert_eq!(total as usize, items.len(), "{f}");
    items
        .iter()
        .map(|r| r.resource["userName"].as_str().unwrap().to_owned())
        .collect()
}

async fn scim_filters_run_as_sql(db: TestDb) {
    let store = db.store().await;
    seed(&store).await;
    let cases: &[(&str, &[&str])] = &[
        (r#"userName eq "ADA""#, &["ada"]),
        (r#"userName eq "bob""#, &["Bob"]),
        (r#"externalId eq "x-ada""#, &[]),
        (r#"externalId eq "X-ada""#, &["ada"]),
        (r#"userName sw "c""#, &["carol"]),
        (r#"userName ew "%""#, &["dave_100%"]),
        (r#"userName co "_1""#, &["dave_100%"]),
        (r#"userName co "%""#, &["dave_100%"]),
        (r#"displayName co "ADA""#, &["ada"]),
        (r#"name.givenName eq "ADA""#, &["ada"]),
        (r#"name.givenName eq "Éve""#, &["eve"]),
        (r#"active eq false"#, &["carol"]),
        (
            r#"active eq true and userName gt "c""#,
            &["dave_100%", "eve"],
        ),
        (r#"emails co "example.com""#, &["ada", "Bob", "eve"]),
        (r#"emails.value ew ".ORG""#, &["ada", "carol"]),
        (
            r#"emails[type eq "work" and value co "@example.com"]"#,
            &["ada", "eve"],
        ),
        (
            r#"emails[type eq "home"] and not (emails[type eq "work"])"#,
            &["Bob"],
        ),
        (r#"emails pr"#, &["ada", "Bob", "carol", "eve"]),
        (r#"not (emails pr)"#, &["dave_100%"]),
        (r#"emails[primary eq true]"#, &["ada"]),
        (
            &format!(r#"{ENT}:department eq "sales""#),
            &["ada", "carol"],
        ),
        (
            &format!(r#"{ENT}:department eq "IT" or userName eq "ada""#),
            &["ada", "dave_100%", "eve"],
        ),
        (
            r#"meta.created gt "2026-03-01T09:00:02Z""#,
            &["dave_100%", "eve"],
        ),
        (r#"meta.resourceType eq "User" and title pr"#, &[]),
        (
            r#"(userName eq "ada" or userName eq "bob") and active eq true"#,
            &["ada", "Bob"],
        ),
        (
            r#"userName ne "ada" and userName ne "bob" and userName ne "eve""#,
            &["carol", "dave_100%"],
        ),
        (
            r#"title eq null"#,
            &["ada", "Bob", "carol", "dave_100%", "eve"],
        ),
        (r#"userName eq "x' OR 1=1 --""#, &[]),
    ];
    for (f, want) in cases {
        let got = names(&store, f).await;
        assert_eq!(
            got,
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "filter {f}"
        );
    }
    // Sort, paging and count.
    let q = ListQuery {
        sort_by: Some("name.givenName".into()),
        descending: true,
        start_index: 2,
        count: 2,
        ..Default::default()
    };
    let (total, page, _) = store.scim_list(ResourceKind::User, &q).await.unwrap();
    assert_eq!(total, 5);
    let got: Vec<&str> = page
        .iter()
        .map(|r| r.resource["userName"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec!["dave_100%", "carol"]);
    let q = ListQuery {
        sort_by: Some("emails".into()),
        start_index: 1,
        count: 10,
        ..Default::default()
    };
    let (_, page, _) = store.scim_list(ResourceKind::User, &q).await.unwrap();
    let got: Vec<&str> = page
        .iter()
        .map(|r| r.resource["userName"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec!["ada", "Bob", "carol", "eve", "dave_100%"]);
    // Cursor pagination (RFC 9865): pages in creation order, a write between
    // pages neither repeats nor skips anyone, a foreign cursor is refused.
    let mut seen = Vec::new();
    let mut cursor = Some(String::new());
    while let Some(c) = cursor {
        let q = ListQuery {
            cursor: Some(c),
            count: 2,
            start_index: 1,
            ..Default::default()
        };
        let (total, page, next) = store.scim_list(ResourceKind::User, &q).await.unwrap();
        assert_eq!(total, 5);
        seen.extend(
            page.iter()
                .map(|r| r.resource["userName"].as_str().unwrap().to_owned()),
        );
        cursor = next;
    }
    assert_eq!(seen, vec!["ada", "Bob", "carol", "dave_100%", "eve"]);
    let q = ListQuery {
        cursor: Some("zz".into()),
        count: 2,
        start_index: 1,
        ..Default::default()
    };
    assert!(
        matches!(store.scim_list(ResourceKind::User, &q).await, Err(ScimQueryError::Invalid(e)) if e.scim_type == Some(tenure_scim::ScimType::InvalidCursor))
    );
    // A filter the store cannot answer is the client's error, not the store's.
    let bad = ListQuery {
        filter: Some(filter::parse("name gt \"a\"").unwrap()),
        count: 1,
        start_index: 1,
        ..Default::default()
    };
    assert!(matches!(
        store.scim_list(ResourceKind::User, &bad).await,
        Err(ScimQueryError::Invalid(_))
    ));
}

async fn scim_writes_are_conditional_and_unique(db: TestDb) {
    let store = db.store().await;
    seed(&store).await;
    let id = "00000000-0000-0000-0000-000000000000";
    let r = person("ada2", "Ada", "Sales", json!([]), true);
    let w = |v: Option<i64>| UserWrite {
        id,
        identity_id: "ada",
        resource: &r,
        expected_version: v,
        now: t0() + secs(60),
        grants: &[],
        actor: "test",
    };
    assert_eq!(
        store
            .scim_save_user(&w(Some(1)), &[], vec![])
            .await
            .unwrap(),
        2
    );
    let stale = store
        .scim_save_user(&w(Some(1)), &[], vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(stale, tenure_store::StoreError::Stale { .. }),
        "{stale}"
    );
    let dup = person("ADA2", "x", "y", json!([]), true);
    let clash = store
        .scim_save_user(
            &UserWrite {
                id: "new",
                identity_id: "other",
                resource: &dup,
                expected_version: None,
                now: t0(),
                grants: &[],
                actor: "test",
            },
            &[],
            vec![],
        )
        .await
        .unwrap_err();
    assert!(clash.is_conflict(), "{clash}");
    // Groups: members are written as differences; users see their groups.
    let g =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "VPN"});
    let members: BTreeSet<(String, String)> = [(id.to_owned(), "User".to_owned())].into();
    store
        .scim_save_group(
            &GroupWrite {
                id: "g1",
                resource: &g,
                members: &members,
                expected_version: None,
                now: t0(),
            },
            &[],
            vec![],
        )
        .await
        .unwrap();
    let u = store
        .scim_get(ResourceKind::User, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        u.resource["groups"],
        json!([{"value": "g1", "display": "VPN", "type": "direct"}])
    );
    assert_eq!(
        names(&store, r#"groups.display eq "vpn""#).await,
        vec!["ada2"]
    );
    let none = BTreeSet::new();
    store
        .scim_save_group(
            &GroupWrite {
                id: "g1",
                resource: &g,
                members: &none,
                expected_version: Some(1),
                now: t0(),
            },
            &[],
            vec![],
        )
        .await
        .unwrap();
    assert!(store.scim_members("g1").await.unwrap().is_empty());
    store
        .scim_delete(ResourceKind::User, id, 2, &[], vec![])
        .await
        .unwrap();
    assert!(
        store
            .scim_get(ResourceKind::User, id)
            .await
            .unwrap()
            .is_none()
    );
    let gone = store
        .scim_delete(ResourceKind::User, id, 2, &[], vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(gone, tenure_store::StoreError::NotFound { .. }),
        "{gone}"
    );
}

async fn api_tokens_are_hashed_expire_and_revoke(db: TestDb) {
    let store = db.store().await;
    let scopes = vec!["scim:read".to_owned(), "scim:write".to_owned()];
    let (t, secret) = store
        .create_token("okta", &scopes, Some(t0() + secs(3600)), t0())
        .await
        .unwrap();
    assert!(secret.starts_with("tnr_") && secret.len() == 68);
    assert_eq!(t.scopes, scopes);
    let found = store
        .authenticate_token(&secret, t0() + secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.name, "okta");
    assert!(
        store
            .authenticate_token(&secret, t0() + secs(3600))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(
        store
            .authenticate_token("tnr_nope", t0())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .create_token("okta", &scopes, None, t0())
            .await
            .unwrap_err()
            .is_conflict()
    );
    // The secret itself is stored nowhere.
    let raw = db.raw().await;
    let hashes: Vec<String> = sqlx::query_scalar("SELECT secret_hash FROM api_tokens")
        .fetch_all(&raw)
        .await
        .unwrap();
    assert_eq!(hashes, vec![tenure_store::secret_hash(&secret)]);
    assert!(!hashes[0].contains(&secret[4..]));
    assert!(store.revoke_token("okta", t0() + secs(20)).await.unwrap());
    assert!(!store.revoke_token("okta", t0() + secs(21)).await.unwrap());
    assert!(
        store
            .authenticate_token(&secret, t0() + secs(30))
            .await
            .unwrap()
            .is_none(),
        "revoked"
    );
    let list = store.tokens().await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].revoked_at.is_some() && list[0].last_used_at.is_some());
}

both!(
    scim_filters_run_as_sql,
    scim_writes_are_conditional_and_unique,
    api_tokens_are_hashed_expire_and_revoke,
);
