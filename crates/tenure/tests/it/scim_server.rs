//! `tenure serve` as a SCIM 2.0 service provider, end to end: the real
//! binary on a real socket, driven by raw HTTP, by the third-party
//! conformance suite `scim2-tester` and by the third-party client
//! `scim2-cli` (both from the venv `scripts/install-scim-test-deps` makes,
//! `TENURE_TEST_SCIM_VENV`, default `/opt/tenure-test-venv`; without it those
//! two tests print `SKIPPED …` and pass, except under `CI=true`).
//!
//! The lifecycle tests run on the example organisation with a SCIM source
//! added: what a client pushes becomes joiners, movers and leavers that
//! `tenure plan` turns into operations.

use crate::support::{Org, write};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The SCIM source added to the example organisation.
const SCIM_SOURCE: &str = r#"
[[source]]
id = "idp"
format = "scim"
deactivate = "leaver"
deactivation_window_minutes = 60

[source.columns]
id = "externalId"
employment_type = "urn:ietf:params:scim:schemas:extension:tenure:2.0:User:employmentType"
manager = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
start_date = "urn:ietf:params:scim:schemas:extension:tenure:2.0:User:startDate"
end_date = "urn:ietf:params:scim:schemas:extension:tenure:2.0:User:endDate"

[source.attributes]
given_name = "name.givenName"
family_name = "name.familyName"
email = 'emails[type eq "work"].value'
department = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
title = "title"
location = "addresses[type eq \"work\"].locality"
"#;

/// A running `tenure serve`; killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub token: String,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Server {
    /// Creates a token on `org`'s database and starts the server.
    pub fn start(org: &Org, extra: &[&str]) -> Server {
        let r = org
            .run(&[
                "token",
                "create",
                "--name",
                "idp",
                "--scope",
                "scim:read",
                "--scope",
                "scim:write",
            ])
            .ok();
        let token = r.stdout.trim().to_owned();
        assert!(token.starts_with("tnr_"), "{}", r.stdout);
        // SCIM only: the lifecycle tests plan and apply themselves.
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--no-scheduler"];
        args.extend_from_slice(extra);
        let mut child = org
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let port: u16 = base
            .trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Server {
            child,
            port,
            token,
            base,
        }
    }

    /// A request with the server's token (or `auth`, when given).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!(
            "{method} /scim/v2{path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        if let Some(ct) = content_type {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        // A server may answer (413) before reading the whole body and close.
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        let body = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let auth = format!("Bearer {}", self.token);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let ct = if bytes.is_empty() {
            None
        } else {
            Some("application/scim+json")
        };
        self.raw(method, path, Some(&auth), ct, bytes.as_bytes(), &[])
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

fn org_with_scim() -> Org {
    let org = Org::new();
    write(&org.path("config/scim.toml"), SCIM_SOURCE);
    org
}

fn user(external: &str, user_name: &str, department: &str, title: &str) -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "urn:ietf:params:scim:schemas:extension:tenure:2.0:User"
        ],
        "externalId": external,
        "userName": user_name,
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "title": title,
        "emails": [{"type": "work", "value": format!("{user_name}@acme.example"), "primary": true}],
        "addresses": [{"type": "work", "locality": "Lyon"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": department},
        "urn:ietf:params:scim:schemas:extension:tenure:2.0:User": {"employmentType": "employee", "startDate": "2026-11-02"}
    })
}

fn venv_bin(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("TENURE_TEST_SCIM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tenure-test-venv"));
    let bin = venv.join("bin").join(name);
    if bin.is_file() {
        return Some(bin);
    }
    let msg = format!(
        "SKIPPED: {name} is not installed at {} (run scripts/install-scim-test-deps, or set TENURE_TEST_SCIM_VENV)",
        bin.display()
    );
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{msg}; CI=true requires it"
    );
    eprintln!("{msg}");
    None
}

/// A configuration whose SCIM source maps no lifecycle dates: scim2-tester
/// fills every attribute with random text, which a mapped date refuses.
const CONFORMANCE_CONFIG: &str = r#"
[[source]]
id = "idp"
format = "scim"

[source.columns]
id = "userName"
manager = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"

[source.attributes]
email = 'emails[type eq "work"].value'
department = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
"#;

fn conformance_org() -> Org {
    let org = Org::new();
    for f in std::fs::read_dir(org.path("config")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    write(&org.path("config/tenure.toml"), CONFORMANCE_CONFIG);
    org
}

/// A fresh PostgreSQL database for `org` (dropped with the guard), when
/// `TENURE_TEST_POSTGRES` is set; under `CI=true` it must be.
fn on_postgres(org: &mut Org) -> Option<crate::crash::DropDatabase> {
    let Ok(base) = std::env::var("TENURE_TEST_POSTGRES") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "TENURE_TEST_POSTGRES is not set, and CI runs every variant"
        );
        eprintln!("SKIPPED: the PostgreSQL variant (TENURE_TEST_POSTGRES is not set)");
        return None;
    };
    let name = format!(
        "tenure_scim_{}_{}",
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
    let i = base
        .rfind('/')
        .expect("TENURE_TEST_POSTGRES must end in /database");
    org.database = format!("{}/{name}", &base[..i]);
    Some(crate::crash::DropDatabase { base, name })
}

#[test]
fn scim2_tester_passes_every_check() {
    conformance(&conformance_org());
}

#[test]
fn scim2_tester_passes_every_check_on_postgres() {
    let mut org = conformance_org();
    let Some(_drop) = on_postgres(&mut org) else {
        return;
    };
    conformance(&org);
}

fn conformance(org: &Org) {
    let Some(scim2) = venv_bin("scim2") else {
        return;
    };
    let server = Server::start(org, &["--rate", "0"]);
    let out = Command::new(scim2)
        .args(["--url", &server.base, "test"])
        .env(
            "SCIM_CLI_HEADERS",
            format!("Authorization: Bearer {}", server.token),
        )
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.starts_with("DEVIATION"))
        .collect();
    let passed = text.lines().filter(|l| l.starts_with("SUCCESS")).count();
    assert!(
        out.status.success() && failures.is_empty(),
        "scim2-tester failed:\n{text}"
    );
    assert!(passed >= 140, "only {passed} checks ran:\n{text}");
    eprintln!("scim2-tester: {passed} checks, all passed");
}

#[test]
fn scim2_cli_creates_queries_modifies_and_deletes() {
    let Some(scim2) = venv_bin("scim2") else {
        return;
    };
    let org = conformance_org();
    let server = Server::start(&org, &["--rate", "0"]);
    let cli = |args: &[&str]| {
        let out = Command::new(&scim2)
            .args(["--url", &server.base])
            .args(args)
            .env(
                "SCIM_CLI_HEADERS",
                format!("Authorization: Bearer {}", server.token),
            )
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "scim2 {args:?}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let created = cli(&[
        "create",
        "user",
        "--user-name",
        "linus",
        "--display-name",
        "Linus",
    ]);
    let v: Value = serde_json::from_str(&created).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let found = cli(&["query", "user", "--filter", "userName eq \"LINUS\""]);
    let v: Value = serde_json::from_str(&found).unwrap();
    assert_eq!(v["totalResults"], 1, "{found}");
    cli(&["modify", "user", &id, "replace", "displayName", "Linus T."]);
    let got = server.call("GET", &format!("/Users/{id}"), None);
    assert_eq!(got.body["displayName"], "Linus T.");
    cli(&["delete", "user", &id]);
    assert_eq!(
        server.call("GET", &format!("/Users/{id}"), None).status,
        404
    );
}

fn audit_actions(org: &Org) -> Vec<(String, String, String)> {
    org.audit()
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or("").to_owned(),
                r["action"].as_str().unwrap_or("").to_owned(),
                r["subject"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_pushed_user_is_a_joiner_then_a_mover_then_a_leaver_and_plan_shows_it() {
    let org = org_with_scim();
    org.run(&["check"]).ok();
    let server = Server::start(&org, &["--rate", "0"]);
    let a = server.call(
        "POST",
        "/Users",
        Some(user("S9001", "grace", "Sales", "Account Executive")),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.header("content-type"), Some("application/scim+json"));
    assert!(
        a.header("location")
            .is_some_and(|l| l.ends_with(a.body["id"].as_str().unwrap()))
    );
    let id = a.body["id"].as_str().unwrap().to_owned();
    let audit = audit_actions(&org);
    assert!(
        audit.contains(&(
            "token:idp".into(),
            "import.joiner".into(),
            "identity:S9001".into()
        )),
        "{audit:?}"
    );
    assert!(
        audit.contains(&(
            "token:idp".into(),
            "scim.user.created".into(),
            format!("scim:User/{id}")
        )),
        "{audit:?}"
    );
    let plan = org.run(&["--now", "2026-11-24", "plan"]).ok().stdout;
    assert!(plan.contains("S9001"), "the joiner is in the plan:\n{plan}");

    // Mover: Entra's capitalised op and a value-filter path.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Finance"},
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "grace.hopper@acme.example"}
    ]});
    let p = server.call("PATCH", &format!("/Users/{id}"), Some(patch));
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(p.body["emails"][0]["value"], "grace.hopper@acme.example");
    assert_eq!(p.body["meta"]["version"], "W/\"2\"");
    assert!(audit_actions(&org).contains(&(
        "token:idp".into(),
        "import.mover".into(),
        "identity:S9001".into()
    )));

    // Leaver: Okta deactivates with active=false and never deletes.
    let okta = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "value": {"active": false}}
    ]});
    let p = server.call("PATCH", &format!("/Users/{id}"), Some(okta));
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(p.body["active"], false);
    assert!(audit_actions(&org).contains(&(
        "token:idp".into(),
        "import.leaver".into(),
        "identity:S9001".into()
    )));
    let filtered = server.call("GET", "/Users?filter=active%20eq%20false", None);
    assert_eq!(filtered.body["totalResults"], 1, "{:?}", filtered.body);
    org.run(&["audit", "verify"]).ok();
}

#[test]
fn entra_sends_booleans_as_strings_and_capitalised_ops() {
    let org = org_with_scim();
    let server = Server::start(&org, &["--rate", "0"]);
    let mut u = user("S9002", "alan", "Engineering", "Engineer");
    u["active"] = json!("True");
    let a = server.call("POST", "/Users", Some(u));
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.body["active"], true);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let entra = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}
    ]});
    let p = server.call("PATCH", &format!("/Users/{id}"), Some(entra));
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(p.body["active"], false);
    // Only the two spellings of a boolean are read as one.
    let bad = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "Replace", "path": "active", "value": "yes"}
    ]});
    let p = server.call("PATCH", &format!("/Users/{id}"), Some(bad));
    assert_eq!(
        (p.status, p.body["scimType"].as_str()),
        (400, Some("invalidValue")),
        "{:?}",
        p.body
    );
}

#[test]
fn bad_input_gets_the_right_scim_error_and_changes_nothing() {
    let org = org_with_scim();
    let server = Server::start(&org, &["--rate", "0", "--max-body", "4096"]);
    let a = server.call(
        "POST",
        "/Users",
        Some(user("S9003", "edsger", "Sales", "Account Executive")),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {}", server.token);
    let before = server.call("GET", &format!("/Users/{id}"), None);
    let audit_before = org.audit().len();
    let check = |ans: Answer, status: u16, scim_type: Option<&str>| {
        assert_eq!(ans.status, status, "{:?}", ans.body);
        assert_eq!(
            ans.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{:?}",
            ans.body
        );
        assert_eq!(ans.body["status"], status.to_string());
        assert_eq!(ans.body["scimType"].as_str(), scim_type, "{:?}", ans.body);
        assert!(!ans.body["detail"].as_str().unwrap_or("").is_empty());
    };
    let path = format!("/Users/{id}");
    check(
        server.raw(
            "PUT",
            &path,
            Some(&auth),
            Some("application/scim+json"),
            b"{\"schemas\": [",
            &[],
        ),
        400,
        Some("invalidSyntax"),
    );
    check(
        server.raw("PUT", &path, Some(&auth), Some("text/plain"), b"{}", &[]),
        415,
        None,
    );
    let mut unknown = user("S9003", "edsger", "Sales", "Account Executive");
    unknown["favouriteColour"] = json!("green");
    check(
        server.call("PUT", &path, Some(unknown)),
        400,
        Some("invalidSyntax"),
    );
    check(
        server.call("GET", "/Users?filter=userName%20eq", None),
        400,
        Some("invalidFilter"),
    );
    check(
        server.call("GET", "/Users?filter=shoeSize%20gt%2040", None),
        400,
        Some("invalidFilter"),
    );
    let bad_path = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]});
    check(
        server.call("PATCH", &path, Some(bad_path)),
        400,
        Some("invalidPath"),
    );
    let big = vec![b' '; 10_000];
    check(
        server.raw(
            "PUT",
            &path,
            Some(&auth),
            Some("application/scim+json"),
            &big,
            &[],
        ),
        413,
        None,
    );
    let dup = server.call(
        "POST",
        "/Users",
        Some(user("S9004", "EDSGER", "Sales", "Account Executive")),
    );
    check(dup, 409, Some("uniqueness"));
    let immutable = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "id", "value": "other"}]});
    check(
        server.call("PATCH", &path, Some(immutable)),
        400,
        Some("mutability"),
    );
    let groups = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "groups", "value": [{"value": "x"}]}]});
    check(
        server.call("PATCH", &path, Some(groups)),
        400,
        Some("mutability"),
    );
    let stale = server.raw(
        "PUT",
        &path,
        Some(&auth),
        Some("application/scim+json"),
        user("S9003", "edsger2", "Sales", "Account Executive")
            .to_string()
            .as_bytes(),
        &[("If-Match", "W/\"7\"")],
    );
    check(stale, 412, None);
    check(server.call("GET", "/Me", None), 501, None);
    check(server.call("GET", "/Users/nope", None), 404, None);

    let after = server.call("GET", &format!("/Users/{id}"), None);
    assert_eq!(
        before.body, after.body,
        "a refused request changed the user"
    );
    assert_eq!(
        org.audit().len(),
        audit_before,
        "a refused request wrote the audit log"
    );
    let etag = after.header("etag").unwrap().to_owned();
    let not_modified = server.raw(
        "GET",
        &path,
        Some(&auth),
        None,
        b"",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(not_modified.status, 304);
}

#[test]
fn tokens_are_checked_scoped_revocable_and_rate_limited() {
    let org = org_with_scim();
    let server = Server::start(&org, &["--rate", "1", "--burst", "3"]);
    let none = server.raw("GET", "/Users", None, None, b"", &[]);
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer"))
    );
    assert_eq!(
        server
            .raw("GET", "/Users", Some("Bearer tnr_00"), None, b"", &[])
            .status,
        401
    );
    let reader = org
        .run(&[
            "token",
            "create",
            "--name",
            "reader",
            "--scope",
            "scim:read",
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let auth = format!("Bearer {reader}");
    assert_eq!(
        server
            .raw("GET", "/Users", Some(&auth), None, b"", &[])
            .status,
        200
    );
    let body = user("S9005", "barbara", "Sales", "Account Executive").to_string();
    let denied = server.raw(
        "POST",
        "/Users",
        Some(&auth),
        Some("application/scim+json"),
        body.as_bytes(),
        &[],
    );
    assert_eq!(denied.status, 403, "{:?}", denied.body);
    // A burst of 3 at 1 per second: a few quick requests more meet 429.
    let limited = (0..10)
        .map(|_| server.raw("GET", "/Users", Some(&auth), None, b"", &[]))
        .find(|a| a.status != 200)
        .expect("no 429 within 10 quick requests");
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    assert!(
        limited
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1))
    );
    // Another token has its own budget.
    assert_eq!(server.call("GET", "/Users", None).status, 200);
    let list = org.run(&["token", "list"]).ok().stdout;
    assert!(list.contains("reader") && !list.contains(&reader), "{list}");
    org.run(&["token", "revoke", "idp"]).ok();
    assert_eq!(server.call("GET", "/Users", None).status, 401);
}

#[test]
fn groups_reach_identities_and_bulk_resolves_bulk_ids() {
    let org = org_with_scim();
    let server = Server::start(&org, &["--rate", "0", "--bulk-max-operations", "3"]);
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "u1", "data": user("S9010", "ken", "Sales", "Account Executive")},
        {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "VPN", "members": [{"value": "bulkId:u1"}]}},
        {"method": "PATCH", "path": "/Users/bulkId:u1", "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": "Sales Manager"}]}}
    ]});
    let b = server.call("POST", "/Bulk", Some(bulk));
    assert_eq!(b.status, 200, "{:?}", b.body);
    let statuses: Vec<&str> = b.body["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["201", "201", "200"], "{:?}", b.body);
    let users = server.call("GET", "/Users?filter=groups.display%20eq%20%22vpn%22", None);
    assert_eq!(users.body["totalResults"], 1, "{:?}", users.body);
    assert_eq!(users.body["Resources"][0]["groups"][0]["display"], "VPN");
    let audit = org.audit();
    let mover = audit
        .iter()
        .find(|r| r["action"] == "import.mover" && r["subject"] == "identity:S9010")
        .unwrap();
    assert!(
        mover["detail"].as_str().unwrap().contains("groups"),
        "{mover}"
    );
    // Removing the member touches only that member.
    let gid = b.body["Operations"][1]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let uid = b.body["Operations"][0]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let rm = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]});
    let g = server.call("PATCH", &format!("/Groups/{gid}"), Some(rm));
    assert_eq!(g.status, 200, "{:?}", g.body);
    assert!(g.body.get("members").is_none(), "{:?}", g.body);
    let too_many = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "DELETE", "path": "/Users/a"}, {"method": "DELETE", "path": "/Users/b"},
        {"method": "DELETE", "path": "/Users/c"}, {"method": "DELETE", "path": "/Users/d"}]});
    let t = server.call("POST", "/Bulk", Some(too_many));
    assert_eq!(
        (t.status, t.body["scimType"].as_str()),
        (413, Some("tooMany")),
        "{:?}",
        t.body
    );
}

#[test]
fn the_guard_refuses_a_client_deactivating_too_many_people() {
    let org = org_with_scim();
    // min_count 5 (the example's guard): the sixth deactivation in the window is refused.
    let server = Server::start(&org, &["--rate", "0"]);
    let mut ids = Vec::new();
    for i in 0..8 {
        let a = server.call(
            "POST",
            "/Users",
            Some(user(
                &format!("S95{i:02}"),
                &format!("u{i}"),
                "Sales",
                "Account Executive",
            )),
        );
        assert_eq!(a.status, 201, "{:?}", a.body);
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(
            server
                .call("PATCH", &format!("/Users/{id}"), Some(off.clone()))
                .status,
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 403, 403, 403]);
    let refused = server.call("GET", &format!("/Users/{}", ids[7]), None);
    assert_ne!(
        refused.body["active"], false,
        "a refused deactivation changed nothing"
    );
    assert_eq!(refused.body["meta"]["version"], "W/\"1\"");
    assert!(
        audit_actions(&org)
            .iter()
            .any(|(a, act, _)| a == "token:idp" && act == "guard.refused")
    );
    // An operator lets two more through; the next ones pass, then it refuses again.
    let r = org
        .run(&[
            "scim",
            "allow-deactivations",
            "--count",
            "2",
            "--minutes",
            "30",
        ])
        .ok();
    assert!(r.stdout.contains("2 more"), "{}", r.stdout);
    assert!(audit_actions(&org).contains(&(
        "cli:tester".into(),
        "guard.override".into(),
        "source:idp".into()
    )));
    let after: Vec<u16> = ids[5..]
        .iter()
        .map(|id| {
            server
                .call("PATCH", &format!("/Users/{id}"), Some(off.clone()))
                .status
        })
        .collect();
    assert_eq!(after, vec![200, 200, 403]);
}

#[test]
fn cursor_pagination_pages_through_every_user_once() {
    let org = org_with_scim();
    let server = Server::start(&org, &["--rate", "0"]);
    for i in 0..5 {
        let a = server.call(
            "POST",
            "/Users",
            Some(user(
                &format!("S97{i:02}"),
                &format!("c{i}"),
                "Sales",
                "Account Executive",
            )),
        );
        assert_eq!(a.status, 201, "{:?}", a.body);
    }
    let spc = server.call("GET", "/ServiceProviderConfig", None);
    assert_eq!(spc.body["pagination"]["cursor"], true);
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = server.call("GET", &format!("/Users?count=2&cursor={cursor}"), None);
        assert_eq!(page.status, 200, "{:?}", page.body);
        assert!(
            page.body["totalResults"].as_u64() >= Some(5),
            "{:?}",
            page.body
        );
        for r in page.body["Resources"].as_array().unwrap() {
            seen.push(r["userName"].as_str().unwrap().to_owned());
        }
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
        // A user created between pages comes last, not twice and not missed.
        if seen.len() == 2 {
            let a = server.call(
                "POST",
                "/Users",
                Some(user("S9799", "late", "Sales", "Account Executive")),
            );
            assert_eq!(a.status, 201);
        }
    }
    assert_eq!(seen, vec!["c0", "c1", "c2", "c3", "c4", "late"]);
    let bad = server.call("GET", "/Users?cursor=nonsense", None);
    assert_eq!(
        (bad.status, bad.body["scimType"].as_str()),
        (400, Some("invalidCursor"))
    );
}

#[test]
fn deactivate_suspend_suspends_and_reactivation_restores() {
    let org = Org::new();
    write(
        &org.path("config/scim.toml"),
        &SCIM_SOURCE.replace(r#"deactivate = "leaver""#, r#"deactivate = "suspend""#),
    );
    let server = Server::start(&org, &["--rate", "0"]);
    let a = server.call(
        "POST",
        "/Users",
        Some(user("S9800", "susan", "Sales", "Account Executive")),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let set = |active: bool| {
        let p = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": active}]});
        assert_eq!(
            server
                .call("PATCH", &format!("/Users/{id}"), Some(p))
                .status,
            200
        );
    };
    set(false);
    let reasons = |org: &Org| -> Vec<String> {
        org.audit()
            .iter()
            .filter(|r| r["subject"] == "identity:S9800")
            .map(|r| {
                format!(
                    "{} {}",
                    r["action"].as_str().unwrap(),
                    r["reason"].as_str().unwrap()
                )
            })
            .collect()
    };
    let r = reasons(&org);
    assert!(r.iter().any(|x| x.contains("suspended by SCIM")), "{r:?}");
    assert!(!r.iter().any(|x| x.starts_with("import.leaver")), "{r:?}");
    set(true);
    let r = reasons(&org);
    assert!(r.iter().any(|x| x.contains("reactivated by SCIM")), "{r:?}");
}

#[test]
fn root_search_spans_types_and_bulk_stops_after_fail_on_errors() {
    let org = org_with_scim();
    let server = Server::start(&org, &["--rate", "0"]);
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "failOnErrors": 1, "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": user("S9900", "zed", "Sales", "Account Executive")},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": user("S9901", "ZED", "Sales", "Account Executive")},
        {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Zed team"}}
    ]});
    let b = server.call("POST", "/Bulk", Some(bulk));
    assert_eq!(b.status, 200, "{:?}", b.body);
    let ops = b.body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 2, "stopped after the first error: {:?}", b.body);
    assert_eq!(ops[1]["status"], "409");
    assert_eq!(ops[1]["response"]["scimType"], "uniqueness");
    let g = server.call("POST", "/Groups", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Zed team"})));
    assert_eq!(g.status, 201);
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "displayName sw \"zed\" or userName eq \"zed\"", "attributes": ["displayName", "userName"]});
    let s = server.call("POST", "/.search", Some(search));
    assert_eq!(s.status, 200, "{:?}", s.body);
    assert_eq!(
        s.body["totalResults"], 1,
        "userName is not a Group attribute, so only users are searched: {:?}",
        s.body
    );
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "meta.resourceType pr", "count": 10});
    let s = server.call("POST", "/.search", Some(search));
    assert_eq!(s.body["totalResults"], 2, "{:?}", s.body);
}

#[test]
fn pushes_follow_end_date_requirements_and_movers_keep_roles_through_their_grace() {
    let org = org_with_scim();
    write(
        &org.path("config/expiry.toml"),
        "[expiry]\nrequire_end_date = 'identity.employment_type == \"contractor\"'\n",
    );
    let roles = std::fs::read_to_string(org.path("config/roles.toml")).unwrap();
    write(
        &org.path("config/roles.toml"),
        &roles.replacen("id = \"sales\"\n", "id = \"sales\"\ngrace = \"14d\"\n", 1),
    );
    org.run(&["check"]).ok();
    let server = Server::start(&org, &["--rate", "0"]);

    // A contractor without an end date is refused, and nothing is stored.
    let mut contractor = user("S9101", "kay", "Engineering", "Consultant");
    contractor["urn:ietf:params:scim:schemas:extension:tenure:2.0:User"]["employmentType"] =
        json!("contractor");
    let a = server.call("POST", "/Users", Some(contractor.clone()));
    assert_eq!(a.status, 400, "{:?}", a.body);
    assert_eq!(a.body["scimType"], "invalidValue", "{:?}", a.body);
    let detail = a.body["detail"].as_str().unwrap();
    assert!(detail.contains("S9101 has no end date"), "{detail}");
    let found = server.call("GET", "/Users?filter=userName%20eq%20%22kay%22", None);
    assert_eq!(found.body["totalResults"], 0, "{:?}", found.body);
    contractor["urn:ietf:params:scim:schemas:extension:tenure:2.0:User"]["endDate"] =
        json!("2027-06-30");
    let a = server.call("POST", "/Users", Some(contractor));
    assert_eq!(a.status, 201, "{:?}", a.body);

    // A mover out of Sales keeps the sales role for 14 days, as a grant.
    let a = server.call(
        "POST",
        "/Users",
        Some(user("S9102", "ada", "Sales", "Account Executive")),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Finance"}
    ]});
    let p = server.call("PATCH", &format!("/Users/{id}"), Some(patch));
    assert_eq!(p.status, 200, "{:?}", p.body);
    let list = org.run(&["grant", "list", "S9102"]).ok().stdout;
    assert!(
        list.contains("sales") && list.contains("grace period after a move"),
        "{list}"
    );
    assert!(audit_actions(&org).contains(&(
        "token:idp".into(),
        "grant.grace".into(),
        "identity:S9102".into()
    )));
    org.run(&["audit", "verify"]).ok();
}

/// Clients write to one resource in parallel (an identity provider adding
/// members to one group from several workers, or updating one user twice at
/// once) without If-Match: every write succeeds and none is lost.
fn concurrent_writes_to_one_resource_all_succeed(org: &Org) {
    let server = Server::start(org, &["--rate", "0"]);
    let created = server.call("POST", "/Users", Some(user("S9100", "ada", "Sales", "Rep")));
    assert_eq!(created.status, 201, "{:?}", created.body);
    let ada = created.body["id"].as_str().unwrap().to_owned();
    let mut members = Vec::new();
    for i in 0..24 {
        let u = server.call(
            "POST",
            "/Users",
            Some(user(
                &format!("S92{i:02}"),
                &format!("m{i}"),
                "Sales",
                "Rep",
            )),
        );
        assert_eq!(u.status, 201, "{:?}", u.body);
        members.push(u.body["id"].as_str().unwrap().to_owned());
    }
    let group = server.call(
        "POST",
        "/Groups",
        Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "VPN"})),
    );
    assert_eq!(group.status, 201, "{:?}", group.body);
    let gid = group.body["id"].as_str().unwrap().to_owned();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let mut workers = Vec::new();
        for (w, member) in members.iter().enumerate() {
            let (server, ada, gid) = (&server, &ada, &gid);
            workers.push(s.spawn(move || {
                let mut got = Vec::new();
                let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}]});
                got.push(server.call("PATCH", &format!("/Groups/{gid}"), Some(add)).status);
                for n in 0..10 {
                    let title = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "title", "value": format!("T{w}-{n}")}]});
                    got.push(server.call("PATCH", &format!("/Users/{ada}"), Some(title)).status);
                }
                got
            }));
        }
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Each write is a version: created, then 240 changes.
    let ada_now = server.call("GET", &format!("/Users/{ada}"), None);
    assert_eq!(
        ada_now.body["meta"]["version"], "W/\"241\"",
        "{:?}",
        ada_now.body
    );
    let g = server.call("GET", &format!("/Groups/{gid}"), None);
    let mut got: Vec<&str> = g.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    got.sort_unstable();
    let mut want: Vec<&str> = members.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(got, want, "{:?}", g.body);
}

#[test]
fn concurrent_writes_to_one_resource_all_succeed_on_sqlite() {
    concurrent_writes_to_one_resource_all_succeed(&org_with_scim());
}

#[test]
fn concurrent_writes_to_one_resource_all_succeed_on_postgres() {
    let mut org = org_with_scim();
    let Some(_drop) = on_postgres(&mut org) else {
        return;
    };
    concurrent_writes_to_one_resource_all_succeed(&org);
}
