//! A private scim2-server (the python-scim reference implementation) per
//! test, on a free loopback port, and helpers to look at what it holds.
//!
//! The server comes from a Python venv: `TENURE_TEST_SCIM_VENV`, by default
//! `/opt/tenure-test-venv` (`scripts/install-scim-test-deps` makes it). When
//! it is missing a test prints `SKIPPED …` and passes, except under
//! `CI=true`, where it fails.

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tenure_connectors::scim::ScimConnector;
use tenure_core::config::{Config, SystemConfig};

pub const TOKEN: &str = "tenure-test-token";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

pub fn venv() -> PathBuf {
    std::env::var_os("TENURE_TEST_SCIM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tenure-test-venv"))
}

/// The scim2-server executable, or None (after a SKIPPED notice) when it
/// is not installed; under `CI=true` a missing server fails the test.
pub fn server_binary(test: &str) -> Option<PathBuf> {
    let bin = venv().join("bin").join("scim2-server");
    if bin.is_file() {
        return Some(bin);
    }
    let msg = format!(
        "SKIPPED {test}: scim2-server is not installed at {} (run scripts/install-scim-test-deps, or set TENURE_TEST_SCIM_VENV)",
        bin.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI=true requires it");
    }
    crate::support::notice(&msg);
    None
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A running scim2-server; killed when dropped.
pub struct ScimServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    spc: Option<Value>,
}

impl ScimServer {
    /// Starts a server (announcing `spc` as its ServiceProviderConfig when
    /// given), or None when scim2-server is not installed.
    pub async fn start(test: &str, spc: Option<Value>) -> Option<ScimServer> {
        let bin = server_binary(test)?;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = ScimServer {
            child: None,
            port: 0,
            dir,
            bin,
            spc,
        };
        s.launch().await;
        Some(s)
    }

    /// Starts the server process (again, after a stop: empty, on a new port).
    pub async fn launch(&mut self) {
        self.port = free_port();
        // Run the server's entry point through the venv's Python with SIGINT
        // turned back into KeyboardInterrupt: a process started in the
        // background by a shell without job control (as CI may be) inherits
        // SIGINT ignored, and then the server would never stop and dump.
        let python = self.bin.with_file_name("python");
        let mut cmd = Command::new(&python);
        cmd.args([
            "-c",
            "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); \
             sys.argv[0] = 'scim2-server'; \
             from scim2_server.testserver.cli import main; main()",
        ]);
        cmd.args([
            "--hostname",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--bearer-token",
            TOKEN,
            "--dump-resources",
        ])
        .arg(self.dump_path());
        if let Some(spc) = &self.spc {
            let p = self.dir.path().join("spc.json");
            std::fs::write(&p, spc.to_string()).expect("write spc");
            cmd.arg("--service-provider-config").arg(p);
        }
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start scim2-server"));
        let client = http();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("scim2-server exited with {status}: {}", self.log());
            }
            let r = client
                .get(format!("{}/ServiceProviderConfig", self.base()))
                .bearer_auth(TOKEN)
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "scim2-server did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn dump_path(&self) -> PathBuf {
        self.dir.path().join("dump.json")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v2", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// Sends a signal to the server process (`STOP`, `CONT`, `INT`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Stops the server with SIGINT and returns what it held (its dump).
    pub async fn stop_and_dump(&mut self) -> Vec<Value> {
        self.signal("INT");
        let mut child = self.child.take().expect("running");
        // It exits once every request thread has ended (a loaded machine may
        // take a while to finish the requests it had when it was frozen).
        let deadline = Instant::now() + Duration::from_secs(90);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("scim2-server did not stop within 90 s: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = std::fs::read_to_string(self.dump_path()).expect("dump");
        serde_json::from_str(&text).expect("dump is JSON")
    }

    // ---- raw SCIM, for setting up and checking ----

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = http()
            .request(method, format!("{}{path}", self.base()))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            r = r
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = r.send().await.expect("request to scim2-server");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn all(&self, endpoint: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut start = 1;
        loop {
            let (s, body) = self
                .request(
                    reqwest::Method::GET,
                    &format!("/{endpoint}?startIndex={start}&count=500"),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{body}");
            let page = body["Resources"].as_array().cloned().unwrap_or_default();
            if page.is_empty() {
                return out;
            }
            start += page.len();
            out.extend(page);
            if start as u64 > body["totalResults"].as_u64().unwrap_or(0) {
                return out;
            }
        }
    }

    /// Every user the server holds.
    pub async fn users(&self) -> Vec<Value> {
        self.all("Users").await
    }

    /// Every group the server holds.
    pub async fn groups(&self) -> Vec<Value> {
        self.all("Groups").await
    }

    /// The user with this exact userName, if any.
    pub async fn user(&self, user_name: &str) -> Option<Value> {
        self.users()
            .await
            .into_iter()
            .find(|u| u["userName"].as_str() == Some(user_name))
    }

    pub async fn create_user(&self, body: Value) -> Value {
        let (s, b) = self
            .request(reqwest::Method::POST, "/Users", Some(body))
            .await;
        assert_eq!(s, 201, "{b}");
        b
    }

    pub async fn create_group(&self, name: &str) -> String {
        let (s, b) = self
            .request(
                reqwest::Method::POST,
                "/Groups",
                Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().expect("group id").to_owned()
    }

    /// Group displayName → sorted userNames of its members.
    pub async fn memberships(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let users = self.users().await;
        let name_of = |id: &str| {
            users
                .iter()
                .find(|u| u["id"].as_str() == Some(id))
                .and_then(|u| u["userName"].as_str())
                .unwrap_or("<unknown>")
                .to_owned()
        };
        self.groups()
            .await
            .into_iter()
            .map(|g| {
                let mut m: Vec<String> = g["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| name_of(m["value"].as_str().unwrap_or("")))
                    .collect();
                m.sort();
                (g["displayName"].as_str().unwrap_or("").to_owned(), m)
            })
            .collect()
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A stopped (SIGSTOP) process dies of SIGKILL as well.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The account mapping the SCIM tests use: every form of path.
pub const MAPPING: &[(&str, &str, &str)] = &[
    ("display_name", "identity.name", "displayName"),
    ("given_name", "identity.given", "name.givenName"),
    ("email", "identity.email", "emails[type eq \"work\"].value"),
    (
        "department",
        "identity.department",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    ),
];

/// Settings for a server: the bearer token from the file `scim-token` of
/// the configuration directory (see [`connector`]), the [`MAPPING`], no
/// rate limit, short timeouts.
pub fn settings(base: &str) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("base_url".into(), base.into());
    let mut token = toml::Table::new();
    token.insert("file".into(), "scim-token".into());
    let mut auth = toml::Table::new();
    auth.insert("type".into(), "bearer".into());
    auth.insert("token".into(), token.into());
    t.insert("auth".into(), auth.into());
    let mut attrs = toml::Table::new();
    for (name, _, path) in MAPPING {
        attrs.insert((*name).into(), (*path).into());
    }
    t.insert("attributes".into(), attrs.into());
    t.insert("requests_per_second".into(), 0.into());
    t.insert("timeout_seconds".into(), 5.into());
    t
}

/// A `scim` system `app` with the [`MAPPING`], these entitlements and settings.
pub fn system(settings: toml::Table, entitlements: &[&str]) -> SystemConfig {
    let mut attrs = toml::Table::new();
    for (name, expr, _) in MAPPING {
        attrs.insert((*name).into(), (*expr).into());
    }
    let mut account = toml::Table::new();
    account.insert("key".into(), "identity.username".into());
    account.insert("attributes".into(), attrs.into());
    let mut sys = toml::Table::new();
    sys.insert("id".into(), "app".into());
    sys.insert("kind".into(), "scim".into());
    sys.insert(
        "entitlements".into(),
        toml::Value::Array(entitlements.iter().map(|e| (*e).into()).collect()),
    );
    sys.insert("account".into(), account.into());
    sys.insert("settings".into(), settings.into());
    let mut root = toml::Table::new();
    root.insert(
        "system".into(),
        toml::Value::Array(vec![toml::Value::Table(sys)]),
    );
    let text = toml::to_string(&root).expect("serialise config");
    let cfg = Config::parse(vec![("app.toml".to_owned(), text)]).expect("parse config");
    cfg.systems[0].item.clone()
}

/// Builds the connector with `dir` as its configuration directory, where
/// the token file is written first (unless one is there).
pub async fn connector(system: &SystemConfig, dir: &std::path::Path) -> ScimConnector {
    let token = dir.join("scim-token");
    if !token.exists() {
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token file");
    }
    match ScimConnector::new(system, dir).await {
        Ok(c) => c,
        Err(e) => panic!("build: {e}"),
    }
}

/// Operations on system `app`.
pub fn op(account: &str, action: tenure_core::Action) -> tenure_core::Operation {
    tenure_core::Operation {
        system: tenure_core::SystemId::new("app").expect("system id"),
        // The planner names the identity of every account it creates; the
        // tests' identity ids are the account keys.
        identity: Some(tenure_core::IdentityId::new(account).expect("identity id")),
        account: tenure_core::AccountKey::new(account).expect("account key"),
        action,
        reasons: vec![],
    }
}

/// The attributes of the [`MAPPING`] for `name`.
pub fn attrs(name: &str, department: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("display_name", format!("{name} Example")),
        ("given_name", name.to_owned()),
        ("email", format!("{}@example.com", name.to_lowercase())),
        ("department", department.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn create(name: &str, department: &str) -> tenure_core::Operation {
    op(
        name,
        tenure_core::Action::CreateAccount {
            attributes: attrs(name, department),
        },
    )
}

pub fn update(name: &str, changes: &[(&str, Option<&str>, &str)]) -> tenure_core::Operation {
    op(
        name,
        tenure_core::Action::UpdateAccount {
            changes: changes
                .iter()
                .map(|(k, before, after)| {
                    (
                        (*k).to_owned(),
                        tenure_core::plan::AttributeChange {
                            before: before.map(str::to_owned),
                            after: (*after).to_owned(),
                        },
                    )
                })
                .collect(),
        },
    )
}

pub fn add(name: &str, group: &str) -> tenure_core::Operation {
    op(
        name,
        tenure_core::Action::AddMembership {
            entitlement: tenure_core::EntitlementName::new(group).expect("entitlement"),
        },
    )
}

pub fn remove(name: &str, group: &str) -> tenure_core::Operation {
    op(
        name,
        tenure_core::Action::RemoveMembership {
            entitlement: tenure_core::EntitlementName::new(group).expect("entitlement"),
        },
    )
}

pub fn disable(name: &str) -> tenure_core::Operation {
    op(name, tenure_core::Action::DisableAccount)
}

pub fn enable(name: &str) -> tenure_core::Operation {
    op(name, tenure_core::Action::EnableAccount)
}

pub fn delete(name: &str) -> tenure_core::Operation {
    op(name, tenure_core::Action::DeleteAccount)
}
