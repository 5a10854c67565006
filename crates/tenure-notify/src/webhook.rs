//! Webhooks and SET push over HTTP: signing, sending, and what an answer means.
//!
//! A webhook is a `POST` of the JSON message with these headers:
//!
//! - `Tenure-Signature: t=UNIX,v1=HEX`: HMAC-SHA256, keyed with the
//!   webhook's secret, over `UNIX.BODY` (the send time in Unix seconds, a
//!   dot, and the exact body bytes). Receivers recompute it, compare in
//!   constant time, and reject a `t` too far from their clock (replays);
//!   [`verify_signature`] does exactly that.
//! - `Tenure-Delivery: ID`: the message's id, the same on every retry, for
//!   deduplication.
//!
//! 2xx is delivered; 408, 429, 5xx, a timeout or no connection are retried;
//! any other status is a refusal (the message failed for good).
//!
//! A security event token is pushed as RFC 8935 says: `POST` with
//! `Content-Type: application/secevent+jwt` and `Accept: application/json`,
//! and a bearer token when the receiver has one. 202 (or any 2xx) is
//! delivered; 400 is a refusal whose `{"err", "description"}` body is kept as
//! the error; anything else, and no answer, is retried.
//!
//! No redirect is followed, and no secret appears in an error.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "Tenure-Signature";
/// The delivery id header.
pub const DELIVERY_HEADER: &str = "Tenure-Delivery";

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The receiver accepted it.
    Delivered,
    /// Worth trying again later.
    Retry(String),
    /// Refused: trying again would not help.
    Refused(String),
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<HmacSha256> {
    // HMAC accepts keys of any length, so this is always Some.
    let mut m = HmacSha256::new_from_slice(secret).ok()?;
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    Some(m)
}

/// The `Tenure-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<String> {
    let tag = mac(secret, timestamp, body)?.finalize().into_bytes();
    Some(format!("t={timestamp},v1={}", hex::encode(tag)))
}

/// Checks a `Tenure-Signature` header: a `v1` that matches (compared in
/// constant time) and a `t` within `tolerance_seconds` of `now` (Unix seconds).
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance_seconds {
        return false;
    }
    sigs.iter()
        .any(|s| mac(secret, t, body).is_some_and(|m| m.verify_slice(s).is_ok()))
}

/// The HTTP client every webhook and SET receiver shares: rustls with the
/// ring provider and the system's trusted CAs, no redirects.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for c in found.certs {
        // A certificate the store cannot use is skipped, as browsers do.
        let _ = roots.add(c);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("tenure/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot make the HTTP client: {}", describe(&e)))
}

/// One configured webhook called directly, not through the outbox: for work
/// that is done only when the receiver answers 2xx (the `archive`
/// deprovisioning step on a system with `archive_webhook`; the queue that
/// holds the operation retries it). Signed exactly as notifications are.
pub struct WebhookCall {
    id: String,
    client: reqwest::Client,
    url: String,
    secret: crate::secret::Secret,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCall")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Why a direct webhook call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// What happened (the status and the receiver's answer, or why no answer came).
    pub message: String,
    /// Whether trying again later may succeed (no answer, a timeout, 408, 429, 5xx).
    pub transient: bool,
}

impl WebhookCall {
    /// Reads the webhook's secret (relative to `config_dir` for a file) and
    /// makes its HTTP client.
    pub fn new(
        config: &tenure_core::config::WebhookConfig,
        config_dir: &std::path::Path,
    ) -> Result<WebhookCall, crate::NotifyError> {
        let secret = crate::secret::read(
            &format!("webhook {}: secret", config.id),
            &config.secret,
            config_dir,
            true,
        )?;
        Ok(WebhookCall {
            id: config.id.clone(),
            client: client().map_err(crate::NotifyError::Config)?,
            url: config.url.get_ref().clone(),
            secret,
            timeout: Duration::from_secs(config.timeout_seconds.max(1)),
        })
    }

    /// The webhook's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// POSTs `body`, signed at `now` (Unix seconds), with `delivery_id` as
    /// `Tenure-Delivery` (the same on every retry). `Ok` only on a 2xx answer.
    pub async fn post(&self, delivery_id: &str, body: &str, now: i64) -> Result<(), CallFailure> {
        match post_webhook(
            &self.client,
            &self.url,
            self.secret.expose().as_bytes(),
            delivery_id,
            body,
            now,
            self.timeout,
        )
        .await
        {
            Outcome::Delivered => Ok(()),
            Outcome::Retry(message) => Err(CallFailure {
                message,
                transient: true,
            }),
            Outcome::Refused(message) => Err(CallFailure {
                message,
                transient: false,
            }),
        }
    }
}

/// POSTs a signed webhook message.
pub(crate) async fn post_webhook(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    delivery_id: &str,
    body: &str,
    now: i64,
    timeout: Duration,
) -> Outcome {
    let Some(sig) = signature(secret, now, body.as_bytes()) else {
        return Outcome::Refused("cannot compute the HMAC signature".into());
    };
    let sent = client
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sig)
        .header(DELIVERY_HEADER, delivery_id)
        .body(body.to_owned())
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(describe(&e)),
    };
    let status = resp.status();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let text = short(&resp.text().await.unwrap_or_default());
    let what = format!(
        "HTTP {status}{}",
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    );
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        Outcome::Retry(what)
    } else {
        Outcome::Refused(what)
    }
}

/// Pushes a security event token (RFC 8935).
pub(crate) async fn push_set(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    token: &str,
    timeout: Duration,
) -> Outcome {
    let mut req = client
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/secevent+jwt")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(token.to_owned());
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(describe(&e)),
    };
    let status = resp.status();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let text = resp.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::BAD_REQUEST {
        // RFC 8935 §2.3: {"err": "invalid_key", "description": "…"}.
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let err = v.get("err")?.as_str()?.to_owned();
                let desc = v
                    .get("description")
                    .and_then(|d| d.as_str())
                    .map(|d| format!(": {}", short(d)))
                    .unwrap_or_default();
                Some(format!("{err}{desc}"))
            })
            .unwrap_or_else(|| short(&text));
        return Outcome::Refused(format!("HTTP 400: {detail}"));
    }
    let text = short(&text);
    Outcome::Retry(format!(
        "HTTP {status}{}",
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    ))
}

fn short(s: &str) -> String {
    const MAX: usize = 300;
    let s = s.trim();
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A transport error with its causes (which never hold a secret).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let mut msg = what.to_owned();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let h = signature(b"k", 1_000, b"{}").unwrap_or_default();
        assert!(h.starts_with("t=1000,v1="));
        assert!(verify_signature(b"k", &h, b"{}", 1_100, 300));
        assert!(!verify_signature(b"k", &h, b"{}", 1_400, 300), "too old");
        assert!(!verify_signature(b"other", &h, b"{}", 1_000, 300));
        assert!(!verify_signature(b"k", &h, b"{ }", 1_000, 300));
        assert!(!verify_signature(b"k", "v1=00", b"{}", 1_000, 300));
    }
}
