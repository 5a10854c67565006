//! `tenure check`: every problem in the configuration is reported at once, at
//! its file and line, with a message that names it.

use crate::common::*;
use tenure_core::config::{Config, ConfigError, ConfigErrors};
use tenure_core::plan::OrphanPolicy;
use tenure_core::policy::Policy;

/// The one problem reported for `file` (added to the valid configuration).
fn only_problem(name: &str, text: &str) -> ConfigError {
    let errs = problems(files_with(&[(name, text)]));
    assert_eq!(errs.len(), 1, "exactly one problem expected: {errs:#?}");
    errs.into_iter().next().unwrap()
}

fn assert_at(e: &ConfigError, file: &str, line: usize, words: &[&str]) {
    assert_eq!(
        (e.location.file.as_str(), e.location.line),
        (file, line),
        "wrong place for {e}"
    );
    for w in words {
        assert!(
            e.message.contains(w),
            "{:?} does not mention {w:?}",
            e.message
        );
    }
}

#[test]
fn the_test_configuration_is_valid() {
    let p = policy();
    let infos = infos(&p);
    assert_eq!(
        infos.keys().map(|s| s.as_str()).collect::<Vec<_>>(),
        ["crm", "wiki"]
    );
    assert_eq!(infos[&sys("crm")].entitlements.len(), 3);
    assert_eq!(infos[&sys("crm")].orphans, OrphanPolicy::Report);
    assert_eq!(p.system_name(&sys("crm")), Some("Sales CRM"));
    assert_eq!(
        p.correlation(&sys("wiki")).map(|c| c.identity.as_str()),
        Some("email")
    );
    assert_eq!(p.config().guard.min_count, 3);
    assert_eq!(p.fingerprint().len(), 64);
    // the same text gives the same fingerprint; a change gives another
    assert_eq!(policy().fingerprint(), p.fingerprint());
    let changed = compile(files_with(&[("x.toml", "# a comment\n")])).unwrap();
    assert_ne!(changed.fingerprint(), p.fingerprint());
}

#[test]
fn unknown_role_in_a_rule() {
    let text = r#"
[[rule]]
id = "finance"
when = 'identity.department == "Finance"'
roles = ["staff", "accountant"]
"#;
    let e = only_problem("finance.toml", text);
    assert_at(
        &e,
        "finance.toml",
        line_of(text, "accountant"),
        &["rule finance", "unknown role", "accountant"],
    );
    // the column points at the role's name in the list
    assert_eq!(
        e.location.column,
        text.lines().nth(4).unwrap().find("\"accountant").unwrap() + 1
    );
}

#[test]
fn unknown_system_and_undeclared_entitlement_in_a_role() {
    let text = r#"
[[role]]
id = "finance"
accounts = ["wiki", "mail"]
entitlements = [
  "crm:reports",
  "erp:ledger",
  "crm:admins",
  "no-colon",
]
roles = ["staff", "auditor"]
"#;
    let errs = problems(files_with(&[("finance.toml", text)]));
    assert_eq!(errs.len(), 5, "{errs:#?}");
    // sorted by place
    assert_at(
        &errs[0],
        "finance.toml",
        line_of(text, "mail"),
        &["role finance", "unknown system", "mail"],
    );
    assert_at(
        &errs[1],
        "finance.toml",
        line_of(text, "erp:ledger"),
        &["unknown system erp"],
    );
    assert_at(
        &errs[2],
        "finance.toml",
        line_of(text, "crm:admins"),
        &["entitlement \"admins\" is not declared in system crm's entitlements"],
    );
    assert_at(
        &errs[3],
        "finance.toml",
        line_of(text, "no-colon"),
        &["system:entitlement"],
    );
    assert_at(
        &errs[4],
        "finance.toml",
        line_of(text, "auditor"),
        &["unknown role", "auditor"],
    );
}

#[test]
fn role_cycles_are_found() {
    let text = r#"
[[role]]
id = "a"
roles = ["b"]

[[role]]
id = "b"
roles = ["a"]

[[role]]
id = "narcissus"
roles = ["narcissus"]

[[role]]
id = "c"
roles = ["a"]
"#;
    let errs = problems(files_with(&[("cycle.toml", text)]));
    let at_a = errs
        .iter()
        .find(|e| e.location.line == nth_line_of(text, "[[role]]", 0))
        .unwrap_or_else(|| panic!("no problem at role a: {errs:#?}"));
    assert_at(
        at_a,
        "cycle.toml",
        2,
        &["role a contains itself", "a → b → a"],
    );
    assert!(
        errs.iter().any(|e| e.message.contains("b → a → b")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.location.line == line_of(text, "narcissus") - 1
                && e.message.contains("narcissus → narcissus")),
        "{errs:#?}"
    );
    // a role that contains a cycle without being part of it is reported too
    assert!(
        errs.iter().any(|e| e.message.contains("c → a → b → a")),
        "{errs:#?}"
    );
}

#[test]
fn invalid_cel_syntax() {
    let text = r#"
[[rule]]
id = "broken"
when = 'identity.department == '
roles = ["staff"]
"#;
    let e = only_problem("broken.toml", text);
    assert_at(&e, "broken.toml", 4, &["rule broken", "invalid CEL"]);
}

#[test]
fn unknown_variable() {
    let text = r#"
[[rule]]
id = "sales-old"
when = 'user.department == "Sales"'
roles = ["staff"]
"#;
    let e = only_problem("old.toml", text);
    assert_at(
        &e,
        "old.toml",
        4,
        &["rule sales-old", "unknown variable user", "identity"],
    );
}

#[test]
fn attribute_no_source_declares() {
    let text = r#"
[[rule]]
id = "typo"
when = 'identity.departmnet == "Sales"'
roles = ["staff"]
"#;
    let e = only_problem("typo.toml", text);
    assert_at(
        &e,
        "typo.toml",
        4,
        &[
            "rule typo",
            "identity.departmnet",
            "not an attribute any source declares",
            "department",
        ],
    );
}

#[test]
fn attribute_typos_are_found_where_evaluation_would_not_reach() {
    // `identity.department == "Sales"` is false for an empty sample, so a dry
    // run never reaches the typo: the check must be on the expression itself.
    let text = r#"
[[rule]]
id = "short-circuit"
when = 'identity.department == "Sales" && identity.titel.contains("Lead")'
roles = ["staff"]

[[rule]]
id = "indexed"
when = 'identity["loaction"] == "Paris"'
roles = ["staff"]

[[system]]
id = "mail"
kind = "sql"
[system.account]
key = "identity.email"
[system.account.attributes]
phone = "identity.phone_number"
"#;
    let errs = problems(files_with(&[("typos.toml", text)]));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_at(
        &errs[0],
        "typos.toml",
        4,
        &["rule short-circuit", "identity.titel"],
    );
    assert_at(
        &errs[1],
        "typos.toml",
        9,
        &["rule indexed", "identity.loaction"],
    );
    assert_at(
        &errs[2],
        "typos.toml",
        line_of(text, "phone"),
        &["system mail attribute phone", "identity.phone_number"],
    );
}

#[test]
fn comprehensions_reserved_fields_and_every_declared_attribute_are_accepted() {
    let text = r#"
[[rule]]
id = "wiki-admins"
when = '''identity.groups.exists(g, g == "wiki-admins") &&
  [identity.department, identity.location].all(x, x != "") &&
  identity.employment_type in ["employee", "contractor"] &&
  identity.status == "active" && identity.manager != identity.id &&
  identity.start_date < "2030-01-01" && identity.end_date == "" &&
  identity.source == "hr" && identity["title"] != "" &&
  identity.groups.map(g, g.lowerAscii()).size() >= 0'''
roles = ["engineer"]
"#;
    compile(files_with(&[("groups.toml", text)])).unwrap_or_else(|e| panic!("{e}"));
    // a comprehension variable does not leak out of its macro
    let leak = r#"
[[rule]]
id = "leak"
when = 'identity.groups.exists(g, g == "x") || g == "y"'
roles = ["staff"]
"#;
    let e = only_problem("leak.toml", leak);
    assert_at(&e, "leak.toml", 4, &["unknown variable g"]);
}

#[test]
fn staged_deprovisioning_steps_out_of_order_and_a_bad_delay() {
    let text = r#"
[[deprovisioning]]
id = "vendors"
when = 'identity.employment_type == "vendor"'
mode = "staged"

[[deprovisioning.step]]
after = "7d"
action = "disable"

[[deprovisioning.step]]
after = "1d"
action = "remove_memberships"

[[deprovisioning.step]]
after = "3w"
action = "delete"

[[deprovisioning]]
id = "empty"
when = "false"
mode = "staged"

[[deprovisioning]]
id = "hasty"
when = "false"
mode = "immediate"

[[deprovisioning.step]]
after = "0d"
action = "delete"
"#;
    let errs = problems(files_with(&[("vendors.toml", text)]));
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_at(
        &errs[0],
        "vendors.toml",
        line_of(text, "\"1d\""),
        &["deprovisioning vendors", "in order"],
    );
    assert_at(
        &errs[1],
        "vendors.toml",
        line_of(text, "\"3w\""),
        &["deprovisioning vendors", "\"3w\"", "d, h, m or s"],
    );
    assert_at(
        &errs[2],
        "vendors.toml",
        line_of(text, "id = \"empty\"") - 1,
        &["deprovisioning empty", "at least one"],
    );
    assert_at(
        &errs[3],
        "vendors.toml",
        line_of(text, "id = \"hasty\"") - 1,
        &["deprovisioning hasty", "immediate", "no steps"],
    );
}

#[test]
fn duplicate_ids_across_files_point_to_the_first() {
    let text = r#"
[[role]]
id = "staff"
accounts = ["crm"]

[[rule]]
id = "sales"
when = "false"
roles = ["staff"]

[[system]]
id = "wiki"
kind = "sql"
[system.account]
key = "identity.id"
"#;
    let errs = problems(files_with(&[("zz-more.toml", text)]));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let first_role = format!("roles.toml:{}:1", nth_line_of(ROLES, "[[role]]", 0));
    let first_rule = format!("rules.toml:{}:1", line_of(RULES, "id = \"sales\"") - 1);
    let first_system = format!("systems.toml:{}:1", line_of(SYSTEMS, "id = \"wiki\"") - 1);
    assert_at(
        &errs[0],
        "zz-more.toml",
        2,
        &["role \"staff\"", "already defined at", &first_role],
    );
    assert_at(
        &errs[1],
        "zz-more.toml",
        6,
        &["rule \"sales\"", "already defined at", &first_rule],
    );
    assert_at(
        &errs[2],
        "zz-more.toml",
        11,
        &["system \"wiki\"", "already defined at", &first_system],
    );
}

#[test]
fn reserved_and_ill_formed_attribute_names_in_a_source() {
    let text = r#"
[[source]]
id = "contractors"
format = "jsonl"
required = ["cost_center"]
default_employment_type = "freelancer"

[source.columns]
id = "id"

[source.attributes]
status = "state"
"e-mail" = "mail"
"#;
    let errs = problems(files_with(&[("contractors.toml", text)]));
    assert_eq!(errs.len(), 4, "{errs:#?}");
    for e in &errs {
        assert_at(e, "contractors.toml", 2, &["source contractors"]);
    }
    let all: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert!(
        all.iter().any(|m| m.contains("\"status\" is reserved")),
        "{all:#?}"
    );
    assert!(
        all.iter().any(|m| m.contains("\"e-mail\" must be letters")),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|m| m.contains("\"cost_center\" is not in [source.attributes]")),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|m| m.contains("unknown employment type \"freelancer\"")),
        "{all:#?}"
    );
}

#[test]
fn settings_problems_are_reported_at_the_settings() {
    let config = Config::parse(files()).unwrap();
    let check = |s: &tenure_core::config::SystemConfig| -> Vec<String> {
        match s.id.as_str() {
            "crm" => {
                let settings = s
                    .settings
                    .as_ref()
                    .map(|t| t.get_ref().clone())
                    .unwrap_or_default();
                assert_eq!(
                    settings.get("table").and_then(|v| v.as_str()),
                    Some("users")
                );
                vec![
                    "unknown setting \"tabel\"".to_owned(),
                    "url must be postgres://".to_owned(),
                ]
            }
            // a system without [system.settings]: reported at the system
            "wiki" => vec!["settings are required for kind \"sql\"".to_owned()],
            _ => vec![],
        }
    };
    let Err(ConfigErrors(errs)) = Policy::compile(config, &check) else {
        panic!("must be rejected")
    };
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let settings_line = line_of(SYSTEMS, "[system.settings]");
    assert_at(
        &errs[0],
        "systems.toml",
        settings_line,
        &["system crm", "tabel"],
    );
    assert_at(
        &errs[1],
        "systems.toml",
        settings_line,
        &["system crm", "postgres"],
    );
    let wiki_line = line_of(SYSTEMS, "id = \"wiki\"") - 1;
    assert_at(
        &errs[2],
        "systems.toml",
        wiki_line,
        &["system wiki", "required"],
    );
}

#[test]
fn correlation_must_name_declared_attributes() {
    let text = r#"
[[system]]
id = "mail"
kind = "sql"
[system.account]
key = "identity.id"
[system.correlation]
account = "mail"
identity = "email_address"
"#;
    let errs = problems(files_with(&[("mail.toml", text)]));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs.iter()
            .all(|e| e.location.file == "mail.toml" && e.location.line == 2)
    );
    assert!(
        errs.iter()
            .any(|e| e.message.contains("\"email_address\" is not declared"))
    );
    assert!(errs.iter().any(|e| {
        e.message
            .contains("\"mail\" is not a mapped account attribute")
    }));
}

#[test]
fn every_problem_is_reported_at_once() {
    let rules = r#"
[[rule]]
id = "finance"
when = 'identity.department == "Finance"'
roles = ["accountant"]

[[rule]]
id = "broken"
when = 'identity.department =='
roles = ["staff"]

[[rule]]
id = "typo"
when = 'identity.departmnet == "Sales"'
roles = ["staff"]
"#;
    let roles = r#"
[[role]]
id = "a"
roles = ["b"]

[[role]]
id = "b"
roles = ["a"]
entitlements = ["crm:admins"]
"#;
    let depro = r#"
[[deprovisioning]]
id = "vendors"
when = 'user.type == "vendor"'
mode = "staged"
[[deprovisioning.step]]
after = "3w"
action = "delete"
"#;
    let errs = problems(files_with(&[
        ("a-rules.toml", rules),
        ("b-roles.toml", roles),
        ("c-depro.toml", depro),
    ]));
    let places: Vec<(String, usize)> = errs
        .iter()
        .map(|e| (e.location.file.clone(), e.location.line))
        .collect();
    let expect = [
        ("a-rules.toml", line_of(rules, "accountant")), // unknown role
        ("a-rules.toml", line_of(rules, "department =='")), // invalid CEL
        ("a-rules.toml", line_of(rules, "departmnet")), // undeclared attribute
        ("b-roles.toml", 2),                            // cycle a → b → a
        ("b-roles.toml", 6),                            // cycle b → a → b
        ("b-roles.toml", line_of(roles, "crm:admins")), // undeclared entitlement
        ("c-depro.toml", line_of(depro, "user.type")),  // unknown variable
        ("c-depro.toml", line_of(depro, "3w")),         // bad delay
    ];
    for (file, line) in expect {
        assert!(
            places.contains(&(file.to_owned(), line)),
            "no problem reported at {file}:{line}; got {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expect.len(), "{}", ConfigErrors(errs.clone()));
    // sorted and rendered one per line
    let mut sorted = errs.clone();
    sorted.sort();
    assert_eq!(sorted, errs);
    let text = ConfigErrors(errs).to_string();
    assert!(
        text.starts_with("the configuration has 8 problems:\n"),
        "{text}"
    );
    // one line per problem (a CEL syntax error adds its source and a caret)
    assert_eq!(
        text.lines().filter(|l| l.starts_with("  ")).count(),
        8,
        "{text}"
    );
    assert!(text.contains("| identity.department ==\n"), "{text}");
}

#[test]
fn syntax_errors_stop_before_compilation_and_name_every_file() {
    let errs = match Config::parse(files_with(&[
        ("bad1.toml", "[[rule]]\nid = \"x\"\nwhen = \n"),
        (
            "bad2.toml",
            "\n\n[[system]]\nid = \"s\"\nkind = \"sql\"\ncolour = 1\n[system.account]\nkey = \"identity.id\"\n",
        ),
        ("bad3.toml", "[guard]\nmin_count = 1\n"),
        ("bad4.toml", "[guard]\nmin_count = 2\n"),
    ])) {
        Ok(_) => panic!("must be rejected"),
        Err(ConfigErrors(e)) => e,
    };
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_eq!(
        (errs[0].location.file.as_str(), errs[0].location.line),
        ("bad1.toml", 3)
    );
    assert_eq!(errs[1].location.file, "bad2.toml");
    assert!(errs[1].message.contains("colour"), "{}", errs[1].message);
    // the test configuration's sources.toml sets [guard] first
    assert_eq!(
        (errs[2].location.file.as_str(), errs[2].location.line),
        ("bad3.toml", 1)
    );
    assert!(
        errs[2].message.contains("already set at sources.toml:2:1"),
        "{}",
        errs[2].message
    );
    assert_eq!(errs[3].location.file, "bad4.toml");
}

/// Notification settings are checked with the rest, each problem at its
/// file and line; a notification table set twice names the first.
#[test]
fn notification_problems_are_located() {
    let text = r#"
[notifications]
addresses = { it = "it@example.com" }

[[notifications.email]]
events = ["leaver"]
to = ["person", "hr"]

[[webhook]]
id = "siem"
url = "http://siem.example.com/hook"
secret = { env = "SIEM_SECRET" }
"#;
    let errs = problems(files_with(&[("notify.toml", text)]));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_at(
        &errs[1],
        "notify.toml",
        5,
        &["\"hr\"", "[notifications.addresses]"],
    );
    assert_at(&errs[0], "notify.toml", 2, &["[smtp]"]);
    assert_at(&errs[2], "notify.toml", 11, &["webhook siem", "https://"]);

    let e = only_problem(
        "events.toml",
        "[[webhook]]\nid = \"a\"\nurl = \"https://a.example\"\nsecret = { env = \"A\" }\nevents = [\"leavers\"]\n",
    );
    assert_at(&e, "events.toml", 5, &["leavers"]);

    let twice = files_with(&[
        ("a.toml", "[smtp]\nhost = \"a\"\nfrom = \"t@example.com\"\n"),
        (
            "b.toml",
            "\n[smtp]\nhost = \"b\"\nfrom = \"t@example.com\"\n",
        ),
    ]);
    let Err(ConfigErrors(errs)) = Config::parse(twice) else {
        panic!("two [smtp] tables must be refused")
    };
    assert_at(
        &errs[0],
        "b.toml",
        2,
        &["[smtp] is already set at a.toml:1"],
    );
}
