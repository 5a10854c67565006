//! Security event tokens pushed to receivers that verify them against the
//! published JWKS, as a relying party would.

use crate::support::{ConfigDir, Receiver, TestDb, TestResult, both, notice, secs, t0};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tenure_notify::{Dispatcher, NoticeKind, Notifier, deliver_due};
use tenure_store::DeliveryState;

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";

fn config(app: &str, idp: &str, strict: &str) -> String {
    format!(
        r#"
[notifications]
max_attempts = 5
retry_seconds = 30

[security_events]
issuer = "https://tenure.example.com"
signing_key = {{ file = "keys/set.pem" }}
key_id = "tenure-2026"
algorithm = "ES256"

[[security_events.receiver]]
id = "app"
url = "{app}"
token = {{ file = "secrets/set-token" }}
audience = "https://app.example.com"
subject = {{ format = "email" }}

[[security_events.receiver]]
id = "idp"
url = "{idp}"
audience = "https://idp.example.com"
events = ["session-revoked"]
subject = {{ format = "iss_sub", issuer = "https://idp.example.com", attribute = "id" }}

[[security_events.receiver]]
id = "strict"
url = "{strict}"
audience = "https://strict.example.com"
events = ["account-disabled"]
subject = {{ format = "opaque" }}
"#
    )
}

/// Verifies a pushed token as a receiver does: the signature against the
/// JWKS key named by `kid`, `typ`, `iss`, `aud`; returns the claims.
fn verify(
    token: &str,
    jwks: &Value,
    audience: &str,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let header = jsonwebtoken::decode_header(token)?;
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.ok_or("no kid")?;
    let set: JwkSet = serde_json::from_value(jwks.clone())?;
    let jwk = set.find(&kid).ok_or("kid not in the JWKS")?;
    let key = DecodingKey::from_jwk(jwk)?;
    let mut v = Validation::new(Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.set_audience(&[audience]);
    v.set_issuer(&["https://tenure.example.com"]);
    Ok(jsonwebtoken::decode::<Value>(token, &key, &v)?.claims)
}

fn tokens(r: &Receiver) -> Vec<(String, Option<String>, String)> {
    r.received()
        .into_iter()
        .map(|x| {
            let h = |n: &str| {
                x.headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            (
                h("content-type").unwrap_or_default(),
                h("authorization"),
                String::from_utf8_lossy(&x.body).into_owned(),
            )
        })
        .collect()
}

/// A suspension sends each receiver the events it subscribed to, signed
/// and verifiable with the JWKS, with every claim RFC 8417 and the Shared
/// Signals profiles ask for; a 400 with an `err` fails at once with it.
async fn suspension_pushes_verified_tokens(db: TestDb) -> TestResult {
    let app = Receiver::start(&[(202, "")]).await?;
    let idp = Receiver::start(&[(202, "")]).await?;
    let strict = Receiver::start(&[(
        400,
        r#"{"err":"invalid_audience","description":"unknown audience"}"#,
    )])
    .await?;
    let dir = ConfigDir::new(&config(&app.url, &idp.url, &strict.url))?;
    let cfg = dir.config()?;
    let store = db.store().await?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let dispatcher = Dispatcher::new(&cfg, dir.path())?;
    let jwks = notifier.jwks();
    let keys = jwks["keys"].as_array().ok_or("no keys")?;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], "tenure-2026");
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["use"], "sig");
    assert!(
        keys[0].get("d").is_none(),
        "the private part is never published"
    );

    let mut n = notice("suspend:E1042:1", NoticeKind::Suspended, t0());
    n.detail = "compromised credentials".into();
    let sent_at = t0() + secs(1);
    let e = notifier.enqueue(&store, &[n], sent_at).await?;
    assert_eq!(e.added, 4, "app: 2 events, idp: 1, strict: 1; {e:?}");
    let s = deliver_due(&store, t0() + secs(2), &dispatcher, 100).await?;
    assert_eq!((s.delivered, s.failed), (3, 1), "{s:?}");

    // app: both events, bearer token, email subject
    let got = tokens(&app);
    assert_eq!(got.len(), 2);
    let mut events = Vec::new();
    let mut jtis = Vec::new();
    for (ctype, auth, token) in &got {
        assert_eq!(ctype, "application/secevent+jwt");
        assert_eq!(auth.as_deref(), Some("Bearer set-bearer"));
        let c = verify(token, &jwks, "https://app.example.com")?;
        assert_eq!(c["iss"], "https://tenure.example.com");
        assert_eq!(c["aud"], "https://app.example.com");
        assert_eq!(c["iat"], sent_at.timestamp());
        assert_eq!(c["txn"], "suspend:E1042:1");
        assert_eq!(c["toe"], t0().timestamp());
        assert_eq!(c["sub_id"]["format"], "email");
        assert_eq!(c["sub_id"]["email"], "ada@example.com");
        let ev = c["events"].as_object().ok_or("no events")?;
        assert_eq!(ev.len(), 1, "one event per token");
        let (uri, body) = ev.iter().next().ok_or("empty events")?;
        assert_eq!(body["event_timestamp"], t0().timestamp());
        assert_eq!(body["initiating_entity"], "admin");
        assert_eq!(body["reason_admin"]["en"], "compromised credentials");
        events.push(uri.clone());
        jtis.push(c["jti"].as_str().unwrap_or("").to_owned());
    }
    events.sort();
    assert_eq!(events, [SESSION_REVOKED, ACCOUNT_DISABLED]);
    assert!(
        jtis.iter().all(|j| j.len() == 32) && jtis[0] != jtis[1],
        "{jtis:?}"
    );

    // idp: session-revoked only, iss_sub subject from the identity's id, no bearer
    let got = tokens(&idp);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, None);
    let c = verify(&got[0].2, &jwks, "https://idp.example.com")?;
    assert_eq!(
        c["sub_id"],
        serde_json::json!({"format": "iss_sub", "iss": "https://idp.example.com", "sub": "E1042"})
    );
    assert!(c["events"].get(SESSION_REVOKED).is_some());

    // a token for one audience does not verify for another
    assert!(verify(&got[0].2, &jwks, "https://app.example.com").is_err());

    // strict: refused with its err, failed at once, visible
    let failed = store.deliveries(Some(DeliveryState::Failed), 10).await?;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].target, "strict");
    assert_eq!(failed[0].event, "account-disabled");
    assert_eq!(
        failed[0].last_error.as_deref(),
        Some("HTTP 400: invalid_audience: unknown audience")
    );
    let c = verify(&failed[0].payload, &jwks, "https://strict.example.com")?;
    assert_eq!(
        c["sub_id"],
        serde_json::json!({"format": "opaque", "id": "E1042"})
    );
    Ok(())
}

/// A leaver sends tokens too; a receiver that answers 503 gets the same
/// token (same `jti`) again after the backoff; joiners send none.
async fn retries_resend_the_same_token(db: TestDb) -> TestResult {
    let app = Receiver::start(&[(503, ""), (202, "")]).await?;
    let idp = Receiver::start(&[(202, "")]).await?;
    let strict = Receiver::start(&[(202, "")]).await?;
    let dir = ConfigDir::new(&config(&app.url, &idp.url, &strict.url))?;
    let cfg = dir.config()?;
    let store = db.store().await?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let dispatcher = Dispatcher::new(&cfg, dir.path())?;
    let joiner = notifier
        .enqueue(&store, &[notice("j", NoticeKind::Joiner, t0())], t0())
        .await?;
    assert_eq!(joiner.added, 0, "joiners revoke nothing");
    notifier
        .enqueue(&store, &[notice("l", NoticeKind::Leaver, t0())], t0())
        .await?;
    let s = deliver_due(&store, t0(), &dispatcher, 100).await?;
    assert_eq!((s.delivered, s.retried, s.postponed), (2, 1, 1), "{s:?}");
    let s = deliver_due(&store, t0() + secs(29), &dispatcher, 100).await?;
    assert_eq!(s.delivered, 0, "not before the 30 s backoff");
    let s = deliver_due(&store, t0() + secs(30), &dispatcher, 100).await?;
    assert_eq!(s.delivered, 2, "{s:?}");
    let got = tokens(&app);
    assert_eq!(got.len(), 3, "one 503, then both");
    assert_eq!(got[0].2, got[1].2, "the retried token is the same token");
    let c = verify(&got[0].2, &notifier.jwks(), "https://app.example.com")?;
    let ev = c["events"].as_object().ok_or("no events")?;
    assert!(ev.values().all(|b| b["initiating_entity"] == "policy"));
    Ok(())
}

both!(
    suspension_pushes_verified_tokens,
    retries_resend_the_same_token,
);

/// A signing key that is not a P-256 key is named as the problem.
#[tokio::test]
async fn a_bad_signing_key_is_named() -> TestResult {
    let dir = ConfigDir::new(&config(
        "https://a.example/x",
        "https://b.example/x",
        "https://c.example/x",
    ))?;
    std::fs::write(dir.path().join("keys/set.pem"), "not a key\n")?;
    let cfg = dir.config()?;
    let Err(e) = Notifier::new(&cfg, dir.path()) else {
        return Err("must fail".into());
    };
    assert!(
        e.to_string().contains("[security_events] signing_key"),
        "{e}"
    );
    Ok(())
}
