//! `tenure serve` as the lifecycle service: the real binary on a real
//! socket. Its scheduler imports the example organisation's HR export and
//! provisions it by itself; health, readiness and Prometheus metrics answer;
//! a security engineer suspends and resumes someone over HTTP with a scoped
//! token; SIGTERM stops it cleanly.

use crate::support::Org;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) struct Service {
    pub(crate) child: Child,
    pub(crate) port: u16,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status, body).
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: Bearer {a}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    // Chunked bodies: keep the JSON or text between the chunk sizes.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut text = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            text.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        text
    } else {
        body.to_owned()
    };
    (status, body)
}

/// A webhook receiver on loopback: records every request (head, body) and answers 200.
/// Requests a receiver got: (head, body).
pub(crate) type Received = Arc<Mutex<Vec<(String, String)>>>;

pub(crate) fn receiver() -> (u16, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .unwrap()
                .push((head, String::from_utf8_lossy(&body).into_owned()));
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

pub(crate) fn token(org: &Org, name: &str, scope: &str) -> String {
    let r = org
        .run(&["token", "create", "--name", name, "--scope", scope])
        .ok();
    r.stdout.trim().to_owned()
}

/// Starts `tenure serve` on a free port at `now`, and waits until it is
/// ready (the scheduler's first round done).
pub(crate) fn start(org: &Org, now: &str) -> Service {
    let mut child = org
        .command(&["--now", now, "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .trim_start_matches("listening on http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("unexpected first line {line:?}"));
    let svc = Service { child, port };
    let start = Instant::now();
    loop {
        let (status, body) = http(port, "GET", "/readyz", None, "");
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    svc
}

#[test]
fn the_service_provisions_by_itself_reports_health_and_suspends_over_http() {
    let org = Org::new();
    // A SIEM that wants to hear of joiners and suspensions, by signed webhook.
    let (hook_port, hooks) = receiver();
    std::fs::write(org.path("config/webhook.secret"), "s3cret-for-hmac\n").unwrap();
    let cfg = org.path("config/tenure.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[[webhook]]\nid = \"siem\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret = {{ file = \"webhook.secret\" }}\nevents = [\"joiner\", \"suspended\"]\n"
        ),
    )
    .unwrap();
    org.run(&["check"]).ok();
    let security = token(&org, "security", "suspend");
    let reader = token(&org, "idp", "scim:read");
    let mut child = org
        .command(&["--now", "2026-11-01", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .trim_start_matches("listening on http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("unexpected first line {line:?}"));
    let svc = Service { child, port };
    let port = svc.port;

    assert_eq!(http(port, "GET", "/healthz", None, "").0, 200);
    // Ready once the scheduler's first round (import, plan, apply) is done.
    let start = Instant::now();
    loop {
        let (status, body) = http(port, "GET", "/readyz", None, "");
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The scheduler imported the HR export and provisioned everyone.
    let access = org
        .run(&["--now", "2026-11-01", "report", "access", "--format", "csv"])
        .ok()
        .stdout;
    assert!(
        access.contains("E1016,Dennis Ritchie,active,crm,dennis.ritchie,enabled"),
        "{access}"
    );
    assert_eq!(org.pending_operations("2026-11-01"), 0);

    let (status, metrics) = http(port, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    for needle in [
        "tenure_queue_operations{state=\"queued\"} 0",
        "tenure_operations_total{system=\"wiki\",outcome=\"done\"}",
        "tenure_operation_seconds_bucket{system=\"crm\"",
        "tenure_system_quarantined{system=\"ledger\"} 0",
    ] {
        assert!(metrics.contains(needle), "{needle} in\n{metrics}");
    }

    // The suspend API: a token with the scope, and nothing less.
    let path = "/api/v1/identities/E1016/suspend";
    let body = r#"{"reason": "credentials phished"}"#;
    assert_eq!(http(port, "POST", path, None, body).0, 401);
    assert_eq!(http(port, "POST", path, Some("tnr_nonsense"), body).0, 401);
    let (status, text) = http(port, "POST", path, Some(&reader), body);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("suspend"), "{text}");
    let (status, text) = http(port, "POST", path, Some(&security), "{\"why\": 1}");
    assert_eq!(status, 400, "{text}");
    let (status, text) = http(
        port,
        "POST",
        "/api/v1/identities/E9999/suspend",
        Some(&security),
        body,
    );
    assert_eq!(status, 404, "{text}");

    let (status, text) = http(port, "POST", path, Some(&security), body);
    assert_eq!(status, 200, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["suspended"], true);
    let systems = report["systems"].as_array().unwrap();
    assert!(systems.len() >= 2, "{report}");
    for s in systems {
        assert_eq!(s["done"], s["operations"], "{s}");
        assert!(s["confirmed_after_s"].as_f64().unwrap() < 1.0, "{s}");
    }
    let access = org
        .run(&["--now", "2026-11-01", "report", "access", "--format", "csv"])
        .ok()
        .stdout;
    assert!(
        access
            .lines()
            .filter(|l| l.starts_with("E1016,"))
            .all(|l| l.contains(",disabled,")),
        "{access}"
    );
    let audit = org.audit();
    let rec = audit
        .iter()
        .find(|r| r["action"] == "identity.suspended")
        .unwrap();
    assert_eq!(rec["actor"], "token:security");
    assert_eq!(rec["reason"], "credentials phished");
    let (_, metrics) = http(port, "GET", "/metrics", None, "");
    assert!(
        metrics.contains("tenure_time_to_revoke_seconds_bucket{path=\"suspend\""),
        "{metrics}"
    );

    // The SIEM hears of it, signed.
    let start = Instant::now();
    let (head, body) = loop {
        let found = hooks
            .lock()
            .unwrap()
            .iter()
            .find(|(_, b)| b.contains("\"suspended\"") && b.contains("E1016"))
            .cloned();
        if let Some(f) = found {
            break f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no suspended webhook"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let signature = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("tenure-signature: ")
                .or_else(|| l.strip_prefix("Tenure-Signature: "))
        })
        .unwrap()
        .trim()
        .to_owned();
    let now = chrono::Utc::now().timestamp();
    assert!(
        tenure_notify::webhook::verify_signature(
            b"s3cret-for-hmac",
            &signature,
            body.as_bytes(),
            now,
            300
        ),
        "{head}\n{body}"
    );
    assert!(body.contains("credentials phished"), "{body}");
    assert!(
        hooks
            .lock()
            .unwrap()
            .iter()
            .any(|(_, b)| b.contains("\"joiner\"")),
        "joiners of the first import were told"
    );

    let (status, text) = http(
        port,
        "POST",
        "/api/v1/identities/E1016/resume",
        Some(&security),
        r#"{"reason": "new credentials issued"}"#,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(org.pending_operations("2026-11-01"), 0);

    // SIGTERM: the service finishes its round and exits cleanly.
    let mut svc = svc;
    let pid = svc.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    loop {
        if let Some(status) = svc.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
