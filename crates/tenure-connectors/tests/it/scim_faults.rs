//! Faults scim2-server cannot produce by itself, around the real server:
//!
//! - `429 Too Many Requests` with `Retry-After`: a small proxy in front of
//!   the real scim2-server answers 429 to chosen requests and forwards the
//!   rest, so that what the connector finally writes lands on the real
//!   server and is checked there;
//! - OAuth 2.0 client credentials: a small token endpoint issues tokens
//!   (first a stale one, then the server's own, briefly valid) for the real
//!   server. scim2-server only knows static bearer tokens.

use crate::scim_support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tenure_connectors::Connector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One HTTP/1.x request as received.
struct Request {
    raw: Vec<u8>,
    head: String,
    body: String,
}

impl Request {
    fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }
    fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

async fn read_request(sock: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    Some(Request {
        raw: buf,
        head,
        body,
    })
}

enum Answer {
    Respond(u16, Vec<(String, String)>, String),
    Forward(u16),
}

/// Serves loopback HTTP with `decide` choosing each answer; returns the port.
async fn serve(decide: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let decide = Arc::new(decide);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let decide = Arc::clone(&decide);
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else {
                    return;
                };
                match decide(&req) {
                    Answer::Respond(status, headers, body) => {
                        let mut out = format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                            body.len()
                        );
                        for (k, v) in headers {
                            out.push_str(&format!("{k}: {v}\r\n"));
                        }
                        out.push_str("\r\n");
                        out.push_str(&body);
                        let _ = sock.write_all(out.as_bytes()).await;
                    }
                    Answer::Forward(port) => {
                        let Ok(mut up) = TcpStream::connect(("127.0.0.1", port)).await else {
                            return;
                        };
                        if up.write_all(&req.raw).await.is_err() {
                            return;
                        }
                        // scim2-server answers HTTP/1.0 and closes: read to the end.
                        let mut resp = Vec::new();
                        let _ = up.read_to_end(&mut resp).await;
                        let _ = sock.write_all(&resp).await;
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_is_waited_out_or_transient_with_its_delay() {
    let Some(srv) = ScimServer::start("scim_faults::too_many_requests", None).await else {
        return;
    };
    let upstream = srv.port;
    // 429 to the first two requests, then to every POST while `refuse_posts` is set.
    let seen = Arc::new(AtomicUsize::new(0));
    let throttled = Arc::new(AtomicUsize::new(0));
    let refuse_posts = Arc::new(AtomicUsize::new(0));
    let port = {
        let (seen, throttled, refuse_posts) = (
            Arc::clone(&seen),
            Arc::clone(&throttled),
            Arc::clone(&refuse_posts),
        );
        serve(move |req| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let post = req.method() == "POST";
            if n < 2 || (post && refuse_posts.load(Ordering::SeqCst) > 0) {
                throttled.fetch_add(1, Ordering::SeqCst);
                let after = if post && n >= 2 { "7" } else { "1" };
                let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"429","detail":"slow down"}"#;
                return Answer::Respond(429, vec![("Retry-After".into(), after.into())], body.into());
            }
            Answer::Forward(upstream)
        })
        .await
    };
    let base = format!("http://127.0.0.1:{port}/v2");
    let c = connector(&system(settings(&base), &[]), srv.dir.path()).await;
    let t0 = Instant::now();
    let r = c.apply(&[create("erin", "Sales")]).await;
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "waited out two 1 s Retry-After"
    );
    assert_eq!(throttled.load(Ordering::SeqCst), 2);
    assert!(srv.user("erin").await.is_some());

    // Past max_retry_wait_seconds: a transient error carrying the delay, nothing written.
    refuse_posts.store(1, Ordering::SeqCst);
    let mut s = settings(&base);
    s.insert("max_retry_wait_seconds".into(), 3.into());
    let c = connector(&system(s, &[]), srv.dir.path()).await;
    let t0 = Instant::now();
    let r = c.apply(&[create("frank", "Sales")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)), "{e}");
    assert!(
        e.to_string().contains("429") && e.to_string().contains("slow down"),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "did not wait 7 s");
    assert!(srv.user("frank").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_client_credentials() {
    let Some(srv) = ScimServer::start("scim_faults::oauth2_client_credentials", None).await else {
        return;
    };
    let issued = Arc::new(AtomicUsize::new(0));
    let expected_basic = format!("Basic {}", base64(b"tenure-client:client-s3cret"));
    let token_port = {
        let issued = Arc::clone(&issued);
        serve(move |req| {
            let json = |s: u16, b: String| {
                Answer::Respond(
                    s,
                    vec![("Content-Type".into(), "application/json".into())],
                    b,
                )
            };
            if req.path() != "/token" || req.method() != "POST" {
                return json(404, "{}".into());
            }
            if req.header("authorization") != Some(expected_basic.as_str()) {
                return json(
                    401,
                    r#"{"error":"invalid_client","error_description":"bad client credentials"}"#
                        .into(),
                );
            }
            if !req.body.contains("grant_type=client_credentials")
                || !req.body.contains("scope=scim")
            {
                return json(400, r#"{"error":"invalid_request"}"#.into());
            }
            // First a token the SCIM server refuses, then its own, valid 2 s.
            match issued.fetch_add(1, Ordering::SeqCst) {
                0 => json(
                    200,
                    r#"{"access_token":"stale","token_type":"Bearer","expires_in":3600}"#.into(),
                ),
                _ => json(
                    200,
                    format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":2}}"#),
                ),
            }
        })
        .await
    };
    let oauth = |secret_file: &str| {
        let mut s = settings(&srv.base());
        let mut auth = toml::Table::new();
        auth.insert("type".into(), "oauth2".into());
        auth.insert(
            "token_url".into(),
            format!("http://127.0.0.1:{token_port}/token").into(),
        );
        auth.insert("client_id".into(), "tenure-client".into());
        let mut secret = toml::Table::new();
        secret.insert("file".into(), secret_file.into());
        auth.insert("client_secret".into(), secret.into());
        auth.insert("scope".into(), "scim".into());
        s.insert("auth".into(), auth.into());
        system(s, &[])
    };
    std::fs::write(srv.dir.path().join("client-secret"), "client-s3cret\n").unwrap();
    let c = connector(&oauth("client-secret"), srv.dir.path()).await;
    ok_one(&c.apply(&[create("gail", "Sales")]).await);
    assert!(srv.user("gail").await.is_some());
    assert_eq!(c.token_requests(), 2, "a 401 fetched a new token once");

    // The token is renewed before it expires, without a refused request.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = c.requests();
    ok_one(&c.apply(&[disable("gail")]).await);
    assert_eq!(c.token_requests(), 3);
    assert_eq!(c.requests() - before, 1, "one request, no 401 on the way");
    assert_eq!(srv.user("gail").await.unwrap()["active"], false);

    // A refused client: a permanent error naming the endpoint's answer, not the secret.
    std::fs::write(srv.dir.path().join("wrong-secret"), "nope").unwrap();
    let c = connector(&oauth("wrong-secret"), srv.dir.path()).await;
    let r = c.apply(&[enable("gail")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.is_transient(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("invalid_client") && msg.contains("token"),
        "{msg}"
    );
    assert!(!msg.contains("nope") && !msg.contains("s3cret"), "{msg}");
    assert_eq!(srv.user("gail").await.unwrap()["active"], false);
}

fn ok_one(r: &[Result<(), tenure_connectors::ConnectorError>]) {
    if let Some(Err(e)) = r.first() {
        panic!("{e}");
    }
}
