//! The LDAP connector against a real Active Directory domain controller
//! (Samba's, see `ldap_samba`): sAMAccountName, userPrincipalName,
//! userAccountControl, unicodePwd over LDAPS, memberOf and uSNChanged.
//! Each test works in its own organizational unit.

use crate::ldap_samba::*;
use crate::ldap_support::*;
use std::collections::BTreeSet;
use tenure_connectors::Connector;
use tenure_core::Capabilities;

/// The account mapping of the Active Directory tests.
const AD_ATTRIBUTES: &[(&str, &str)] = &[
    ("cn", "identity.name"),
    ("sn", "identity.family_name"),
    ("email", "identity.email"),
    ("display_name", "identity.display_name"),
    ("upn", "identity.email"),
];

struct Ad {
    dir: tempfile::TempDir,
    insp: Inspector,
    ou: String,
}

impl Ad {
    /// An organizational unit of its own (people, groups, disabled) in the shared domain.
    async fn start(test: &str, groups: &[&str]) -> Option<Ad> {
        domain_controller(test)?;
        let mut insp = Inspector::connect(LDAPS_URL, ADMIN_DN, ADMIN_PW).await;
        let ou = format!("OU={test},{DOMAIN_DN}");
        insp.add(&ou, &[("objectClass", &["organizationalUnit"])])
            .await;
        for sub in ["people", "groups", "disabled"] {
            insp.add(
                &format!("OU={sub},{ou}"),
                &[("objectClass", &["organizationalUnit"])],
            )
            .await;
        }
        let mut ad = Ad {
            dir: tempfile::tempdir().unwrap(),
            insp,
            ou,
        };
        for g in groups {
            ad.group(g).await;
        }
        Some(ad)
    }

    async fn group(&mut self, name: &str) {
        let dn = format!("CN={},{}", ldap3::dn_escape(name), self.groups());
        // sAMAccountName is unique in the domain and takes no punctuation.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let sam = format!("tg{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        self.insp
            .add(
                &dn,
                &[("objectClass", &["group"]), ("sAMAccountName", &[&sam])],
            )
            .await;
    }

    fn people(&self) -> String {
        format!("OU=people,{}", self.ou)
    }

    fn groups(&self) -> String {
        format!("OU=groups,{}", self.ou)
    }

    fn settings(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("url".into(), LDAPS_URL.into());
        // Samba's certificate is self-signed and names the host, not 127.0.0.1.
        t.insert("tls_insecure_skip_verify".into(), true.into());
        t.insert("directory".into(), "active_directory".into());
        t.insert("bind_dn".into(), ADMIN_DN.into());
        t.insert(
            "password".into(),
            secret_file(self.dir.path(), "ad-password", ADMIN_PW),
        );
        t.insert("people_base".into(), self.people().into());
        t.insert("groups_base".into(), self.groups().into());
        t.insert("rdn".into(), "cn={cn}".into());
        let mut attrs = toml::Table::new();
        attrs.insert("email".into(), "mail".into());
        attrs.insert("display_name".into(), "displayName".into());
        attrs.insert("upn".into(), "userPrincipalName".into());
        t.insert("attributes".into(), attrs.into());
        t
    }

    /// The entry of an account, found by sAMAccountName: (DN, attributes).
    async fn account(&mut self, sam: &str) -> Option<(String, Attrs)> {
        let filter = format!("(sAMAccountName={})", ldap3::ldap_escape(sam));
        let base = self.ou.clone();
        self.insp
            .search(&base, &filter, &["memberOf", "uSNChanged"])
            .await
            .into_iter()
            .next()
    }

    async fn uac(&mut self, sam: &str) -> u32 {
        let (_, a) = self.account(sam).await.expect("account");
        a["useraccountcontrol"][0].parse().unwrap()
    }
}

fn ad_person(sam: &str) -> Vec<(String, String)> {
    vec![
        ("cn".into(), format!("{sam} Person")),
        ("sn".into(), "Person".into()),
        ("email".into(), format!("{sam}@{REALM}")),
        ("display_name".into(), format!("{sam} P.")),
        ("upn".into(), format!("{sam}@{REALM}")),
    ]
}

fn create_ad(sam: &str) -> tenure_core::Operation {
    let a = ad_person(sam);
    let refs: Vec<(&str, &str)> = a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    create(sam, &refs)
}

/// Whether `user` can bind with `password` (over LDAPS).
async fn can_bind(user: &str, password: &str) -> bool {
    let settings = ldap3::LdapConnSettings::new().set_no_tls_verify(true);
    let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(settings, LDAPS_URL)
        .await
        .unwrap();
    ldap3::drive!(conn);
    let r = ldap.simple_bind(user, password).await.unwrap();
    let _ = ldap.unbind().await;
    r.rc == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_lifecycle_with_account_control_password_and_groups() {
    let test = "ad_lifecycle";
    let Some(mut ad) = Ad::start(test, &["Staff", "VPN Users"]).await else {
        return;
    };
    let initial = "Init!al-Passw0rd-2026";
    let mut t = ad.settings();
    t.insert(
        "initial_password".into(),
        secret_file(ad.dir.path(), "initial", initial),
    );
    let sys = system_with(t, AD_ATTRIBUTES);
    let c = connector(&sys, ad.dir.path()).await;
    c.check().await.unwrap();
    assert_eq!(
        c.capabilities(),
        Capabilities {
            last_login: true,
            ..Capabilities::FULL
        }
    );

    all_ok(
        &c.apply(&[
            create_ad("adam"),
            add("adam", "Staff"),
            add("adam", "VPN Users"),
        ])
        .await,
    );
    let (dn, a) = ad.account("adam").await.expect("created");
    assert_eq!(dn, format!("CN=adam Person,{}", ad.people()));
    assert_eq!(a["samaccountname"], vec!["adam".to_owned()]);
    assert_eq!(a["userprincipalname"], vec![format!("adam@{REALM}")]);
    assert_eq!(a["mail"], vec![format!("adam@{REALM}")]);
    assert!(a["objectclass"].contains(&"user".to_owned()));
    assert_eq!(ad.uac("adam").await & 0x2, 0, "enabled");
    let mut member_of: Vec<String> = a["memberof"].clone();
    member_of.sort();
    assert_eq!(
        member_of,
        vec![
            format!("CN=Staff,{}", ad.groups()),
            format!("CN=VPN Users,{}", ad.groups())
        ]
    );
    // unicodePwd was set over LDAPS: the person can log on with the initial password.
    assert!(can_bind(&format!("adam@{REALM}"), initial).await);
    assert!(!can_bind(&format!("adam@{REALM}"), "wrong-Passw0rd").await);

    let read = c.read_accounts().await.unwrap();
    let acct = &read.accounts[&key("adam")];
    assert!(acct.enabled);
    assert_eq!(acct.attributes, ad_person("adam").into_iter().collect());
    assert_eq!(
        acct.entitlements,
        BTreeSet::from([ent("Staff"), ent("VPN Users")])
    );

    // Disable sets the ACCOUNTDISABLE bit and nothing else; enable clears it.
    all_ok(&c.apply(&[disable("adam")]).await);
    assert_eq!(ad.uac("adam").await, 0x202);
    assert!(!can_bind(&format!("adam@{REALM}"), initial).await);
    assert!(!c.read_accounts().await.unwrap().accounts[&key("adam")].enabled);
    all_ok(&c.apply(&[disable("adam")]).await);
    all_ok(&c.apply(&[enable("adam")]).await);
    assert_eq!(ad.uac("adam").await, 0x200);
    assert!(can_bind(&format!("adam@{REALM}"), initial).await);

    // Duplicate adds and absent removals are fine (Active Directory answers 68 and 53).
    all_ok(
        &c.apply(&[
            add("adam", "Staff"),
            remove("adam", "VPN Users"),
            remove("adam", "VPN Users"),
        ])
        .await,
    );
    let (_, a) = ad.account("adam").await.unwrap();
    assert_eq!(a["memberof"], vec![format!("CN=Staff,{}", ad.groups())]);

    // A rename keeps the memberships (Active Directory maintains member links itself).
    let fresh = connector(&sys, ad.dir.path()).await;
    all_ok(
        &fresh
            .apply(&[update(
                "adam",
                &[("cn", "Adam Smith, Jr."), ("display_name", "Adam S.")],
            )])
            .await,
    );
    let (dn, a) = ad.account("adam").await.unwrap();
    assert_eq!(dn, format!("CN=Adam Smith\\, Jr.,{}", ad.people()));
    assert_eq!(a["displayname"], vec!["Adam S.".to_owned()]);
    assert_eq!(a["memberof"], vec![format!("CN=Staff,{}", ad.groups())]);
    let read = fresh.read_accounts().await.unwrap();
    assert_eq!(
        read.accounts[&key("adam")].entitlements,
        BTreeSet::from([ent("Staff")])
    );

    // Last logon (lastLogonTimestamp) is readable.
    let logins = c.read_last_logins().await.unwrap();
    assert!(logins.contains_key(&key("adam")), "{logins:?}");

    // Replaying the create makes the entry match again (and enabled).
    all_ok(&c.apply(&[disable("adam")]).await);
    let mut t = ad.settings();
    t.insert(
        "initial_password".into(),
        secret_file(ad.dir.path(), "initial", initial),
    );
    let again = connector(&system_with(t, AD_ATTRIBUTES), ad.dir.path()).await;
    all_ok(
        &again
            .apply(&[update("adam", &[("cn", "adam Person")]), create_ad("adam")])
            .await,
    );
    let (dn, a) = ad.account("adam").await.unwrap();
    assert_eq!(dn, format!("CN=adam Person,{}", ad.people()));
    assert_eq!(a["displayname"], vec!["adam P.".to_owned()]);
    assert_eq!(ad.uac("adam").await, 0x200);

    // A random initial password (the default): the account is created enabled.
    let c2 = connector(&system_with(ad.settings(), AD_ATTRIBUTES), ad.dir.path()).await;
    all_ok(&c2.apply(&[create_ad("beth")]).await);
    assert_eq!(ad.uac("beth").await, 0x200);
    assert!(!can_bind(&format!("beth@{REALM}"), initial).await);

    // A duplicate sAMAccountName elsewhere is refused, naming the server's answer.
    let mut clash = ad_person("beth");
    clash[0].1 = "Another Beth".to_owned();
    let refs: Vec<(&str, &str)> = clash
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = c2.apply(&[create("beth", &refs)]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(
        e.to_string().contains("cn=Another Beth")
            && e.to_string().contains("68 (entryAlreadyExists)"),
        "{e}"
    );

    all_ok(
        &c.apply(&[remove("adam", "Staff"), delete("adam"), delete("beth")])
            .await,
    );
    assert!(ad.account("adam").await.is_none());
    assert!(ad.account("beth").await.is_none());
    all_ok(&c.apply(&[delete("adam")]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_incremental_reads_by_usn_changed() {
    let test = "ad_incremental";
    let Some(ad) = Ad::start(test, &["Staff", "Finance"]).await else {
        return;
    };
    let sys = system_with(ad.settings(), AD_ATTRIBUTES);
    let c = connector(&sys, ad.dir.path()).await;
    let mut ops = Vec::new();
    for i in 0..30 {
        let k = format!("inc{i:02}");
        ops.push(create_ad(&k));
        ops.push(add(&k, "Staff"));
    }
    all_ok(&c.apply(&ops).await);
    let all = c.read_changes_since(None).await.unwrap();
    assert_eq!(all.accounts.accounts.len(), 30);
    assert_eq!(all.accounts, c.read_accounts().await.unwrap());
    assert_eq!(all.entitlements[&ent("Staff")].len(), 30);
    let marker = all.marker.clone();
    assert!(marker.as_str().parse::<u64>().unwrap() > 0);
    let quiet = c.read_changes_since(Some(&marker)).await.unwrap();
    assert!(
        quiet.accounts.accounts.is_empty() && quiet.entitlements.is_empty(),
        "{quiet:?}"
    );

    all_ok(
        &c.apply(&[
            update("inc03", &[("display_name", "Three")]),
            disable("inc07"),
            add("inc11", "Finance"),
            remove("inc12", "Staff"),
        ])
        .await,
    );
    let changes = c.read_changes_since(Some(&marker)).await.unwrap();
    let keys: Vec<&str> = changes
        .accounts
        .accounts
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, vec!["inc03", "inc07"]);
    assert_eq!(
        changes.accounts.accounts[&key("inc03")].attributes["display_name"],
        "Three"
    );
    assert!(!changes.accounts.accounts[&key("inc07")].enabled);
    let groups: Vec<&str> = changes.entitlements.keys().map(|g| g.as_str()).collect();
    assert_eq!(groups, vec!["Finance", "Staff"]);
    assert_eq!(
        changes.entitlements[&ent("Finance")],
        BTreeSet::from([key("inc11")])
    );
    assert_eq!(changes.entitlements[&ent("Staff")].len(), 29);
    assert!(!changes.entitlements[&ent("Staff")].contains(&key("inc12")));
    let m2 = changes.marker.as_str().parse::<u64>().unwrap();
    assert!(m2 > marker.as_str().parse::<u64>().unwrap());
    let quiet = c.read_changes_since(Some(&changes.marker)).await.unwrap();
    assert!(quiet.accounts.accounts.is_empty() && quiet.entitlements.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hostile_names_and_filters() {
    let test = "ad_hostile";
    let Some(mut ad) = Ad::start(test, &["Team, #1 +ops"]).await else {
        return;
    };
    let sys = system_with(ad.settings(), AD_ATTRIBUTES);
    let c = connector(&sys, ad.dir.path()).await;
    // sAMAccountName may not hold , + = * ( ) \ " < > ; but a cn may.
    let names = [
        ("h1", "Smith, John"),
        ("h2", "#1 +admin=x"),
        ("h3", "back\\slash \"q\" <a>;"),
        ("h4", "Zoë Ærø 名前"),
        ("h5", "*)(sAMAccountName=*"),
    ];
    let mut ops = Vec::new();
    for (sam, cn) in names {
        ops.push(create(
            sam,
            &[("cn", cn), ("sn", "H"), ("upn", &format!("{sam}@{REALM}"))],
        ));
        ops.push(add(sam, "Team, #1 +ops"));
    }
    all_ok(&c.apply(&ops).await);
    let read = c.read_accounts().await.unwrap();
    assert_eq!(read.accounts.len(), names.len());
    for (sam, cn) in names {
        let a = &read.accounts[&key(sam)];
        assert_eq!(a.attributes["cn"], cn, "{sam}");
        assert_eq!(
            a.entitlements,
            BTreeSet::from([ent("Team, #1 +ops")]),
            "{sam}"
        );
        let (dn, _) = ad.account(sam).await.unwrap();
        assert!(dn.ends_with(&ad.people()), "{dn}");
    }
    // Renames to hostile names, by a connector that has to search.
    let fresh = connector(&sys, ad.dir.path()).await;
    all_ok(
        &fresh
            .apply(&[
                update("h1", &[("cn", "Doe; Jane <x>")]),
                disable("h2"),
                remove("h3", "Team, #1 +ops"),
            ])
            .await,
    );
    let read = fresh.read_accounts().await.unwrap();
    assert_eq!(read.accounts[&key("h1")].attributes["cn"], "Doe; Jane <x>");
    assert_eq!(read.accounts[&key("h1")].entitlements.len(), 1);
    assert!(!read.accounts[&key("h2")].enabled);
    assert!(read.accounts[&key("h3")].entitlements.is_empty());
    // Keys that are filter syntax match nothing else.
    for k in ["*", "h*", "*)(sAMAccountName=*"] {
        let r = fresh.apply(&[disable(k)]).await;
        assert!(r[0].is_err(), "{k}");
        all_ok(&fresh.apply(&[delete(k)]).await);
    }
    let read = fresh.read_accounts().await.unwrap();
    assert_eq!(read.accounts.len(), names.len());
    assert_eq!(read.accounts.values().filter(|a| !a.enabled).count(), 1);
    let ops: Vec<_> = names.iter().map(|(sam, _)| delete(sam)).collect();
    all_ok(&fresh.apply(&ops).await);
    assert!(fresh.read_accounts().await.unwrap().accounts.is_empty());
}
