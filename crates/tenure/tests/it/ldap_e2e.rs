//! End to end through the command line against a real OpenLDAP `slapd`:
//! import an HR export, plan, apply, and find the people and their groups
//! in the directory; then a leaver, whose entry is disabled; and after the
//! reconciliation nothing is left to do.
//!
//! The directory is checked with OpenLDAP's own `ldapsearch`, not with
//! Tenure's connector.

#[path = "../../../tenure-connectors/tests/it/ldap_slapd.rs"]
mod ldap_slapd;

use crate::support::BIN;
use ldap_slapd::{ADMIN_DN, ADMIN_PW, GROUPS, PEOPLE, Slapd, SlapdOptions};
use std::path::Path;
use std::process::Command;

const PLACEHOLDER: &str = "cn=nobody,dc=example,dc=com";

fn tenure(config: &Path, database: &str, now: &str, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("--database")
        .arg(database)
        .arg("--now")
        .arg(now)
        .args(args)
        .env("TENURE_ACTOR", "cli:tester")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[track_caller]
fn ok(r: (i32, String, String)) -> String {
    assert_eq!(
        r.0, 0,
        "exit code {}\n--- stdout\n{}\n--- stderr\n{}",
        r.0, r.1, r.2
    );
    r.1
}

/// `attr: value` lines of the entries matching `filter`, as (dn, lines).
fn entries(slapd: &Slapd, base: &str, filter: &str, attrs: &[&str]) -> Vec<(String, Vec<String>)> {
    let text = slapd.ldapsearch(base, filter, attrs);
    let mut out = text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let dn = lines
                .next()
                .unwrap_or_default()
                .trim_start_matches("dn: ")
                .to_owned();
            let mut rest: Vec<String> = lines.map(str::to_owned).collect();
            rest.sort();
            (dn, rest)
        })
        .collect::<Vec<_>>();
    out.sort();
    out
}

fn members(slapd: &Slapd, group: &str) -> Vec<String> {
    let mut m: Vec<String> = entries(
        slapd,
        &format!("cn={group},{GROUPS}"),
        "(objectClass=*)",
        &["member"],
    )
    .into_iter()
    .flat_map(|(_, l)| l)
    .filter_map(|l| l.strip_prefix("member: ").map(str::to_owned))
    .filter(|m| m != PLACEHOLDER)
    .collect();
    m.sort();
    m
}

#[test]
fn ldap_directory_provisioned_through_the_cli() {
    let Some(slapd) = Slapd::start(
        "ldap_directory_provisioned_through_the_cli",
        SlapdOptions::default(),
    ) else {
        return;
    };
    let mut ldif = String::new();
    for g in ["staff", "sales"] {
        ldif.push_str(&format!(
            "dn: cn={g},{GROUPS}\nobjectClass: groupOfNames\ncn: {g}\nmember: {PLACEHOLDER}\n\n"
        ));
    }
    slapd.ldapadd(&ldif);

    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("directory-password"), format!("{ADMIN_PW}\n")).unwrap();
    std::fs::write(
        config.join("tenure.toml"),
        r#"
[[source]]
id = "hr"
format = "csv"
missing = "leaver"
required = ["given_name", "family_name", "email", "department"]

[source.columns]
id = "employee_id"
end_date = "termination_date"

[source.attributes]
given_name = "first_name"
family_name = "last_name"
email = "email"
department = "department"

[[deprovisioning]]
id = "everyone"
when = "true"
mode = "staged"

[[deprovisioning.step]]
after = "0d"
action = "disable"

[[deprovisioning.step]]
after = "30d"
action = "delete"

[[role]]
id = "staff"
entitlements = ["directory:staff"]

[[role]]
id = "sales"
entitlements = ["directory:sales"]

[[rule]]
id = "everyone"
when = "true"
roles = ["staff"]

[[rule]]
id = "sales"
when = 'identity.department == "Sales"'
roles = ["sales"]
"#,
    )
    .unwrap();
    std::fs::write(
        config.join("directory.toml"),
        format!(
            r#"
[[system]]
id = "directory"
name = "Company directory"
kind = "ldap"
entitlements = ["staff", "sales"]

[system.account]
key = "identity.email.split('@')[0]"
[system.account.attributes]
cn = "identity.given_name + ' ' + identity.family_name"
sn = "identity.family_name"
email = "identity.email"
department = "identity.department"

[system.correlation]
account = "email"
identity = "email"

[system.settings]
url = "{url}"
bind_dn = "{ADMIN_DN}"
password = {{ file = "directory-password" }}
people_base = "{PEOPLE}"
groups_base = "{GROUPS}"
attributes = {{ email = "mail", department = "departmentNumber" }}
disable_method = "ppolicy"
group_placeholder_member = "{PLACEHOLDER}"
"#,
            url = slapd.url()
        ),
    )
    .unwrap();
    let hr1 = tmp.path().join("hr-1.csv");
    std::fs::write(
        &hr1,
        "employee_id,first_name,last_name,email,department,termination_date\n\
         E1,Ada,Lovelace,ada@example.com,Sales,\n\
         E2,Grace,Hopper,grace@example.com,Engineering,\n\
         E3,Zoë,O'Neil-Smith,zoe@example.com,Sales,\n",
    )
    .unwrap();
    let database = format!("sqlite:{}", tmp.path().join("tenure.db").display());
    let t = |now: &str, args: &[&str]| tenure(&config, &database, now, args);

    ok(t("2026-11-01", &["check"]));
    ok(t("2026-11-01", &["import", hr1.to_str().unwrap()]));
    let plan = ok(t("2026-11-01", &["plan"]));
    for must in ["ada", "grace", "zoe", "staff", "sales"] {
        assert!(plan.contains(must), "plan lacks {must:?}:\n{plan}");
    }
    let applied = ok(t("2026-11-01", &["apply", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&applied).unwrap();
    assert_eq!(v["executed"]["failed"].as_u64(), Some(0), "{v}");
    assert_eq!(v["executed"]["done"].as_u64(), Some(3 + 3 + 2), "{v}");

    let people = entries(
        &slapd,
        PEOPLE,
        "(uid=*)",
        &[
            "uid",
            "cn",
            "sn",
            "mail",
            "departmentNumber",
            "pwdAccountLockedTime",
        ],
    );
    let dns: Vec<&str> = people.iter().map(|(dn, _)| dn.as_str()).collect();
    assert_eq!(
        dns,
        vec![
            format!("uid=ada,{PEOPLE}"),
            format!("uid=grace,{PEOPLE}"),
            format!("uid=zoe,{PEOPLE}")
        ],
        "{people:?}"
    );
    assert_eq!(
        people[0].1,
        vec![
            "cn: Ada Lovelace",
            "departmentNumber: Sales",
            "mail: ada@example.com",
            "sn: Lovelace",
            "uid: ada"
        ]
    );
    // Non-ASCII values come back base64-encoded from ldapsearch.
    assert!(
        people[2].1.iter().any(|l| l.starts_with("cn:: ")),
        "{:?}",
        people[2].1
    );
    assert_eq!(
        members(&slapd, "staff"),
        vec![
            format!("uid=ada,{PEOPLE}"),
            format!("uid=grace,{PEOPLE}"),
            format!("uid=zoe,{PEOPLE}")
        ]
    );
    assert_eq!(
        members(&slapd, "sales"),
        vec![format!("uid=ada,{PEOPLE}"), format!("uid=zoe,{PEOPLE}")]
    );
    let pending = ok(t("2026-11-01", &["plan", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&pending).unwrap();
    assert_eq!(v["operations"].as_array().map(Vec::len), Some(0), "{v}");

    // Grace leaves (missing from the next full export); Ada moves to Engineering.
    let hr2 = tmp.path().join("hr-2.csv");
    std::fs::write(
        &hr2,
        "employee_id,first_name,last_name,email,department,termination_date\n\
         E1,Ada,Lovelace,ada@example.com,Engineering,\n\
         E3,Zoë,O'Neil-Smith,zoe@example.com,Sales,\n",
    )
    .unwrap();
    ok(t("2026-11-24", &["import", hr2.to_str().unwrap()]));
    let applied = ok(t("2026-11-24", &["apply", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&applied).unwrap();
    assert_eq!(v["executed"]["failed"].as_u64(), Some(0), "{v}");
    let grace = entries(
        &slapd,
        &format!("uid=grace,{PEOPLE}"),
        "(objectClass=*)",
        &["pwdAccountLockedTime", "mail"],
    );
    assert_eq!(
        grace[0].1,
        vec![
            "mail: grace@example.com",
            "pwdAccountLockedTime: 000001010000Z"
        ]
    );
    let ada = entries(
        &slapd,
        &format!("uid=ada,{PEOPLE}"),
        "(objectClass=*)",
        &["departmentNumber", "pwdAccountLockedTime"],
    );
    assert_eq!(ada[0].1, vec!["departmentNumber: Engineering"]);
    assert_eq!(members(&slapd, "sales"), vec![format!("uid=zoe,{PEOPLE}")]);

    // Reconciled: the next plan reads the directory back and finds nothing to do.
    let pending = ok(t("2026-11-24", &["plan", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&pending).unwrap();
    assert_eq!(v["operations"].as_array().map(Vec::len), Some(0), "{v}");
    let plan = ok(t("2026-11-24", &["plan"]));
    assert!(plan.contains("Nothing to do"), "{plan}");
    let access = ok(t("2026-11-24", &["report", "access", "--format", "csv"]));
    assert!(access.contains("directory"), "{access}");
    // Thirty days on, the leaver's entry is deleted.
    ok(t("2026-12-24T10:00:00Z", &["apply"]));
    assert!(entries(&slapd, PEOPLE, "(uid=grace)", &["uid"]).is_empty());
    assert_eq!(entries(&slapd, PEOPLE, "(uid=*)", &["uid"]).len(), 2);
}
