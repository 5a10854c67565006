//! Test support: databases (SQLite and PostgreSQL), a configuration directory
//! with its secrets and signing key, and real receivers on 127.0.0.1: an HTTP
//! server (webhooks and SET push) and a small SMTP server.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::{AnyConnection, AssertSqlSafe, Connection};
use std::collections::{BTreeMap, VecDeque};
use std::error::Error;
use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tenure_core::config::Config;
use tenure_notify::{Notice, NoticeIdentity, NoticeKind};
use tenure_store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

/// Which database a test variant runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database for one test (a file, or a PostgreSQL database dropped
/// at the end).
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl TestDb {
    pub async fn store(&self) -> Result<Store, Box<dyn Error + Send + Sync>> {
        Ok(Store::open(&self.url).await?)
    }
}

struct PgDatabase {
    maintenance_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let url = self.maintenance_url.clone();
        // The name is made here from digits and underscores.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = AnyConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

async fn test_db(
    backend: Backend,
    test: &str,
) -> Result<Option<TestDb>, Box<dyn Error + Send + Sync>> {
    sqlx::any::install_default_drivers();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("tenure.db").display());
            Ok(Some(TestDb {
                url,
                _dir: Some(dir),
                _pg: None,
            }))
        }
        Backend::Postgres => {
            let Ok(base) = std::env::var("TENURE_TEST_POSTGRES") else {
                if std::env::var("CI").as_deref() == Ok("true") {
                    return Err(format!(
                        "{test}: TENURE_TEST_POSTGRES is not set, and CI runs every variant"
                    )
                    .into());
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: postgres variant of {test}: TENURE_TEST_POSTGRES is not set \
                     (e.g. postgres://postgres@127.0.0.1:5432/test)"
                );
                return Ok(None);
            };
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let name = format!(
                "tenure_n_{}_{}_{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                nanos
            );
            let mut c = AnyConnection::connect(&base).await?;
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await?;
            c.close().await?;
            let guard = PgDatabase {
                maintenance_url: base.clone(),
                name: name.clone(),
            };
            let (head, query) = match base.split_once('?') {
                Some((h, q)) => (h.to_owned(), Some(q.to_owned())),
                None => (base.clone(), None),
            };
            let scheme_end = head.find("://").map_or(0, |i| i + 3);
            let path_start = head[scheme_end..]
                .find('/')
                .map_or(head.len(), |i| scheme_end + i);
            let mut url = format!("{}/{name}", &head[..path_start]);
            if let Some(q) = query {
                url.push('?');
                url.push_str(&q);
            }
            Ok(Some(TestDb {
                url,
                _dir: None,
                _pg: Some(guard),
            }))
        }
    }
}

/// Runs one test body on a fresh database of `backend`.
pub async fn run<F, Fut>(backend: Backend, test: &str, body: F) -> TestResult
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = TestResult>,
{
    match test_db(backend, test).await? {
        Some(db) => body(db).await,
        None => Ok(()),
    }
}

/// Declares, for each async test function `name(db: TestDb) -> TestResult`,
/// a module `name` with a `sqlite` and a `postgres` test.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() -> crate::support::TestResult {
                    crate::support::run(crate::support::Backend::Sqlite, stringify!($name), super::$name).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() -> crate::support::TestResult {
                    crate::support::run(crate::support::Backend::Postgres, stringify!($name), super::$name).await
                }
            }
        )*
    };
}
pub(crate) use both;

/// A fixed instant tests count from.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

pub fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

/// A configuration directory: TOML text, secret files and a signing key.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    /// A directory with `notify.toml` = `toml`, the webhook secret
    /// `secrets/hook` and a P-256 signing key `keys/set.pem`.
    pub fn new(toml: &str) -> Result<ConfigDir, Box<dyn Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("secrets"))?;
        std::fs::create_dir_all(dir.path().join("keys"))?;
        std::fs::write(dir.path().join("secrets/hook"), format!("{HOOK_SECRET}\n"))?;
        std::fs::write(dir.path().join("secrets/set-token"), "set-bearer\n")?;
        std::fs::write(dir.path().join("keys/set.pem"), signing_key_pem()?)?;
        std::fs::write(dir.path().join("notify.toml"), toml)?;
        Ok(ConfigDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The parsed configuration, checked as `tenure check` does.
    pub fn config(&self) -> Result<Config, Box<dyn Error + Send + Sync>> {
        let text = std::fs::read_to_string(self.path().join("notify.toml"))?;
        let cfg = Config::parse(vec![("notify.toml".into(), text)])?;
        let problems = tenure_core::notify_config::check(&cfg);
        if !problems.is_empty() {
            return Err(format!("{problems:#?}").into());
        }
        Ok(cfg)
    }
}

pub const HOOK_SECRET: &str = "whsec-test-0123456789";

/// A fixed P-256 private key, PKCS#8 PEM.
pub fn signing_key_pem() -> Result<String, Box<dyn Error + Send + Sync>> {
    use p256::pkcs8::EncodePrivateKey;
    let key = p256::SecretKey::from_slice(&[7u8; 32])?;
    Ok(key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)?.to_string())
}

/// A leaver notice about Ada.
pub fn notice(id: &str, kind: NoticeKind, at: DateTime<Utc>) -> Notice {
    Notice {
        id: id.to_owned(),
        kind,
        identity: Some(NoticeIdentity {
            id: "E1042".into(),
            display_name: "Ada Lovelace".into(),
            attributes: BTreeMap::from([
                ("email".to_owned(), "ada@example.com".to_owned()),
                ("department".to_owned(), "Sales".to_owned()),
            ]),
            manager_email: Some("grace@example.com".into()),
        }),
        system: None,
        detail: "terminated by HR".into(),
        at,
    }
}

/// A port on 127.0.0.1 where nothing listens (connection refused).
pub async fn closed_port() -> Result<u16, Box<dyn Error + Send + Sync>> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    drop(l);
    Ok(port)
}

/// One request an HTTP receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The answers an HTTP receiver gives, in turn (the last one forever).
#[derive(Clone)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<(u16, String)>>>,
    pub url: String,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// An HTTP server on 127.0.0.1 that records every POST to `/hook` and
    /// answers with `answers` in turn.
    pub async fn start(answers: &[(u16, &str)]) -> Result<Receiver, Box<dyn Error + Send + Sync>> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers: Arc<Mutex<VecDeque<(u16, String)>>> = Arc::new(Mutex::new(
            answers.iter().map(|(c, b)| (*c, (*b).to_owned())).collect(),
        ));
        #[derive(Clone)]
        struct S {
            got: Arc<Mutex<Vec<Received>>>,
            answers: Arc<Mutex<VecDeque<(u16, String)>>>,
        }
        async fn hook(State(s): State<S>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
            if let Ok(mut g) = s.got.lock() {
                g.push(Received { headers, body });
            }
            let (code, text) = match s.answers.lock() {
                Ok(mut a) => {
                    if a.len() > 1 {
                        a.pop_front().unwrap_or((500, String::new()))
                    } else {
                        a.front().cloned().unwrap_or((500, String::new()))
                    }
                }
                Err(_) => (500, String::new()),
            };
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                text,
            )
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(S {
                got: got.clone(),
                answers: answers.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Receiver {
            got,
            answers,
            url,
            _stop: Arc::new(tx),
        })
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// From now on, answer `code` with `body`.
    pub fn answer(&self, code: u16, body: &str) {
        if let Ok(mut a) = self.answers.lock() {
            a.clear();
            a.push_back((code, body.to_owned()));
        }
    }
}

/// One message the SMTP sink received.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server on 127.0.0.1 (RFC 5321: EHLO, MAIL, RCPT, DATA,
/// RSET, NOOP, QUIT) that keeps what it receives. RCPT to an address
/// starting with `reject` gets `550`, as a server that has no such mailbox.
pub struct SmtpSink {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    pub async fn start() -> Result<SmtpSink, Box<dyn Error + Send + Sync>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(sock, store).await;
                });
            }
        });
        Ok(SmtpSink { port, mails, task })
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

async fn smtp_session(
    sock: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250-sink.test\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            mail = Mail {
                from: addr(&cmd[10..]),
                ..Mail::default()
            };
            w.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            let a = addr(&cmd[8..]);
            if a.starts_with("reject") {
                w.write_all(b"550 5.1.1 no such mailbox\r\n").await?;
            } else {
                mail.to.push(a);
                w.write_all(b"250 OK\r\n").await?;
            }
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let l = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(l);
            }
            mail.data = data;
            if let Ok(mut s) = store.lock() {
                s.push(std::mem::take(&mut mail));
            }
            w.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 OK\r\n").await?;
        } else {
            w.write_all(b"502 not implemented\r\n").await?;
        }
    }
}

fn addr(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or(s);
    s.trim_start_matches('<').trim_end_matches('>').to_owned()
}
