//! Security Event Tokens end to end through `tenure serve`: the real binary
//! pushes (RFC 8935) to a receiver started here when someone is suspended
//! over the HTTP API and when HR makes someone a leaver; the receiver
//! verifies each token as a relying party does, with the key fetched from
//! the server's own `/.well-known/jwks.json`, in ES256 and in RS256. And the
//! service refuses to start when a notification secret cannot be read.

use crate::serve_ops::{Received, http, receiver, start, token};
use crate::support::Org;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::time::{Duration, Instant};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const ISSUER: &str = "https://tenure.acme.example";
const AUDIENCE: &str = "https://crm.acme.example";

/// A P-256 key made for this test only (`openssl genpkey -algorithm EC
/// -pkeyopt ec_paramgen_curve:P-256`); it protects nothing.
const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3fnBrXx3GuiPfIbp
r6Cv5V7aO09CR2RxSI0hu6sd+iGhRANCAATo7hG8kSiOnbizmOgzPNWBArShGfls
Y52oLR6Ka0U/jNchl3xOr8kMTmiqa7qmiqDo6jiikjnQ6ddHP5B+e00E
-----END PRIVATE KEY-----
";

/// An RSA 2048 key made for this test only (`openssl genpkey -algorithm
/// RSA`); it protects nothing.
const RSA_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDMTwdEKzQku1T9
KPD/qYoqJ+mV+YfdICiqXTKS60v/YvcljC38YXyeGLX6DCSBFUVfslacXSyO/w3i
yDRfWucy4IHWjLKgH4h/krfaik7DHvdmILarDr4UBSY7SXBSyG4MuwWX87f3WG3Y
UgAe5ia9K+QvJEAstYFHJTorMBdE8v872mR2NmjJ/+e9fNwHeAQ+uVfVJuQlMb+l
tWNg1fuwQr58E2QjX/DHetptSnOsHPGZTkX66cS6hS9kq5Se7gj7qbnZld/TC3bC
y9OmhPS9wV6RNPfekLTaeklz914Tn9u45Bzvf61uazl6TAuD3GtklDfw571g+fYs
IUmHRUHLAgMBAAECggEAErIEmzNM4TOXMldFvk9YSkU+ta+QxCZGMli24QTQ/nyi
2ve52YdeLOVb+ZaU3I8CuyAJluNbyXYDYkYprLQXxesPVn+ndMmN5waY9lGDpY02
3EyQCpUdxZ03A2PT+G9Iyrduapotsl+QJaRTSICM+PCEP+AUU0MEomsAqKUM7A0a
VAxvoI6motPUHRcj4rm30Mhf3JvKPQMEvPTJElUECPUtMsYYZIjoHAmht7j95/qU
cAuP0s9jt7AzlTvHfix2cjXUY6ssiUys6mkqEMS+1RI5Qxa7n2RAHE/aIpo0b5RI
in+q6m66MFOnb70VH79acz8ZM2S89oygxPAs7JrB6QKBgQD5moRXjCRmkc2JbKUo
zPvc1K5kVjLDWDnFWBwKzzvz6YoPq2Oy+7PimhW1yZWqdLNCCk6OpWtkybdDyemF
OKSKRMM+rKHo+6MgOmLcWJFFgoyYkTeBCZLZvl/MuWoy0hVhDkZDodtt+n3nJSWD
BBMHlJV5tZ7yAnZsegNgEwHdDQKBgQDRi1yjY83/mFpenjmgn0nNPFvGVS1LPbJd
QUhSrDw6qVfRLl+68kGxKZteCit5efxCNTnc4i8qfe80lRuWrgwrJTHB2H33P4O8
Co/2aTHl4TepeJV9DyNbctjbTlKkXwH1MLvBZMsyC+cvRN0+ZmjdJh23KsRGjfUo
5dto7hDUNwKBgCyC0IzoMemUoKmcFUvUWinER6Ee+gh56Dt3/fAzioZxpCwtLSdS
2X5UagC0BRuTmg/x1JZ9i0w66JKPJDScqEL8BjFcCbeJgEqT/uM6bBWQNVBTvSkm
suhfmafhfL25VxSqvf77kyzmmaMpranShS454foFWGXh6Ippq8ZrPU7VAoGBAMYj
sztEmnt/gqRJlVBOjqik1FscG7Iz6r7Hhi22c1U8368K3LaXcIqnPySTFTzOnju0
vLwinFrfrhrYi7fVZ+g8SWp03de3lUdv7WUhX29xoQJ85U3VzKciV/A3hWmr9Nv2
cvOR7ZmrK7XEtjfU+n9zFVIn/GSCwzki8G+t/PfNAoGBAKoBUnfAysA3ztLImIUQ
qCZLTxI16ybXJUUm7E/KilVC2uPJhjz/mKm4AecJt7gTKzzyV5l68wQtxDfG4xx4
Kj10HoiEk4pLQuwDMmregWcXmOvpAIEsZN8+3chkVAt4Gv9udeplPm0xWVg4tRqp
3oYRUZwStK9HNShxPCT7W9/y
-----END PRIVATE KEY-----
";

/// Appends `extra` to the example's configuration.
fn configure(org: &Org, extra: &str) {
    let cfg = org.path("config/tenure.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n{extra}")).unwrap();
}

/// `[security_events]` signing with `algorithm` and one receiver on `port`.
fn security_events(org: &Org, algorithm: &str, pem: &str, port: u16) {
    std::fs::create_dir_all(org.path("config/keys")).unwrap();
    std::fs::write(org.path("config/keys/set.pem"), pem).unwrap();
    std::fs::write(org.path("config/crm-set-token"), "crm-push-bearer\n").unwrap();
    configure(
        org,
        &format!(
            r#"
[security_events]
issuer = "{ISSUER}"
signing_key = {{ file = "keys/set.pem" }}
key_id = "acme-{algorithm}"
algorithm = "{algorithm}"

[[security_events.receiver]]
id = "crm"
url = "http://127.0.0.1:{port}/ssf/push"
token = {{ file = "crm-set-token" }}
audience = "{AUDIENCE}"
subject = {{ format = "email" }}
"#
        ),
    );
}

/// The pushes received so far: (head lower-cased, body).
fn pushes(got: &Received) -> Vec<(String, String)> {
    got.lock()
        .unwrap()
        .iter()
        .map(|(h, b)| (h.to_ascii_lowercase(), b.clone()))
        .collect()
}

/// Waits until the receiver holds `n` tokens whose claims satisfy `pick`,
/// verifying every one as a relying party does; returns their claims.
fn wait_for(
    got: &Received,
    jwks: &JwkSet,
    alg: Algorithm,
    n: usize,
    pick: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let mut found = Vec::new();
        for (head, body) in pushes(got) {
            assert!(head.starts_with("post /ssf/push "), "{head}");
            assert!(
                head.contains("content-type: application/secevent+jwt"),
                "{head}"
            );
            assert!(head.contains("accept: application/json"), "{head}");
            assert!(
                head.contains("authorization: bearer crm-push-bearer"),
                "{head}"
            );
            let claims = verify(body.trim(), jwks, alg);
            if pick(&claims) {
                found.push(claims);
            }
        }
        if found.len() >= n {
            return found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} of {n} tokens after 30 s: {found:?}",
            found.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Verifies a token: header (`typ`, `alg`, `kid`), signature with the key the
/// JWKS names, `iss` and `aud`; returns the claims.
fn verify(token: &str, jwks: &JwkSet, alg: Algorithm) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    assert_eq!(header.alg, alg);
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("the token's kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.set_audience(&[AUDIENCE]);
    v.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap_or_else(|e| panic!("token does not verify: {e}"))
        .claims
}

fn fetch_jwks(port: u16) -> JwkSet {
    let (status, body) = http(port, "GET", "/.well-known/jwks.json", None, "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    for k in v["keys"].as_array().unwrap() {
        assert!(k.get("d").is_none(), "no private part is published: {k}");
    }
    serde_json::from_value(v).unwrap()
}

/// The two events of one person's tokens, each checked: subject, issuer,
/// audience, `iat` close to the real time (the wall clock signs), unique
/// `jti`, shared `txn`, `toe` and the event's timestamp, the initiating entity.
fn check_pair(claims: &[Value], email: &str, initiating: &str, reason: Option<&str>) {
    assert_eq!(claims.len(), 2, "{claims:?}");
    let mut uris = Vec::new();
    let now = chrono::Utc::now().timestamp();
    for c in claims {
        assert_eq!(c["iss"], ISSUER);
        assert_eq!(c["aud"], AUDIENCE);
        assert!((c["iat"].as_i64().unwrap() - now).abs() < 120, "{c}");
        assert_eq!(c["jti"].as_str().unwrap().len(), 32, "{c}");
        assert_eq!(
            c["sub_id"],
            serde_json::json!({"format": "email", "email": email})
        );
        let events = c["events"].as_object().unwrap();
        assert_eq!(events.len(), 1, "one event per token: {c}");
        let (uri, body) = events.iter().next().unwrap();
        uris.push(uri.clone());
        assert!(body["event_timestamp"].as_i64().unwrap() > 0, "{c}");
        assert_eq!(c["toe"], body["event_timestamp"], "{c}");
        assert_eq!(body["initiating_entity"], initiating, "{c}");
        if let Some(r) = reason {
            assert_eq!(body["reason_admin"]["en"], r, "{c}");
        }
    }
    uris.sort();
    assert_eq!(uris, [SESSION_REVOKED, ACCOUNT_DISABLED]);
    assert_ne!(
        claims[0]["jti"], claims[1]["jti"],
        "jti is unique per token"
    );
    assert_eq!(claims[0]["txn"], claims[1]["txn"], "txn is the event's");
    assert!(!claims[0]["txn"].as_str().unwrap().is_empty());
}

fn about(email: &str) -> impl Fn(&Value) -> bool + '_ {
    move |c: &Value| c["sub_id"]["email"] == email
}

/// Suspended over the API and a leaver from HR: both reach the receiver as
/// signed tokens that verify with the served JWKS.
fn set_end_to_end(algorithm: &str, pem: &str, alg: Algorithm, kty: &str) {
    let org = Org::new();
    let (port, got) = receiver();
    security_events(&org, algorithm, pem, port);
    org.run(&["check"]).ok();
    let security = token(&org, "security", "suspend");
    let svc = start(&org, "2026-11-01");
    let jwks = fetch_jwks(svc.port);
    assert_eq!(jwks.keys.len(), 1);
    let published = serde_json::to_value(&jwks.keys[0]).unwrap();
    assert_eq!(published["kid"], format!("acme-{algorithm}"));
    assert_eq!(published["kty"], kty);
    assert_eq!(published["alg"], algorithm);
    assert_eq!(published["use"], "sig");
    // Joiners of the first import are no security event.
    assert!(pushes(&got).is_empty(), "{:?}", pushes(&got));

    // A suspension over the HTTP API, with a token scoped `suspend`.
    let (status, text) = http(
        svc.port,
        "POST",
        "/api/v1/identities/E1016/suspend",
        Some(&security),
        r#"{"reason": "credentials phished"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let suspended = wait_for(&got, &jwks, alg, 2, about("dennis.ritchie@acme.example"));
    check_pair(
        &suspended,
        "dennis.ritchie@acme.example",
        "admin",
        Some("credentials phished"),
    );

    // HR terminates Karen Jones today: the service imports the changed
    // export by itself, deprovisions her and tells the receiver.
    let hr = org.path("hr/2026-11-01.csv");
    let text = std::fs::read_to_string(&hr).unwrap();
    let changed: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("E1030,") {
                assert!(l.ends_with(','), "no termination date yet: {l}");
                format!("{l}2026-11-01")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_ne!(
        changed.join("\n"),
        text.trim_end(),
        "E1030 is in the export"
    );
    std::fs::write(&hr, changed.join("\n") + "\n").unwrap();
    let leaver = wait_for(&got, &jwks, alg, 2, about("karen.jones@acme.example"));
    check_pair(&leaver, "karen.jones@acme.example", "policy", None);
    assert_ne!(leaver[0]["txn"], suspended[0]["txn"]);
    // Every push verified; none for anyone else.
    assert_eq!(pushes(&got).len(), 4, "{:?}", pushes(&got));
    drop(svc);
}

#[test]
fn set_pushed_by_serve_es256_verifies_with_the_served_jwks() {
    set_end_to_end("ES256", EC_KEY, Algorithm::ES256, "EC");
}

#[test]
fn set_pushed_by_serve_rs256_verifies_with_the_served_jwks() {
    set_end_to_end("RS256", RSA_KEY, Algorithm::RS256, "RSA");
}

/// Each unreadable secret stops `tenure serve` at once, with an error that
/// names the reference (and never a secret's value).
#[test]
fn serve_refuses_to_start_when_a_notification_secret_is_unreadable() {
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "webhook secret file missing",
            "[[webhook]]\nid = \"siem\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret = { file = \"secrets/missing-hmac\" }\n",
            &["webhook", "secret", "secrets/missing-hmac"],
        ),
        (
            "webhook secret variable unset",
            "[[webhook]]\nid = \"siem\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret = { env = \"TENURE_TEST_UNSET_HMAC\" }\n",
            &["webhook", "secret", "TENURE_TEST_UNSET_HMAC", "not set"],
        ),
        (
            "signing key file missing",
            &format!(
                "[security_events]\nissuer = \"{ISSUER}\"\nsigning_key = {{ file = \"keys/absent.pem\" }}\nkey_id = \"k1\"\n\n[[security_events.receiver]]\nid = \"crm\"\nurl = \"http://127.0.0.1:9/ssf\"\naudience = \"{AUDIENCE}\"\nsubject = {{ format = \"email\" }}\n"
            ),
            &["signing_key", "keys/absent.pem"],
        ),
        (
            "signing key variable unset",
            &format!(
                "[security_events]\nissuer = \"{ISSUER}\"\nsigning_key = {{ env = \"TENURE_TEST_UNSET_SET_KEY\" }}\nkey_id = \"k1\"\n\n[[security_events.receiver]]\nid = \"crm\"\nurl = \"http://127.0.0.1:9/ssf\"\naudience = \"{AUDIENCE}\"\nsubject = {{ format = \"email\" }}\n"
            ),
            &["signing_key", "TENURE_TEST_UNSET_SET_KEY", "not set"],
        ),
    ];
    for (what, extra, needles) in cases {
        let org = Org::new();
        // A readable secret beside the broken one: its value is never printed.
        std::fs::write(org.path("config/audit-hmac"), "do-not-print-me\n").unwrap();
        configure(
            &org,
            &format!(
                "[[webhook]]\nid = \"audit\"\nurl = \"http://127.0.0.1:9/audit\"\nsecret = {{ file = \"audit-hmac\" }}\n\n{extra}"
            ),
        );
        org.run(&["check"]).ok();
        let r = org
            .command(&["--now", "2026-11-01", "serve", "--listen", "127.0.0.1:0"])
            .env_remove("TENURE_TEST_UNSET_HMAC")
            .env_remove("TENURE_TEST_UNSET_SET_KEY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr);
        let stdout = String::from_utf8_lossy(&r.stdout);
        assert!(!r.status.success(), "{what}: started\n{stdout}\n{stderr}");
        assert!(
            !stdout.contains("listening on"),
            "{what}: listened before failing\n{stdout}"
        );
        for n in needles {
            assert!(stderr.contains(n), "{what}: {n:?} not in\n{stderr}");
        }
        assert!(!stderr.contains("do-not-print-me"), "{what}: {stderr}");
    }
}
