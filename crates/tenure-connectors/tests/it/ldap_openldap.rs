//! The LDAP connector against a real OpenLDAP `slapd`, started by each test
//! (see `ldap_slapd`). Every test checks what the directory really holds,
//! read through a separate connection.

use crate::ldap_slapd::*;
use crate::ldap_support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tenure_connectors::ldap::ChangeMarker;
use tenure_connectors::{Connector, ConnectorError};
use tenure_core::Capabilities;
use tenure_core::state::Account;

struct Env {
    slapd: Slapd,
    insp: Inspector,
}

impl Env {
    async fn start(test: &str, opts: SlapdOptions) -> Option<Env> {
        let slapd = Slapd::start(test, opts)?;
        let insp = Inspector::connect(&slapd.url(), ADMIN_DN, ADMIN_PW).await;
        let mut env = Env { slapd, insp };
        for g in ["staff", "admins", "sales"] {
            env.group(g).await;
        }
        Some(env)
    }

    fn dir(&self) -> &Path {
        self.slapd.dir.path()
    }

    /// A groupOfNames under the groups base, holding only the placeholder.
    async fn group(&mut self, name: &str) {
        let dn = format!("cn={},{GROUPS}", ldap3::dn_escape(name));
        self.insp
            .add(
                &dn,
                &[
                    ("objectClass", &["groupOfNames"]),
                    ("cn", &[name]),
                    ("member", &[PLACEHOLDER]),
                ],
            )
            .await;
    }

    /// The default settings: ppolicy disabling, groupOfNames with `member`.
    fn settings(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("url".into(), self.slapd.url().into());
        t.insert("bind_dn".into(), ADMIN_DN.into());
        t.insert(
            "password".into(),
            secret_file(self.dir(), "ldap-password", ADMIN_PW),
        );
        t.insert("people_base".into(), PEOPLE.into());
        t.insert("groups_base".into(), GROUPS.into());
        let mut attrs = toml::Table::new();
        attrs.insert("email".into(), "mail".into());
        attrs.insert("display_name".into(), "displayName".into());
        attrs.insert("department".into(), "departmentNumber".into());
        t.insert("attributes".into(), attrs.into());
        t.insert("disable_method".into(), "ppolicy".into());
        t.insert("group_placeholder_member".into(), PLACEHOLDER.into());
        t
    }

    async fn members(&mut self, group: &str) -> Vec<String> {
        let dn = format!("cn={},{GROUPS}", ldap3::dn_escape(group));
        let mut v: Vec<String> = self
            .insp
            .values(&dn, "member")
            .await
            .into_iter()
            .filter(|m| m != PLACEHOLDER)
            .collect();
        v.sort();
        v
    }

    async fn person_entry(&mut self, uid: &str) -> Option<Attrs> {
        let dn = format!("uid={},{PEOPLE}", ldap3::dn_escape(uid));
        self.insp.entry(&dn, &["pwdAccountLockedTime"]).await
    }
}

const PLACEHOLDER: &str = "cn=nobody,dc=example,dc=com";

fn person_dn(uid: &str) -> String {
    format!("uid={},{PEOPLE}", ldap3::dn_escape(uid))
}

fn v(s: &str) -> Vec<String> {
    vec![s.to_owned()]
}

fn expected_account(uid: &str, enabled: bool, groups: &[&str]) -> Account {
    Account {
        key: key(uid),
        attributes: person(uid).into_iter().collect(),
        enabled,
        entitlements: groups.iter().map(|g| ent(g)).collect(),
        archived: false,
    }
}

#[tokio::test]
async fn ldap_lifecycle_operations() {
    let Some(mut env) = Env::start("ldap_lifecycle_operations", SlapdOptions::default()).await
    else {
        return;
    };
    let sys = system(env.settings());
    let c = boxed(&sys, env.dir()).await;
    c.check().await.unwrap();
    assert_eq!(
        c.capabilities(),
        Capabilities {
            last_login: false,
            ..Capabilities::FULL
        }
    );

    all_ok(&c.apply(&[create_person("alice")]).await);
    let e = env.person_entry("alice").await.expect("alice created");
    assert_eq!(e["uid"], v("alice"));
    assert_eq!(e["cn"], v("alice Example"));
    assert_eq!(e["sn"], v("Example"));
    assert_eq!(e["mail"], v("alice@example.com"));
    assert_eq!(e["displayname"], v("alice E."));
    assert_eq!(e["departmentnumber"], v("Sales"));
    assert!(e["objectclass"].contains(&"inetOrgPerson".to_owned()));
    assert!(!e.contains_key("pwdaccountlockedtime"));

    // Only what changed; an empty value removes the attribute.
    all_ok(
        &c.apply(&[update(
            "alice",
            &[("email", "alice@new.example"), ("department", "")],
        )])
        .await,
    );
    let e = env.person_entry("alice").await.unwrap();
    assert_eq!(e["mail"], v("alice@new.example"));
    assert!(!e.contains_key("departmentnumber"), "{e:?}");
    assert_eq!(e["displayname"], v("alice E."));
    // Removing an absent attribute is fine.
    all_ok(&c.apply(&[update("alice", &[("department", "")])]).await);
    all_ok(
        &c.apply(&[update(
            "alice",
            &[("email", "alice@example.com"), ("department", "Sales")],
        )])
        .await,
    );

    all_ok(&c.apply(&[disable("alice")]).await);
    let e = env.person_entry("alice").await.unwrap();
    assert_eq!(e["pwdaccountlockedtime"], v("000001010000Z"));
    assert!(!c.read_accounts().await.unwrap().accounts[&key("alice")].enabled);
    all_ok(&c.apply(&[disable("alice")]).await);
    all_ok(&c.apply(&[enable("alice")]).await);
    assert!(
        !env.person_entry("alice")
            .await
            .unwrap()
            .contains_key("pwdaccountlockedtime")
    );
    all_ok(&c.apply(&[enable("alice")]).await);

    all_ok(
        &c.apply(&[add("alice", "staff"), add("alice", "admins")])
            .await,
    );
    assert_eq!(env.members("staff").await, vec![person_dn("alice")]);
    assert_eq!(env.members("admins").await, vec![person_dn("alice")]);
    // Other members are untouched: the group was not rewritten.
    let staff = format!("cn=staff,{GROUPS}");
    assert!(
        env.insp
            .values(&staff, "member")
            .await
            .contains(&PLACEHOLDER.to_owned())
    );
    // Idempotent both ways.
    all_ok(
        &c.apply(&[add("alice", "staff"), remove("alice", "admins")])
            .await,
    );
    all_ok(&c.apply(&[remove("alice", "admins")]).await);
    assert_eq!(env.members("admins").await, Vec::<String>::new());
    assert_eq!(env.members("staff").await, vec![person_dn("alice")]);

    let read = c.read_accounts().await.unwrap();
    assert_eq!(read.accounts.len(), 1);
    assert_eq!(
        read.accounts[&key("alice")],
        expected_account("alice", true, &["staff"])
    );

    all_ok(&c.apply(&[remove("alice", "staff"), delete("alice")]).await);
    assert!(env.person_entry("alice").await.is_none());
    assert_eq!(env.members("staff").await, Vec::<String>::new());
    // Deleting what is gone is done.
    all_ok(&c.apply(&[delete("alice")]).await);
    assert!(c.read_accounts().await.unwrap().accounts.is_empty());
}

#[tokio::test]
async fn ldap_replaying_a_batch_changes_nothing_more() {
    let Some(mut env) = Env::start(
        "ldap_replaying_a_batch_changes_nothing_more",
        SlapdOptions::default(),
    )
    .await
    else {
        return;
    };
    let sys = system(env.settings());
    let batch = vec![
        create_person("bob"),
        add("bob", "staff"),
        add("bob", "sales"),
        create_person("carol"),
        update("carol", &[("display_name", "Carol C.")]),
        disable("carol"),
        add("carol", "staff"),
        remove("carol", "staff"),
    ];
    let c = connector(&sys, env.dir()).await;
    all_ok(&c.apply(&batch).await);
    let first = env
        .insp
        .search(SUFFIX, "(objectClass=*)", &["pwdAccountLockedTime"])
        .await;
    // A new connector (as after a crash): nothing cached.
    let c2 = connector(&sys, env.dir()).await;
    all_ok(&c2.apply(&batch).await);
    all_ok(&c.apply(&batch).await);
    let second = env
        .insp
        .search(SUFFIX, "(objectClass=*)", &["pwdAccountLockedTime"])
        .await;
    assert_eq!(first, second);
    assert_eq!(env.members("staff").await, vec![person_dn("bob")]);

    // A create over an existing entry of the same account makes it match.
    env.insp
        .modify(
            &person_dn("bob"),
            vec![ldap3::Mod::Replace("mail", ["stale@example.com"].into())],
        )
        .await;
    all_ok(&c2.apply(&[create_person("bob")]).await);
    assert_eq!(
        env.insp.values(&person_dn("bob"), "mail").await,
        v("bob@example.com")
    );

    // An entry of another account at the same DN is not taken over.
    let mut t = env.settings();
    t.insert("rdn".into(), "cn={cn}".into());
    let by_cn = system(t);
    let c3 = connector(&by_cn, env.dir()).await;
    all_ok(
        &c3.apply(&[create("dave", &[("cn", "Same Name"), ("sn", "N")])])
            .await,
    );
    let r = c3
        .apply(&[create("erin", &[("cn", "Same Name"), ("sn", "N")])])
        .await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("cn=Same Name,ou=people,dc=example,dc=com") && msg.contains("dave"),
        "{msg}"
    );
    assert_eq!(
        env.insp.dns(PEOPLE, "(uid=erin)").await,
        Vec::<String>::new()
    );
}

/// Keys and names made of everything that means something in a DN or a filter.
const HOSTILE: &[&str] = &[
    "star*",
    "*",
    "paren(x)",
    "back\\slash",
    "comma,plus+eq=",
    "quote\"semi;",
    "lt<gt>",
    "#hash",
    " lead",
    "trail ",
    "Zoë Ærø 名前",
    "*)(uid=*",
];

#[tokio::test]
async fn ldap_hostile_values_are_escaped_everywhere() {
    let Some(mut env) = Env::start(
        "ldap_hostile_values_are_escaped_everywhere",
        SlapdOptions::default(),
    )
    .await
    else {
        return;
    };
    // Named by the key, and named by a hostile display name (found by searching).
    let by_key = system(env.settings());
    let mut t = env.settings();
    t.insert("rdn".into(), "cn={cn}".into());
    let by_name = system(t);
    for g in HOSTILE {
        env.group(g).await;
    }
    for (n, sys) in [by_key, by_name].iter().enumerate() {
        let c = connector(sys, env.dir()).await;
        let victim = format!("victim{n}");
        let mut ops = Vec::new();
        for h in HOSTILE {
            ops.push(create(
                h,
                &[
                    ("cn", h),
                    ("sn", h),
                    ("email", "x@example.com"),
                    ("display_name", h),
                ],
            ));
            ops.push(add(h, h));
        }
        // A victim the hostile filters must not reach.
        ops.push(create(&victim, &[("cn", &victim), ("sn", "V")]));
        ops.push(add(&victim, "staff"));
        all_ok(&c.apply(&ops).await);

        let read = c.read_accounts().await.unwrap();
        for h in HOSTILE {
            let a = read
                .accounts
                .get(&key(h))
                .unwrap_or_else(|| panic!("{h:?} not read back: {:?}", read.accounts.keys()));
            assert_eq!(a.attributes["cn"], *h);
            assert_eq!(a.attributes["sn"], *h);
            assert_eq!(a.attributes["display_name"], *h);
            assert_eq!(a.entitlements, BTreeSet::from([ent(h)]), "{h:?}");
            let found = env
                .insp
                .dns(PEOPLE, &format!("(uid={})", ldap3::ldap_escape(*h)))
                .await;
            assert_eq!(found.len(), 1, "{h:?}: {found:?}");
        }
        // A fresh connector has to search for every entry: each filter finds exactly one.
        let c = connector(sys, env.dir()).await;
        let mut ops = Vec::new();
        for (i, h) in HOSTILE.iter().enumerate() {
            ops.push(update(h, &[("email", &format!("changed{i}@example.com"))]));
            ops.push(disable(h));
            ops.push(remove(h, h));
        }
        all_ok(&c.apply(&ops).await);
        let read = c.read_accounts().await.unwrap();
        for (i, h) in HOSTILE.iter().enumerate() {
            let a = &read.accounts[&key(h)];
            assert_eq!(a.attributes["email"], format!("changed{i}@example.com"));
            assert!(!a.enabled);
            assert!(a.entitlements.is_empty());
        }
        let v = &read.accounts[&key(&victim)];
        assert!(v.enabled, "a hostile filter reached the victim");
        assert_eq!(v.entitlements, BTreeSet::from([ent("staff")]));
        assert!(!v.attributes.contains_key("email"));

        let c = connector(sys, env.dir()).await;
        let ops: Vec<_> = HOSTILE.iter().map(|h| delete(h)).collect();
        all_ok(&c.apply(&ops).await);
        // Now that they are gone, filter values like *)(uid=* and * match nothing else.
        let c = connector(sys, env.dir()).await;
        all_ok(
            &c.apply(&[delete("*)(uid=*"), delete("*"), delete("victim*")])
                .await,
        );
        for h in ["*", "*)(uid=*"] {
            let r = c.apply(&[disable(h)]).await;
            assert!(
                r[0].is_err(),
                "disabling {h:?}, which does not exist, must fail"
            );
        }
        let left: Vec<String> = c
            .read_accounts()
            .await
            .unwrap()
            .accounts
            .values()
            .filter(|a| a.enabled)
            .map(|a| a.key.as_str().to_owned())
            .collect();
        let want: Vec<String> = (0..=n).map(|i| format!("victim{i}")).collect();
        assert_eq!(left, want);
    }
}

#[tokio::test]
async fn ldap_rename_and_move_keep_memberships() {
    let Some(mut env) = Env::start(
        "ldap_rename_and_move_keep_memberships",
        SlapdOptions::default(),
    )
    .await
    else {
        return;
    };
    for ou in ["Sales", "Ops"] {
        env.insp
            .add(
                &format!("ou={ou},{PEOPLE}"),
                &[("objectClass", &["organizationalUnit"]), ("ou", &[ou])],
            )
            .await;
    }
    let mut t = env.settings();
    t.insert("rdn".into(), "cn={cn}".into());
    t.insert(
        "container".into(),
        format!("ou={{department}},{PEOPLE}").into(),
    );
    let sys = system(t);
    let c = connector(&sys, env.dir()).await;
    all_ok(
        &c.apply(&[create_person("fred"), add("fred", "staff")])
            .await,
    );
    let dn1 = format!("cn=fred Example,ou=Sales,{PEOPLE}");
    assert!(env.insp.entry(&dn1, &[]).await.is_some());
    assert_eq!(env.members("staff").await, vec![dn1.clone()]);

    all_ok(
        &c.apply(&[update("fred", &[("cn", "Fred Smith, Jr.")])])
            .await,
    );
    let dn2 = format!("cn=Fred Smith\\2c Jr.,ou=Sales,{PEOPLE}");
    assert!(env.insp.entry(&dn1, &[]).await.is_none());
    let e = env.insp.entry(&dn2, &[]).await.expect("renamed");
    assert_eq!(e["cn"], v("Fred Smith, Jr."));
    assert_eq!(env.members("staff").await.len(), 1);
    assert_eq!(dn_norm(&env.members("staff").await[0]), dn_norm(&dn2));

    // A new connector (nothing cached) moves it when the department changes.
    let c = connector(&sys, env.dir()).await;
    all_ok(
        &c.apply(&[update(
            "fred",
            &[("department", "Ops"), ("email", "fred@ops.example")],
        )])
        .await,
    );
    let dn3 = format!("cn=Fred Smith\\2c Jr.,ou=Ops,{PEOPLE}");
    let e = env.insp.entry(&dn3, &[]).await.expect("moved");
    assert_eq!(e["departmentnumber"], v("Ops"));
    assert_eq!(e["mail"], v("fred@ops.example"));
    assert_eq!(env.insp.dns(PEOPLE, "(uid=fred)").await.len(), 1);
    assert_eq!(dn_norm(&env.members("staff").await[0]), dn_norm(&dn3));
    let read = c.read_accounts().await.unwrap();
    assert_eq!(
        read.accounts[&key("fred")].entitlements,
        BTreeSet::from([ent("staff")])
    );

    // Both at once, replayed.
    let both = update("fred", &[("department", "Sales"), ("cn", "Fred")]);
    all_ok(&c.apply(std::slice::from_ref(&both)).await);
    all_ok(&c.apply(&[both]).await);
    let dn4 = format!("cn=Fred,ou=Sales,{PEOPLE}");
    assert!(env.insp.entry(&dn4, &[]).await.is_some());
    assert_eq!(env.insp.dns(PEOPLE, "(uid=fred)").await.len(), 1);
    assert_eq!(dn_norm(&env.members("staff").await[0]), dn_norm(&dn4));

    // A missing container is a permanent error that names it.
    let r = c
        .apply(&[update("fred", &[("department", "Nowhere")])])
        .await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains("ou=Nowhere"), "{e}");
    let r = c
        .apply(&[create(
            "gina",
            &[("cn", "Gina"), ("sn", "G"), ("department", "Nowhere")],
        )])
        .await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("cn=Gina,ou=Nowhere,ou=people,dc=example,dc=com")
            && msg.contains("noSuchObject"),
        "{msg}"
    );
}

fn dn_norm(dn: &str) -> String {
    dn.to_lowercase().replace("\\,", "\\2c")
}

#[tokio::test]
async fn ldap_disable_by_move_and_by_attribute() {
    let Some(mut env) = Env::start(
        "ldap_disable_by_move_and_by_attribute",
        SlapdOptions::default(),
    )
    .await
    else {
        return;
    };
    let mut t = env.settings();
    t.insert("disable_method".into(), "move".into());
    t.insert("disabled_container".into(), DISABLED.into());
    let sys = system(t);
    let c = connector(&sys, env.dir()).await;
    c.check().await.unwrap();
    all_ok(
        &c.apply(&[create_person("hal"), add("hal", "staff"), disable("hal")])
            .await,
    );
    let moved = format!("uid=hal,{DISABLED}");
    assert!(env.insp.entry(&moved, &[]).await.is_some());
    assert!(env.person_entry("hal").await.is_none());
    assert_eq!(env.members("staff").await, vec![moved.clone()]);
    let read = c.read_accounts().await.unwrap();
    assert_eq!(
        read.accounts[&key("hal")],
        expected_account("hal", false, &["staff"])
    );
    // Idempotent, also from a fresh connector that guesses the old DN.
    all_ok(&c.apply(&[disable("hal")]).await);
    let fresh = connector(&sys, env.dir()).await;
    all_ok(
        &fresh
            .apply(&[disable("hal"), update("hal", &[("email", "hal@x.example")])])
            .await,
    );
    assert_eq!(env.insp.values(&moved, "mail").await, v("hal@x.example"));
    all_ok(&fresh.apply(&[enable("hal")]).await);
    assert!(env.person_entry("hal").await.is_some());
    assert!(env.insp.entry(&moved, &[]).await.is_none());
    assert_eq!(env.members("staff").await, vec![person_dn("hal")]);
    all_ok(
        &connector(&sys, env.dir())
            .await
            .apply(&[enable("hal")])
            .await,
    );
    assert!(c.read_accounts().await.unwrap().accounts[&key("hal")].enabled);

    let mut t = env.settings();
    t.insert("disable_method".into(), "attribute".into());
    t.insert("disabled_attribute".into(), "employeeType".into());
    t.insert("disabled_value".into(), "disabled".into());
    t.insert("enabled_value".into(), "active".into());
    let sys = system(t);
    let c = connector(&sys, env.dir()).await;
    all_ok(&c.apply(&[create_person("ida")]).await);
    assert_eq!(
        env.insp.values(&person_dn("ida"), "employeeType").await,
        v("active")
    );
    all_ok(&c.apply(&[disable("ida")]).await);
    assert_eq!(
        env.insp.values(&person_dn("ida"), "employeeType").await,
        v("disabled")
    );
    assert!(!c.read_accounts().await.unwrap().accounts[&key("ida")].enabled);
    all_ok(&c.apply(&[enable("ida")]).await);
    assert_eq!(
        env.insp.values(&person_dn("ida"), "employeeType").await,
        v("active")
    );

    // Without a method the system cannot disable, and says so.
    let mut t = env.settings();
    t.remove("disable_method");
    let sys = system(t);
    let c = connector(&sys, env.dir()).await;
    assert!(!c.capabilities().disable);
    let r = c.apply(&[disable("ida")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(
        matches!(e, ConnectorError::Rejected { .. }) && e.to_string().contains("disable_method"),
        "{e}"
    );
}

#[tokio::test]
async fn ldap_group_flavours() {
    let Some(mut env) = Env::start("ldap_group_flavours", SlapdOptions::default()).await else {
        return;
    };
    // posixGroup with memberUid.
    env.insp
        .add(
            &format!("ou=posix,{SUFFIX}"),
            &[("objectClass", &["organizationalUnit"]), ("ou", &["posix"])],
        )
        .await;
    env.insp
        .add(
            &format!("cn=devs,ou=posix,{SUFFIX}"),
            &[
                ("objectClass", &["posixGroup"]),
                ("cn", &["devs"]),
                ("gidNumber", &["5000"]),
            ],
        )
        .await;
    let mut t = env.settings();
    t.insert("groups_base".into(), format!("ou=posix,{SUFFIX}").into());
    t.insert("membership_attribute".into(), "memberUid".into());
    t.remove("group_placeholder_member");
    let sys = system(t);
    let c = connector(&sys, env.dir()).await;
    all_ok(
        &c.apply(&[create_person("jan"), add("jan", "devs"), add("jan", "devs")])
            .await,
    );
    let devs = format!("cn=devs,ou=posix,{SUFFIX}");
    assert_eq!(env.insp.values(&devs, "memberUid").await, v("jan"));
    assert_eq!(
        c.read_accounts().await.unwrap().accounts[&key("jan")].entitlements,
        BTreeSet::from([ent("devs")])
    );
    all_ok(
        &c.apply(&[remove("jan", "devs"), remove("jan", "devs")])
            .await,
    );
    assert!(env.insp.values(&devs, "memberUid").await.is_empty());

    // groupOfUniqueNames with uniqueMember.
    env.insp
        .add(
            &format!("ou=unique,{SUFFIX}"),
            &[
                ("objectClass", &["organizationalUnit"]),
                ("ou", &["unique"]),
            ],
        )
        .await;
    env.insp
        .add(
            &format!("cn=ops,ou=unique,{SUFFIX}"),
            &[
                ("objectClass", &["groupOfUniqueNames"]),
                ("cn", &["ops"]),
                ("uniqueMember", &[PLACEHOLDER]),
            ],
        )
        .await;
    let mut t = env.settings();
    t.insert("groups_base".into(), format!("ou=unique,{SUFFIX}").into());
    t.insert("membership_attribute".into(), "uniqueMember".into());
    let sys = system(t);
    let c = connector(&sys, env.dir()).await;
    all_ok(&c.apply(&[add("jan", "ops")]).await);
    let ops = format!("cn=ops,ou=unique,{SUFFIX}");
    let mut want = vec![PLACEHOLDER.to_owned(), person_dn("jan")];
    want.sort();
    assert_eq!(env.insp.values(&ops, "uniqueMember").await, want);
    assert_eq!(
        c.read_accounts().await.unwrap().accounts[&key("jan")].entitlements,
        BTreeSet::from([ent("ops")])
    );

    // The last member of a groupOfNames leaves the placeholder behind.
    env.insp
        .add(
            &format!("cn=solo,{GROUPS}"),
            &[
                ("objectClass", &["groupOfNames"]),
                ("cn", &["solo"]),
                ("member", &[&person_dn("jan")]),
            ],
        )
        .await;
    let c = connector(&system(env.settings()), env.dir()).await;
    all_ok(&c.apply(&[remove("jan", "solo")]).await);
    assert_eq!(
        env.insp
            .values(&format!("cn=solo,{GROUPS}"), "member")
            .await,
        v(PLACEHOLDER)
    );
    // Without a placeholder that is a permanent error naming the group.
    let mut t = env.settings();
    t.remove("group_placeholder_member");
    let c = connector(&system(t), env.dir()).await;
    all_ok(&c.apply(&[add("jan", "solo")]).await);
    env.insp
        .modify(
            &format!("cn=solo,{GROUPS}"),
            vec![ldap3::Mod::Delete("member", [PLACEHOLDER].into())],
        )
        .await;
    let r = c.apply(&[remove("jan", "solo")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient());
    assert!(
        e.to_string().contains("cn=solo,ou=groups")
            && e.to_string().contains("objectClassViolation"),
        "{e}"
    );

    // A group that does not exist.
    let r = c.apply(&[add("jan", "ghosts")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .contains("cn=ghosts,ou=groups,dc=example,dc=com"),
        "{e}"
    );
}

#[tokio::test]
async fn ldap_paged_read_and_incremental_changes() {
    let Some(mut env) = Env::start(
        "ldap_paged_read_and_incremental_changes",
        SlapdOptions::default(),
    )
    .await
    else {
        return;
    };
    let mut t = env.settings();
    t.insert("page_size".into(), 100.into());
    let sys = system(t);
    let c = connector(&sys, env.dir()).await;
    let n = 1234;
    let mut ops = Vec::new();
    for i in 0..n {
        let k = format!("user{i:05}");
        ops.push(create_person(&k));
        if i % 10 == 0 {
            ops.push(add(&k, "staff"));
        }
    }
    all_ok(&c.apply(&ops).await);
    let read = c.read_accounts().await.unwrap();
    assert_eq!(read.accounts.len(), n);
    assert_eq!(
        read.accounts
            .values()
            .filter(|a| !a.entitlements.is_empty())
            .count(),
        124
    );
    assert_eq!(
        read.accounts[&key("user00010")],
        expected_account("user00010", true, &["staff"])
    );

    let all = c.read_changes_since(None).await.unwrap();
    assert_eq!(all.accounts, read);
    let marker = all.marker.clone();
    assert!(!marker.as_str().is_empty());
    let quiet = c.read_changes_since(Some(&marker)).await.unwrap();
    assert!(
        quiet.accounts.accounts.is_empty() && quiet.entitlements.is_empty(),
        "{:?}",
        quiet.accounts.accounts.keys().take(5).collect::<Vec<_>>()
    );
    assert_eq!(quiet.marker, marker);

    all_ok(
        &c.apply(&[
            update("user00001", &[("email", "one@example.com")]),
            disable("user00002"),
            remove("user00010", "staff"),
            add("user00003", "admins"),
        ])
        .await,
    );
    // A change made by someone else.
    env.insp
        .modify(
            &person_dn("user00004"),
            vec![ldap3::Mod::Replace("displayName", ["Four"].into())],
        )
        .await;
    let changes = c.read_changes_since(Some(&quiet.marker)).await.unwrap();
    let keys: Vec<&str> = changes
        .accounts
        .accounts
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, vec!["user00001", "user00002", "user00004"]);
    assert_eq!(
        changes.accounts.accounts[&key("user00001")].attributes["email"],
        "one@example.com"
    );
    assert!(!changes.accounts.accounts[&key("user00002")].enabled);
    assert_eq!(
        changes.accounts.accounts[&key("user00004")].attributes["display_name"],
        "Four"
    );
    let groups: Vec<&str> = changes.entitlements.keys().map(|g| g.as_str()).collect();
    assert_eq!(groups, vec!["admins", "staff"]);
    assert_eq!(
        changes.entitlements[&ent("admins")],
        BTreeSet::from([key("user00003")])
    );
    assert_eq!(changes.entitlements[&ent("staff")].len(), 123);
    assert!(!changes.entitlements[&ent("staff")].contains(&key("user00010")));
    assert!(changes.marker > quiet.marker);
    // A marker of the wrong kind is refused.
    assert!(
        c.read_changes_since(Some(&ChangeMarker::new("x)(y")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn ldap_errors_name_system_operation_dn_and_answer() {
    let Some(mut env) = Env::start(
        "ldap_errors_name_system_operation_dn_and_answer",
        SlapdOptions::default(),
    )
    .await
    else {
        return;
    };
    // Wrong password: permanent, names the bind DN, never the password.
    let mut t = env.settings();
    t.insert(
        "password".into(),
        secret_file(env.dir(), "wrong", "Sup3r-Secret-Wrong"),
    );
    let c = connector(&system(t), env.dir()).await;
    let e = c.check().await.unwrap_err();
    let msg = e.to_string();
    assert!(!e.is_transient(), "{msg}");
    assert!(
        msg.contains("system dir")
            && msg.contains(ADMIN_DN)
            && msg.contains("49 (invalidCredentials)"),
        "{msg}"
    );
    assert!(!msg.contains("Sup3r-Secret-Wrong"), "{msg}");
    let r = c.apply(&[create_person("kim"), create_person("lou")]).await;
    for r in &r {
        let e = r.as_ref().unwrap_err();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("create of account"), "{e}");
        assert!(!format!("{e:?}").contains("Sup3r-Secret-Wrong"));
    }
    assert!(!format!("{c:?}").contains(ADMIN_PW));

    // Nobody listening: transient.
    let mut t = env.settings();
    t.insert(
        "url".into(),
        format!("ldap://127.0.0.1:{}", free_port()).into(),
    );
    t.insert("connect_timeout_seconds".into(), 2.into());
    let c = connector(&system(t), env.dir()).await;
    let r = c
        .apply(&[
            create_person("kim"),
            add("kim", "staff"),
            create_person("lou"),
        ])
        .await;
    for r in &r {
        let e = r.as_ref().unwrap_err();
        assert!(e.is_transient(), "{e}");
    }
    assert!(
        r[0].as_ref()
            .unwrap_err()
            .to_string()
            .contains("connecting to ldap://127.0.0.1:")
    );
    assert!(c.read_accounts().await.unwrap_err().is_transient());

    // Schema violations and unknown attributes: permanent, with the server's answer.
    let c = connector(&system(env.settings()), env.dir()).await;
    let r = c
        .apply(&[create("kim", &[("cn", "Kim")]), create_person("lou")])
        .await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient());
    let msg = e.to_string();
    assert!(
        msg.contains(
            "system dir: create of account \"kim\" at uid=kim,ou=people,dc=example,dc=com"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("65 (objectClassViolation)") && msg.contains("sn"),
        "{msg}"
    );
    assert!(r[1].is_ok(), "the other operation succeeds alone");
    let mut attrs: Vec<(&str, &str)> = ACCOUNT_ATTRIBUTES.to_vec();
    attrs.push(("shoe_size", "identity.shoe_size"));
    let mut t = env.settings();
    t.get_mut("attributes")
        .unwrap()
        .as_table_mut()
        .unwrap()
        .insert("shoe_size".into(), "shoeSize".into());
    let c = connector(&system_with(t, &attrs), env.dir()).await;
    let r = c.apply(&[update("lou", &[("shoe_size", "44")])]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient());
    assert!(e.to_string().contains("shoeSize"), "{e}");
    // An account that is not there.
    let r = c
        .apply(&[update("nobody", &[("email", "x@example.com")])])
        .await;
    let e = r[0].as_ref().unwrap_err();
    assert!(
        !e.is_transient() && e.to_string().contains("uid=\"nobody\""),
        "{e}"
    );
    // A later operation of the same account is not attempted after a failure.
    let r = c
        .apply(&[create("kim", &[("cn", "Kim")]), add("kim", "staff")])
        .await;
    assert!(r[0].is_err() && r[1].is_err());
    assert!(
        r[1].as_ref()
            .unwrap_err()
            .to_string()
            .contains("not attempted")
    );
    assert!(env.members("staff").await.is_empty());

    // check() names what is missing.
    let mut t = env.settings();
    t.insert("groups_base".into(), format!("ou=teams,{SUFFIX}").into());
    let e = connector(&system(t), env.dir())
        .await
        .check()
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("settings.groups_base: ou=teams,dc=example,dc=com does not exist"),
        "{e}"
    );

    // An operation for another system is refused.
    let mut other = create_person("mia");
    other.system = tenure_core::SystemId::new("crm").unwrap();
    let r = connector(&system(env.settings()), env.dir())
        .await
        .apply(&[other])
        .await;
    assert!(matches!(r[0], Err(ConnectorError::Rejected { .. })));
    assert!(env.person_entry("mia").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_connection_loss_mid_batch_loses_nothing() {
    let Some(mut env) = Env::start(
        "ldap_connection_loss_mid_batch_loses_nothing",
        SlapdOptions::default(),
    )
    .await
    else {
        return;
    };
    let mut t = env.settings();
    t.insert("operation_timeout_seconds".into(), 10.into());
    t.insert("connect_timeout_seconds".into(), 2.into());
    let sys = system(t);
    let c = std::sync::Arc::new(connector(&sys, env.dir()).await);
    let n = 5000;
    let mut ops = Vec::new();
    for i in 0..n {
        ops.push(create_person(&format!("p{i:05}")));
    }
    let ops = std::sync::Arc::new(ops);
    let run = {
        let (c, ops) = (c.clone(), ops.clone());
        tokio::spawn(async move { c.apply(&ops).await })
    };
    // Stop the server once some entries are in.
    let people = env.slapd.url();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("ldapsearch")
            .args([
                "-x", "-H", &people, "-D", ADMIN_DN, "-w", ADMIN_PW, "-LLL", "-b", PEOPLE,
                "(uid=*)", "1.1",
            ])
            .output()
            .unwrap();
        let count = String::from_utf8_lossy(&out.stdout).matches("dn: ").count();
        if count >= 200 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    env.slapd.stop();
    let results = run.await.unwrap();
    assert_eq!(results.len(), n);
    env.slapd.restart();
    let mut insp = Inspector::connect(&env.slapd.url(), ADMIN_DN, ADMIN_PW).await;
    let present: BTreeSet<String> = insp
        .dns(PEOPLE, "(uid=*)")
        .await
        .into_iter()
        .map(|d| d.to_lowercase())
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(()) => {
                ok += 1;
                assert!(
                    present.contains(&format!("uid=p{i:05},{PEOPLE}")),
                    "p{i:05} reported done but not in the directory"
                );
            }
            Err(e) => {
                failed += 1;
                assert!(e.is_transient(), "p{i:05}: {e}");
            }
        }
    }
    assert!(
        ok > 0 && failed > 0,
        "ok {ok}, failed {failed}: the server must stop mid-batch"
    );
    // Re-applying the whole batch finishes it.
    all_ok(&c.apply(&ops).await);
    let present = insp.dns(PEOPLE, "(uid=*)").await;
    assert_eq!(present.len(), n);
    let read = c.read_accounts().await.unwrap();
    assert_eq!(read.accounts.len(), n);
    assert_eq!(
        read.accounts[&key("p00000")],
        expected_account("p00000", true, &[])
    );
}

#[tokio::test]
async fn ldap_starttls_and_ldaps_with_a_private_ca() {
    let Some(mut env) = Env::start(
        "ldap_starttls_and_ldaps_with_a_private_ca",
        SlapdOptions { tls: true },
    )
    .await
    else {
        return;
    };
    let ca = env.slapd.ca_file.clone().unwrap();
    std::fs::copy(&ca, env.dir().join("ca-copy.pem")).unwrap();
    let mut starttls = env.settings();
    starttls.insert("starttls".into(), true.into());
    starttls.insert("tls_ca_file".into(), "ca-copy.pem".into());
    let mut ldaps = env.settings();
    ldaps.insert("url".into(), env.slapd.ldaps_url().into());
    ldaps.insert("tls_ca_file".into(), "ca-copy.pem".into());
    for (name, t) in [("nina", starttls), ("otto", ldaps)] {
        let c = connector(&system(t), env.dir()).await;
        c.check().await.unwrap();
        all_ok(&c.apply(&[create_person(name), add(name, "staff")]).await);
        assert!(env.person_entry(name).await.is_some());
        assert!(
            c.read_accounts()
                .await
                .unwrap()
                .accounts
                .contains_key(&key(name))
        );
    }
    // Without the CA the certificate is not trusted: a permanent error.
    let mut t = env.settings();
    t.insert("url".into(), env.slapd.ldaps_url().into());
    let c = connector(&system(t), env.dir()).await;
    let e = c.check().await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(
        e.to_string().contains("connecting to ldaps://127.0.0.1"),
        "{e}"
    );
    // Skipping verification (tests only) connects.
    let mut t = env.settings();
    t.insert("url".into(), env.slapd.ldaps_url().into());
    t.insert("tls_insecure_skip_verify".into(), true.into());
    connector(&system(t), env.dir())
        .await
        .check()
        .await
        .unwrap();
    assert_eq!(env.members("staff").await.len(), 2);
}

#[test]
fn ldap_settings_report_every_problem() {
    let mut t = toml::Table::new();
    t.insert("url".into(), "http://example.com".into());
    t.insert("bind_dn".into(), "not a dn".into());
    t.insert("password".into(), "inline-secret".into());
    t.insert("people_base".into(), "ou=people,dc=example,dc=com".into());
    t.insert("rdn".into(), "uid={nickname}".into());
    t.insert("disable_method".into(), "move".into());
    t.insert("membership_attribute".into(), "member".into());
    t.insert("page_size".into(), 0.into());
    let mut attrs = toml::Table::new();
    attrs.insert("email".into(), "mail".into());
    attrs.insert("display_name".into(), "mail".into());
    t.insert("attributes".into(), attrs.into());
    let problems = tenure_connectors::validate(&system(t)).unwrap_err();
    let text = problems.join("\n");
    for must in [
        "settings.url",
        "settings.bind_dn",
        "settings.password: a secret must not be written",
        "settings.rdn",
        "settings.disabled_container: needed by disable_method = \"move\"",
        "settings.membership_attribute: needs settings.groups_base",
        "settings.page_size",
        "both write mail",
    ] {
        assert!(text.contains(must), "{must:?} missing from:\n{text}");
    }
    assert!(!text.contains("inline-secret"), "{text}");

    // A valid Active Directory configuration, with its defaults.
    let mut t = toml::Table::new();
    t.insert("url".into(), "ldaps://dc.example.com".into());
    t.insert("directory".into(), "active_directory".into());
    t.insert(
        "bind_dn".into(),
        "CN=Tenure,CN=Users,DC=example,DC=com".into(),
    );
    let mut p = toml::Table::new();
    p.insert("env".into(), "AD_PASSWORD".into());
    t.insert("password".into(), p.into());
    t.insert("people_base".into(), "OU=Staff,DC=example,DC=com".into());
    t.insert("groups_base".into(), "OU=Groups,DC=example,DC=com".into());
    let mut attrs = toml::Table::new();
    attrs.insert("email".into(), "mail".into());
    attrs.insert("display_name".into(), "displayName".into());
    attrs.insert("department".into(), "department".into());
    t.insert("attributes".into(), attrs.into());
    // The default RDN (cn={key}) clashes with an account attribute written to cn.
    let problems = tenure_connectors::validate(&system(t.clone())).unwrap_err();
    assert!(problems.join("\n").contains("settings.rdn"), "{problems:?}");
    t.insert("rdn".into(), "cn={cn}".into());
    tenure_connectors::validate(&system(t.clone())).unwrap();
    // …but over plain ldap:// it cannot set the initial password.
    t.insert("url".into(), "ldap://dc.example.com".into());
    let problems = tenure_connectors::validate(&system(t)).unwrap_err();
    assert!(
        problems.join("\n").contains("settings.initial_password"),
        "{problems:?}"
    );
}

/// `BTreeMap` of keys for readable assertion failures.
#[allow(dead_code)]
fn keys_of(a: &BTreeMap<tenure_core::AccountKey, Account>) -> Vec<&str> {
    a.keys().map(|k| k.as_str()).collect()
}

const ARCHIVE: &str = "ou=archive,dc=example,dc=com";

#[tokio::test]
async fn ldap_archive_moves_the_entry_into_the_archive_container() {
    let Some(mut env) = Env::start(
        "ldap_archive_moves_the_entry_into_the_archive_container",
        SlapdOptions::default(),
    )
    .await
    else {
        return;
    };
    env.insp
        .add(
            ARCHIVE,
            &[
                ("objectClass", &["organizationalUnit"]),
                ("ou", &["archive"]),
            ],
        )
        .await;
    let mut t = env.settings();
    t.insert("archive_container".into(), ARCHIVE.into());
    let sys = system(t);
    let c = connector(&sys, env.dir()).await;
    c.check().await.unwrap();
    let caps = c.capabilities();
    assert!(caps.archive && !caps.archive_to_manager, "{caps:?}");
    let hostile = "comma,plus+eq=*)(uid=*";
    all_ok(
        &c.apply(&[
            create_person("hal"),
            add("hal", "staff"),
            disable("hal"),
            create_person(hostile),
            disable(hostile),
        ])
        .await,
    );
    assert!(!c.read_accounts().await.unwrap().accounts[&key("hal")].archived);

    // The archive step: the disabled entry moves, keeping its group.
    all_ok(&c.apply(&[archive("hal"), archive(hostile)]).await);
    let archived_dn = |uid: &str| format!("uid={},{ARCHIVE}", ldap3::dn_escape(uid));
    assert!(env.insp.entry(&archived_dn("hal"), &[]).await.is_some());
    assert!(env.insp.entry(&archived_dn(hostile), &[]).await.is_some());
    assert!(env.person_entry("hal").await.is_none());
    assert!(env.person_entry(hostile).await.is_none());
    assert_eq!(env.members("staff").await, vec![archived_dn("hal")]);
    let read = c.read_accounts().await.unwrap();
    for uid in ["hal", hostile] {
        let a = &read.accounts[&key(uid)];
        assert!(a.archived && !a.enabled, "{a:?}");
    }
    // Idempotent, also from a fresh connector that guesses the old DN.
    all_ok(&c.apply(&[archive("hal")]).await);
    let fresh = connector(&sys, env.dir()).await;
    all_ok(&fresh.apply(&[archive("hal"), archive(hostile)]).await);
    assert!(env.insp.entry(&archived_dn("hal"), &[]).await.is_some());

    // Rehired: the entry goes back under people_base, enabled.
    all_ok(&fresh.apply(&[enable("hal")]).await);
    assert!(env.insp.entry(&archived_dn("hal"), &[]).await.is_none());
    let entry = env.person_entry("hal").await.unwrap();
    assert!(!entry.contains_key("pwdAccountLockedTime"), "{entry:?}");
    assert_eq!(env.members("staff").await, vec![person_dn("hal")]);
    let read = c.read_accounts().await.unwrap();
    assert!(read.accounts[&key("hal")].enabled && !read.accounts[&key("hal")].archived);

    // With disabling by move, an archived entry reads as disabled, and
    // disabling it again leaves it where it is.
    let mut t = env.settings();
    t.insert("disable_method".into(), "move".into());
    t.insert("disabled_container".into(), DISABLED.into());
    t.insert("archive_container".into(), ARCHIVE.into());
    let moving = connector(&system(t), env.dir()).await;
    all_ok(&moving.apply(&[disable("hal"), archive("hal")]).await);
    assert!(env.insp.entry(&archived_dn("hal"), &[]).await.is_some());
    let a = &moving.read_accounts().await.unwrap().accounts[&key("hal")];
    assert!(!a.enabled && a.archived, "{a:?}");
    all_ok(&moving.apply(&[disable("hal")]).await);
    assert!(env.insp.entry(&archived_dn("hal"), &[]).await.is_some());
    all_ok(&moving.apply(&[enable("hal")]).await);
    assert!(env.person_entry("hal").await.is_some());

    // Without a container the system cannot archive, and says so.
    let c = connector(&system(env.settings()), env.dir()).await;
    assert!(!c.capabilities().archive);
    let r = c.apply(&[archive("hal")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(e.to_string().contains("archive_container"), "{e}");
    // A container that does not exist is found by check.
    let mut t = env.settings();
    t.insert(
        "archive_container".into(),
        "ou=nowhere,dc=example,dc=com".into(),
    );
    let e = connector(&system(t), env.dir())
        .await
        .check()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("archive_container"), "{e}");
}
