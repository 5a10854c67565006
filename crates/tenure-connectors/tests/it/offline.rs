//! Tests that need no database server: settings validation, the registry,
//! unreachable servers, secret references.

use crate::support::*;
use std::path::Path;
use tenure_connectors::{Connector, ConnectorError};
use tenure_core::config::{Config, SystemConfig};

fn settings(url: &str) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("url".into(), url.into());
    t.insert("accounts_table".into(), "users".into());
    t.insert("key_column".into(), "username".into());
    let mut cols = toml::Table::new();
    cols.insert("display_name".into(), "full_name".into());
    cols.insert("employee_number".into(), "employee_no".into());
    t.insert("attribute_columns".into(), cols.into());
    t
}

fn secret_ref(kind: &str, value: &str) -> toml::Value {
    let mut r = toml::Table::new();
    r.insert(kind.into(), value.into());
    r.into()
}

fn errors(system: &SystemConfig) -> Vec<String> {
    tenure_connectors::validate(system).unwrap_err()
}

#[test]
fn good_settings_validate() {
    for url in [
        "sqlite://apps/crm.db",
        "sqlite:/var/lib/crm.db",
        "postgres://app@db.example:5432/crm?sslmode=require",
        "mysql://root@127.0.0.1:3306/crm",
        "mariadb://app:@db/crm",
    ] {
        tenure_connectors::validate(&system_config(settings(url))).unwrap();
    }
    let mut t = settings("x");
    t.insert("url".into(), secret_ref("env", "CRM_DATABASE_URL"));
    tenure_connectors::validate(&system_config(t.clone())).unwrap();
    t.insert("url".into(), secret_ref("file", "secrets/crm-url"));
    t.insert("enabled_column".into(), "active".into());
    t.insert("memberships_table".into(), "app.user_groups".into());
    t.insert("membership_account_column".into(), "username".into());
    t.insert("membership_entitlement_column".into(), "group_name".into());
    t.insert("max_connections".into(), 8.into());
    t.insert("connect_timeout_seconds".into(), 5.into());
    tenure_connectors::validate(&system_config(t)).unwrap();
}

#[test]
fn inline_password_is_rejected_without_repeating_it() {
    for url in [
        "postgres://app:hunter2@db.example/crm",
        "postgresql://app:hunter2@db.example:5432/crm",
        "mysql://root:hunter2@127.0.0.1/crm",
        "postgres://app@db.example/crm?password=hunter2",
    ] {
        let errs = errors(&system_config(settings(url)));
        assert_eq!(errs.len(), 1, "{errs:?}");
        let msg = &errs[0];
        assert!(msg.starts_with("settings.url"), "{msg}");
        assert!(msg.contains("env =") && msg.contains("file ="), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}

#[test]
fn every_problem_is_reported_naming_its_key() {
    let mut t = settings("oracle://db/crm");
    t.insert("accounts_table".into(), "users; DROP TABLE x".into());
    t.insert("key_column".into(), "user name".into());
    t.insert("enabled_column".into(), "1active".into());
    let mut cols = toml::Table::new();
    cols.insert("display_name".into(), "full-name".into());
    cols.insert("email".into(), "username".into());
    t.insert("attribute_columns".into(), cols.into());
    t.insert("membership_account_column".into(), "username".into());
    t.insert("max_connections".into(), 0.into());
    t.insert("connect_timeout_seconds".into(), (-1).into());
    let errs = errors(&system_config(t));
    let all = errs.join("\n");
    for needle in [
        "settings.url",
        "oracle",
        "settings.accounts_table",
        "settings.key_column",
        "settings.enabled_column",
        "settings.attribute_columns.display_name",
        "settings.membership_account_column",
        "settings.max_connections",
        "settings.connect_timeout_seconds",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
    assert!(errs.len() >= 8, "{all}");
}

#[test]
fn column_collisions_are_rejected() {
    let mut t = settings("sqlite://a.db");
    t.insert("enabled_column".into(), "active".into());
    let mut cols = toml::Table::new();
    cols.insert("email".into(), "username".into());
    cols.insert("display_name".into(), "active".into());
    cols.insert("department".into(), "employee_no".into());
    t.insert("attribute_columns".into(), cols.into());
    let all = errors(&system_config(t)).join("\n");
    assert!(
        all.contains("\"email\"") && all.contains("key_column"),
        "{all}"
    );
    assert!(
        all.contains("\"display_name\"") && all.contains("enabled_column"),
        "{all}"
    );
    assert!(!all.contains("department"), "{all}");
}

#[test]
fn attribute_without_a_usable_column_is_reported() {
    let text = r#"
[[system]]
id = "crm"
kind = "sql"
[system.account]
key = "identity.username"
[system.account.attributes]
"given-name" = "identity.first_name"
email = "identity.email"
[system.settings]
url = "sqlite://crm.db"
accounts_table = "users"
key_column = "username"
"#;
    let cfg = Config::parse(vec![("crm.toml".into(), text.into())]).unwrap();
    let errs = tenure_connectors::validate(&cfg.systems[0].item).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("given-name"), "{}", errs[0]);
    assert!(
        errs[0].contains("settings.attribute_columns"),
        "{}",
        errs[0]
    );
}

#[test]
fn url_shapes_and_unknown_keys() {
    let cases: Vec<(toml::Value, &str)> = vec![
        (42.into(), "settings.url"),
        (
            {
                let mut r = toml::Table::new();
                r.insert("env".into(), "A".into());
                r.insert("file".into(), "b".into());
                r.into()
            },
            "not both",
        ),
        (secret_ref("envv", "A"), "envv"),
        (secret_ref("env", " "), "settings.url"),
        ("not a url".into(), "settings.url"),
    ];
    for (url, needle) in cases {
        let mut t = settings("x");
        t.insert("url".into(), url);
        let all = errors(&system_config(t)).join("\n");
        assert!(all.contains(needle), "{needle}: {all}");
    }
    let mut t = settings("sqlite://a.db");
    t.insert("passwrd".into(), "x".into());
    let all = errors(&system_config(t)).join("\n");
    assert!(all.contains("passwrd"), "{all}");

    let text =
        "[[system]]\nid = \"crm\"\nkind = \"sql\"\n[system.account]\nkey = \"identity.id\"\n";
    let cfg = Config::parse(vec![("crm.toml".into(), text.into())]).unwrap();
    let all = tenure_connectors::validate(&cfg.systems[0].item)
        .unwrap_err()
        .join("\n");
    assert!(all.contains("settings") && all.contains("url"), "{all}");
}

#[tokio::test]
async fn unknown_kind_is_named() {
    let system = system_config_kind("mainframe", settings("sqlite://a.db"));
    let errs = tenure_connectors::validate(&system).unwrap_err();
    assert_eq!(
        errs,
        vec![format!(
            "kind: unknown connector kind \"mainframe\" (known: {})",
            tenure_connectors::KNOWN_KINDS.join(", ")
        )]
    );
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = tenure_connectors::build(&system, dir.path()).await else {
        panic!("mainframe is not a known kind");
    };
    assert!(matches!(e, ConnectorError::UnknownKind { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "system crm: unknown connector kind \"mainframe\" (known: {})",
            tenure_connectors::KNOWN_KINDS.join(", ")
        )
    );
    assert!(!e.is_transient());
}

#[tokio::test]
async fn missing_environment_variable_is_named() {
    let mut t = settings("x");
    t.insert(
        "url".into(),
        secret_ref("env", "TENURE_IT_SURELY_UNSET_VARIABLE_5F2C"),
    );
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = tenure_connectors::build(&system_config(t), dir.path()).await else {
        panic!("the variable is unset");
    };
    assert!(matches!(e, ConnectorError::Secret { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("TENURE_IT_SURELY_UNSET_VARIABLE_5F2C"),
        "{e}"
    );
}

#[tokio::test]
async fn bad_url_from_a_secret_does_not_leak_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("url"), "oracle://u:topsecret@h/db\n").unwrap();
    let mut t = settings("x");
    t.insert("url".into(), secret_ref("file", "url"));
    let Err(e) = tenure_connectors::build(&system_config(t), dir.path()).await else {
        panic!("oracle is not supported");
    };
    let msg = format!("{e} {e:?}");
    assert!(msg.contains("oracle"), "{msg}");
    assert!(!msg.contains("topsecret"), "{msg}");
}

fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn connection_refused_is_transient_names_the_system_and_hides_the_password() {
    for scheme in ["postgres", "mysql"] {
        let port = unused_port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("url"),
            format!("{scheme}://tenure:topsecret@127.0.0.1:{port}/app\n"),
        )
        .unwrap();
        let mut t = settings("x");
        t.insert("url".into(), secret_ref("file", "url"));
        t.insert("connect_timeout_seconds".into(), 1.into());
        t.insert("enabled_column".into(), "active".into());
        let system = system_config(t);
        let concrete = tenure_connectors::sql::SqlConnector::new(&system, dir.path())
            .await
            .unwrap();
        let debug = format!("{concrete:?}");
        assert!(
            !debug.contains("topsecret") && debug.contains("***"),
            "{debug}"
        );
        let c: Box<dyn Connector> = Box::new(concrete);

        let e = c.check().await.unwrap_err();
        let msg = format!("{e} {e:?}");
        assert!(matches!(e, ConnectorError::Connect { .. }), "{msg}");
        assert!(e.is_transient(), "{msg}");
        assert!(e.to_string().starts_with("system crm:"), "{msg}");
        assert!(!msg.contains("topsecret"), "{msg}");
        assert_eq!(e.system().as_str(), "crm");

        let e = c.read_accounts().await.unwrap_err();
        let msg = format!("{e} {e:?}");
        assert!(e.is_transient(), "{msg}");
        assert!(e.to_string().contains("crm"), "{msg}");
        assert!(!msg.contains("topsecret"), "{msg}");

        let results = c.apply(&[create_full("a"), disable("a")]).await;
        assert_eq!(results.len(), 2);
        for r in results {
            let e = r.unwrap_err();
            let msg = format!("{e} {e:?}");
            assert!(e.is_transient(), "{msg}");
            assert!(e.to_string().contains("crm"), "{msg}");
            assert!(!msg.contains("topsecret"), "{msg}");
        }
    }
}

#[tokio::test]
async fn unopenable_sqlite_file_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let c = tenure_connectors::build(
        &system_config(settings("sqlite://no/such/dir/app.db")),
        dir.path(),
    )
    .await
    .unwrap();
    let e = c.check().await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains("crm"), "{e}");
}

#[tokio::test]
async fn sqlite_file_is_created_relative_to_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = settings("sqlite://apps.db");
    t.insert("enabled_column".into(), "active".into());
    let system = system_config(t);
    tenure_connectors::sql::create_demo_schema(&system, dir.path())
        .await
        .unwrap();
    assert!(dir.path().join("apps.db").is_file());
    let c = tenure_connectors::build(&system, dir.path()).await.unwrap();
    c.check().await.unwrap();
    all_ok(&c.apply(&[create_full("p")]).await);
    assert_eq!(c.read_accounts().await.unwrap().accounts.len(), 1);
}

const CHILD_URL: &str = "TENURE_IT_CHILD_URL";
const CHILD_DIR: &str = "TENURE_IT_CHILD_DIR";

/// `url = { env = "…" }`. Tests cannot set environment variables (that is
/// `unsafe`, and unsafe code is forbidden), so the test starts its own binary
/// again, running only itself, with the variable set.
pub async fn secret_env_url(backend: Backend, test_path: &'static str) {
    if let (Ok(_), Ok(dir)) = (std::env::var(CHILD_URL), std::env::var(CHILD_DIR)) {
        let mut t = settings("x");
        t.insert("url".into(), secret_ref("env", CHILD_URL));
        let system = system_config(t);
        let c = tenure_connectors::build(&system, Path::new(&dir))
            .await
            .unwrap();
        c.check().await.unwrap();
        all_ok(&c.apply(&[create_full("envy")]).await);
        assert_eq!(c.read_accounts().await.unwrap().accounts.len(), 1);
        return;
    }
    run(backend, "secret_env_url", move |db| async move {
        db.app_schema().await;
        let out = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([test_path, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_URL, &db.url)
            .env(CHILD_DIR, db.dir.path())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
        let rows = db.users().await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][0].as_deref(), Some("envy"));
        assert_eq!(rows[0][5].as_deref(), Some("1"));
    })
    .await;
}
