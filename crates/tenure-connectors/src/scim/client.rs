//! HTTP for the SCIM connector: authentication, the request-rate limit,
//! waiting out `429 Too Many Requests`, and reading SCIM error bodies.
//!
//! [`Http::send`] returns every answer the service gave (the caller decides
//! what a 404 or a 409 means) and fails only when no usable answer came: the
//! connection failed, the request timed out, the service kept answering 429
//! for longer than `max_retry_wait_seconds`, or an OAuth 2.0 token could not
//! be had. A 401 with OAuth 2.0 fetches a new token and tries once more.
//!
//! It does not retry anything else (the engine's queue does), does not follow
//! redirects, and never puts a secret in an error, a log line or `Debug`.

use super::settings::{AuthSetting, ClientAuth, SecretSource, Settings};
use serde_json::Value;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// A secret read from its reference: shown as `***`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads a secret reference (a file is relative to `config_dir`); the error
/// names the reference, never the value.
pub(crate) fn read_secret(
    key: &str,
    src: &SecretSource,
    config_dir: &Path,
) -> Result<Secret, String> {
    let v = match src {
        SecretSource::Env(var) => std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("settings.auth.{key}: environment variable {var} is not set")
            }
            std::env::VarError::NotUnicode(_) => {
                format!("settings.auth.{key}: environment variable {var} is not valid UTF-8")
            }
        })?,
        SecretSource::File(file) => {
            let path = config_dir.join(file);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("settings.auth.{key}: cannot read {}: {e}", path.display()))?
        }
    };
    let v = v.trim().to_owned();
    if v.is_empty() {
        return Err(format!("settings.auth.{key}: the {src} is empty"));
    }
    Ok(Secret(v))
}

/// An access token and when to stop using it.
struct Token {
    value: Secret,
    refresh_at: Option<Instant>,
}

enum Auth {
    Bearer(Secret),
    Basic {
        user: String,
        password: Secret,
    },
    OAuth2 {
        token_url: reqwest::Url,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
        client_auth: ClientAuth,
        token: tokio::sync::Mutex<Option<Token>>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
            Auth::Basic { user, .. } => write!(f, "Basic({user:?}, ***)"),
            Auth::OAuth2 {
                token_url,
                client_id,
                ..
            } => write!(f, "OAuth2({token_url}, {client_id:?}, ***)"),
        }
    }
}

/// A token bucket of one: requests are spaced `interval` apart, and a 429
/// pauses every request of the system.
#[derive(Debug)]
struct Limiter {
    interval: Option<Duration>,
    next: std::sync::Mutex<Instant>,
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn wait(&self) {
        let at = {
            let mut next = self.lock();
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval.unwrap_or_default();
            slot
        };
        tokio::time::sleep_until(at).await;
    }

    fn pause(&self, d: Duration) {
        let mut next = self.lock();
        *next = (*next).max(Instant::now() + d);
    }
}

/// Why no usable answer came.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) status: Option<u16>,
    pub(crate) transient: bool,
    pub(crate) retry_after: Option<Duration>,
}

/// An answer of the service.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// The body as JSON (`Null` when empty or not JSON).
    pub(crate) body: Value,
    /// The body when it was not JSON (the start of it), for messages.
    pub(crate) text: String,
    pub(crate) location: Option<String>,
    pub(crate) etag: Option<String>,
    pub(crate) retry_after: Option<Duration>,
}

impl Reply {
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The SCIM error's `scimType`.
    pub(crate) fn scim_type(&self) -> Option<&str> {
        self.body.get("scimType").and_then(Value::as_str)
    }

    /// The answer as a failure: status, `scimType` and `detail` (or the
    /// start of a non-SCIM body). 429 and 5xx are transient.
    pub(crate) fn failure(&self) -> Failure {
        let reason = reqwest::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut message = format!("HTTP {} {reason}", self.status);
        match (
            self.scim_type(),
            self.body.get("detail").and_then(Value::as_str),
        ) {
            (None, None) if !self.text.is_empty() => {
                message.push_str(": ");
                message.push_str(&self.text);
            }
            (t, d) => {
                if let Some(t) = t {
                    message.push_str(&format!(" (scimType {t})"));
                }
                if let Some(d) = d {
                    message.push_str(": ");
                    message.push_str(d);
                }
            }
        }
        if self.status == 401 {
            message.push_str(" — the service refused the credentials in settings.auth");
        }
        if let Some(d) = self.retry_after {
            message.push_str(&format!(" (Retry-After {} s)", d.as_secs()));
        }
        Failure {
            message,
            status: Some(self.status),
            transient: self.status == 429 || self.status >= 500,
            retry_after: self.retry_after,
        }
    }
}

/// The HTTP side of one SCIM system.
#[derive(Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: reqwest::Url,
    auth: Auth,
    limiter: Limiter,
    max_retry_wait: Duration,
    requests: AtomicU64,
    token_requests: AtomicU64,
}

const MAX_TEXT: usize = 300;
const SCIM_JSON: &str = "application/scim+json";

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("settings.ca_file: cannot read {}: {e}", path.display()))?;
        let mut n = 0;
        for c in certs {
            let c = c.map_err(|e| format!("settings.ca_file: {}: {e}", path.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("settings.ca_file: {}: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!(
                "settings.ca_file: {} holds no certificate",
                path.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Parses `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs.unsigned_abs()))
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Describes a transport error without its URL (which may carry nothing
/// secret, but is long) and with its causes.
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

impl Http {
    pub(crate) fn new(settings: &Settings, config_dir: &Path) -> Result<Http, String> {
        let auth = match &settings.auth {
            AuthSetting::Bearer { token } => Auth::Bearer(read_secret("token", token, config_dir)?),
            AuthSetting::Basic { user, password } => Auth::Basic {
                user: user.clone(),
                password: read_secret("password", password, config_dir)?,
            },
            AuthSetting::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                client_auth,
            } => Auth::OAuth2 {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: read_secret("client_secret", client_secret, config_dir)?,
                scope: scope.clone(),
                client_auth: *client_auth,
                token: tokio::sync::Mutex::new(None),
            },
        };
        let ca = settings.ca_file.as_ref().map(|f| config_dir.join(f));
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(ca.as_deref())?)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tenure/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make the HTTP client: {}", describe(&e)))?;
        Ok(Http {
            client,
            base: settings.base_url.clone(),
            auth,
            limiter: Limiter {
                interval: settings
                    .requests_per_second
                    .map(|r| Duration::from_secs_f64(1.0 / r)),
                next: std::sync::Mutex::new(Instant::now()),
            },
            max_retry_wait: settings.max_retry_wait,
            requests: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
        })
    }

    /// SCIM requests sent so far (token requests not included).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// OAuth 2.0 token requests sent so far.
    pub(crate) fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// The URL of an endpoint (`/Users`) and further path segments (an id,
    /// percent-encoded).
    pub(crate) fn url(&self, endpoint: &str, id: Option<&str>) -> reqwest::Url {
        let mut u = self.base.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty();
            for s in endpoint.split('/').filter(|s| !s.is_empty()) {
                segs.push(s);
            }
            if let Some(id) = id {
                segs.push(id);
            }
        }
        u
    }

    /// The base URL, for messages.
    pub(crate) fn base(&self) -> &reqwest::Url {
        &self.base
    }

    async fn bearer(&self, renew: bool) -> Result<Option<Secret>, Failure> {
        let Auth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
            client_auth,
            token,
        } = &self.auth
        else {
            return Ok(None);
        };
        let mut cached = token.lock().await;
        if !renew
            && let Some(t) = cached.as_ref()
            && t.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(Some(t.value.clone()));
        }
        *cached = None;
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let mut req = self
            .client
            .post(token_url.clone())
            .header("Accept", "application/json");
        match client_auth {
            ClientAuth::Basic => req = req.basic_auth(client_id, Some(&client_secret.0)),
            ClientAuth::Post => {
                form.push(("client_id", client_id));
                form.push(("client_secret", &client_secret.0));
            }
        }
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let fail = |message: String, status: Option<u16>, transient: bool| Failure {
            message: format!("OAuth 2.0 token endpoint {token_url}: {message}"),
            status,
            transient,
            retry_after: None,
        };
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| fail(describe(&e), None, true))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| fail(describe(&e), Some(status), true))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let err = body.get("error").and_then(Value::as_str);
            let desc = body.get("error_description").and_then(Value::as_str);
            let mut m = format!("HTTP {status}");
            if let Some(e) = err {
                m.push_str(&format!(": {e}"));
            }
            if let Some(d) = desc {
                m.push_str(&format!(": {d}"));
            }
            if err.is_none() && desc.is_none() && !text.trim().is_empty() {
                m.push_str(&format!(": {}", truncate(&text)));
            }
            return Err(fail(m, Some(status), status == 429 || status >= 500));
        }
        let Some(access) = body.get("access_token").and_then(Value::as_str) else {
            return Err(fail(
                "the answer holds no access_token".into(),
                Some(status),
                false,
            ));
        };
        // Refresh a minute before expiry (or at half the lifetime when shorter).
        let refresh_at = body.get("expires_in").and_then(Value::as_u64).map(|s| {
            let life = Duration::from_secs(s);
            Instant::now() + life - Duration::from_secs(60).min(life / 2)
        });
        let t = Secret(access.to_owned());
        *cached = Some(Token {
            value: t.clone(),
            refresh_at,
        });
        Ok(Some(t))
    }

    /// Sends one request and returns the service's answer, whatever its
    /// status (see the module documentation for what fails instead).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, Failure> {
        let mut waited = Duration::ZERO;
        let mut renewed = false;
        loop {
            let token = self.bearer(false).await?;
            self.limiter.wait().await;
            let reply = self
                .once(&method, &url, query, body, if_match, token.as_ref())
                .await?;
            if reply.status == 401 && token.is_some() && !renewed {
                renewed = true;
                self.bearer(true).await?;
                continue;
            }
            if reply.status == 429 {
                let delay = reply.retry_after.unwrap_or(Duration::from_secs(1));
                self.limiter.pause(delay);
                if waited + delay <= self.max_retry_wait {
                    tracing::debug!(url = %url, delay_ms = delay.as_millis() as u64, "429 Too Many Requests; waiting");
                    tokio::time::sleep(delay).await;
                    waited += delay;
                    continue;
                }
            }
            return Ok(reply);
        }
    }

    async fn once(
        &self,
        method: &reqwest::Method,
        url: &reqwest::Url,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
        token: Option<&Secret>,
    ) -> Result<Reply, Failure> {
        let mut req = self
            .client
            .request(method.clone(), url.clone())
            .header("Accept", format!("{SCIM_JSON}, application/json"));
        if !query.is_empty() {
            req = req.query(query);
        }
        match (&self.auth, token) {
            (_, Some(t)) => req = req.bearer_auth(&t.0),
            (Auth::Bearer(t), None) => req = req.bearer_auth(&t.0),
            (Auth::Basic { user, password }, None) => req = req.basic_auth(user, Some(&password.0)),
            (Auth::OAuth2 { .. }, None) => {}
        }
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b).unwrap_or_default();
            req = req.header("Content-Type", SCIM_JSON).body(bytes);
        }
        if let Some(e) = if_match {
            req = req.header("If-Match", e);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = req.send().await.map_err(|e| Failure {
            message: describe(&e),
            status: None,
            transient: true,
            retry_after: None,
        })?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let etag = header("etag");
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v));
        let bytes = resp.bytes().await.map_err(|e| Failure {
            message: format!("HTTP {status}, then the answer broke off: {}", describe(&e)),
            status: Some(status),
            transient: true,
            retry_after: None,
        })?;
        let (body, text) = if bytes.is_empty() {
            (Value::Null, String::new())
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => (v, String::new()),
                Err(_) => (Value::Null, truncate(&String::from_utf8_lossy(&bytes))),
            }
        };
        Ok(Reply {
            status,
            body,
            text,
            location,
            etag,
            retry_after,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn failures_quote_the_scim_error() {
        let r = Reply {
            status: 409,
            body: serde_json::json!({"scimType": "uniqueness", "detail": "taken"}),
            text: String::new(),
            location: None,
            etag: None,
            retry_after: None,
        };
        let f = r.failure();
        assert_eq!(f.message, "HTTP 409 Conflict (scimType uniqueness): taken");
        assert!(!f.transient);
        let r = Reply {
            status: 503,
            body: Value::Null,
            text: "<html>down</html>".into(),
            location: None,
            etag: None,
            retry_after: Some(Duration::from_secs(7)),
        };
        let f = r.failure();
        assert!(f.transient);
        assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
        assert!(f.message.contains("<html>down</html>"), "{}", f.message);
    }

    #[test]
    fn secrets_do_not_show() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "***");
        let a = Auth::Basic {
            user: "u".into(),
            password: Secret("hunter2".into()),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
