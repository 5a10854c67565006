//! A small pool of bound LDAP connections, and the classification of LDAP
//! failures into transient and permanent.
//!
//! Each connection multiplexes many operations (LDAP is asynchronous: one
//! connection carries any number of outstanding requests), so the pool is a
//! few connections handed out round-robin, each connected and bound lazily
//! and replaced when it closes. The pool does not retry: a lost connection
//! fails the operations that were on it (transient) and the next request
//! connects again.

use super::settings::{Secret, Settings};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A password: shown as `***` in every `Debug` output.
#[derive(Clone)]
pub(crate) struct Password(String);

impl Password {
    pub(crate) fn new(s: String) -> Password {
        Password(s)
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads a secret reference (an environment variable, or a file relative to
/// `config_dir`); the error names the reference, never the secret.
pub(crate) fn resolve_secret(s: &Secret, key: &str, config_dir: &Path) -> Result<Password, String> {
    match s {
        Secret::Env(var) => match std::env::var(var) {
            Ok(v) => Ok(Password::new(v.trim_end_matches(['\r', '\n']).to_owned())),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "settings.{key}: environment variable {var} is not set"
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "settings.{key}: environment variable {var} is not valid UTF-8"
            )),
        },
        Secret::File(file) => {
            let path = config_dir.join(file);
            std::fs::read_to_string(&path)
                .map(|v| Password::new(v.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| format!("settings.{key}: cannot read {}: {e}", path.display()))
        }
    }
}

/// Why an LDAP request failed: the server's result code and text, or why no
/// answer came.
#[derive(Debug, Clone)]
pub(crate) struct Fail {
    /// The LDAP result code, when the server answered.
    pub(crate) code: Option<u32>,
    /// For an operator: the code's name and the server's diagnostic text, or the connection problem.
    pub(crate) message: String,
    /// Whether trying again later may succeed.
    pub(crate) transient: bool,
}

/// Result codes.
pub(crate) mod rc {
    pub(crate) const TIME_LIMIT_EXCEEDED: u32 = 3;
    pub(crate) const NO_SUCH_ATTRIBUTE: u32 = 16;
    pub(crate) const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
    pub(crate) const NO_SUCH_OBJECT: u32 = 32;
    pub(crate) const BUSY: u32 = 51;
    pub(crate) const UNAVAILABLE: u32 = 52;
    pub(crate) const UNWILLING_TO_PERFORM: u32 = 53;
    pub(crate) const OBJECT_CLASS_VIOLATION: u32 = 65;
    pub(crate) const ENTRY_ALREADY_EXISTS: u32 = 68;
}

/// The standard name of a result code (RFC 4511 appendix A).
pub(crate) fn code_name(code: u32) -> &'static str {
    match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        71 => "affectsMultipleDSAs",
        80 => "other",
        _ => "unknown result code",
    }
}

impl Fail {
    /// A failure found by the connector itself (a malformed answer …).
    pub(crate) fn local(message: impl Into<String>, transient: bool) -> Fail {
        Fail {
            code: None,
            message: message.into(),
            transient,
        }
    }

    /// Whether the server answered with this result code.
    pub(crate) fn is(&self, code: u32) -> bool {
        self.code == Some(code)
    }

    /// A result code as a failure.
    pub(crate) fn from_code(code: u32, text: &str, matched: &str) -> Fail {
        let mut message = format!("the server answered {code} ({})", code_name(code));
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if !text.is_empty() {
            message.push_str(&format!(": {text}"));
        }
        if code == rc::NO_SUCH_OBJECT && !matched.is_empty() {
            message.push_str(&format!(" (the closest existing entry is {matched})"));
        }
        Fail {
            code: Some(code),
            message,
            transient: matches!(code, rc::TIME_LIMIT_EXCEEDED | rc::BUSY | rc::UNAVAILABLE),
        }
    }
}

impl From<LdapError> for Fail {
    fn from(e: LdapError) -> Fail {
        match e {
            LdapError::LdapResult { result } => {
                Fail::from_code(result.rc, &result.text, &result.matched)
            }
            LdapError::Io { source } => {
                // A TLS handshake or certificate failure shows up as invalid data:
                // trying again will not help.
                let transient = !matches!(
                    source.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
                );
                Fail::local(format!("connection error: {source}"), transient)
            }
            LdapError::Timeout { .. } => Fail::local(
                "no answer within the operation timeout (settings.operation_timeout_seconds)",
                true,
            ),
            LdapError::OpSend { .. }
            | LdapError::ResultRecv { .. }
            | LdapError::IdScrubSend { .. }
            | LdapError::MiscSend { .. }
            | LdapError::EndOfStream => {
                Fail::local("the connection was lost before the server answered", true)
            }
            LdapError::Rustls { source } => Fail::local(format!("TLS error: {source}"), false),
            other => Fail::local(other.to_string(), false),
        }
    }
}

/// The result of a request as `Ok`, or its failure.
pub(crate) fn check(r: Result<ldap3::LdapResult, LdapError>) -> Result<(), Fail> {
    let r = r?;
    if r.rc == 0 {
        Ok(())
    } else {
        Err(Fail::from_code(r.rc, &r.text, &r.matched))
    }
}

/// Builds ldap3's connection settings: timeouts, StartTLS and the TLS trust.
pub(crate) fn conn_settings(s: &Settings, config_dir: &Path) -> Result<LdapConnSettings, String> {
    let mut cs = LdapConnSettings::new()
        .set_conn_timeout(s.connect_timeout)
        .set_starttls(s.starttls);
    if s.tls_insecure_skip_verify {
        cs = cs.set_no_tls_verify(true);
    }
    if let Some(file) = &s.tls_ca_file {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let path = config_dir.join(file);
        let pem = std::fs::read(&path)
            .map_err(|e| format!("settings.tls_ca_file: cannot read {}: {e}", path.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                format!(
                    "settings.tls_ca_file: {} is not a PEM certificate file: {e}",
                    path.display()
                )
            })?;
            roots.add(cert).map_err(|e| {
                format!(
                    "settings.tls_ca_file: a certificate in {} is unusable: {e}",
                    path.display()
                )
            })?;
        }
        if roots.is_empty() {
            return Err(format!(
                "settings.tls_ca_file: {} holds no PEM certificate",
                path.display()
            ));
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cs = cs.set_config(Arc::new(config));
    }
    Ok(cs)
}

/// The pool.
pub(crate) struct Pool {
    url: String,
    conn_settings: LdapConnSettings,
    bind_dn: String,
    password: Password,
    op_timeout: Duration,
    slots: Vec<tokio::sync::Mutex<Option<Ldap>>>,
    next: AtomicUsize,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("size", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// Where a connection attempt failed.
#[derive(Debug, Clone)]
pub(crate) enum ConnectFail {
    /// Connecting (TCP, TLS, StartTLS).
    Connect(Fail),
    /// Binding.
    Bind(Fail),
}

impl Pool {
    pub(crate) fn new(
        url: String,
        conn_settings: LdapConnSettings,
        bind_dn: String,
        password: Password,
        op_timeout: Duration,
        size: usize,
    ) -> Pool {
        Pool {
            url,
            conn_settings,
            bind_dn,
            password,
            op_timeout,
            slots: (0..size.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn bind_dn(&self) -> &str {
        &self.bind_dn
    }

    /// Opens a new bound connection (not pooled).
    pub(crate) async fn connect(&self) -> Result<Ldap, ConnectFail> {
        let (conn, mut ldap) = LdapConnAsync::with_settings(self.conn_settings.clone(), &self.url)
            .await
            .map_err(|e| ConnectFail::Connect(Fail::from(e)))?;
        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(url = %url, error = %e, "LDAP connection ended");
            }
        });
        let bound = ldap
            .with_timeout(self.op_timeout)
            .simple_bind(&self.bind_dn, self.password.expose())
            .await;
        match check(bound) {
            Ok(()) => Ok(ldap),
            Err(f) => {
                let _ = ldap.unbind().await;
                Err(ConnectFail::Bind(f))
            }
        }
    }

    /// A bound connection from the pool (connecting if its slot is empty or closed).
    pub(crate) async fn get(&self) -> Result<Ldap, ConnectFail> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let Some(slot) = self.slots.get(i) else {
            return Err(ConnectFail::Connect(Fail::local(
                "the connection pool is empty",
                false,
            )));
        };
        let mut slot = slot.lock().await;
        if let Some(l) = slot.as_mut()
            && !l.is_closed()
        {
            return Ok(l.clone());
        }
        *slot = None;
        let l = self.connect().await?;
        *slot = Some(l.clone());
        Ok(l)
    }

    /// Closes every pooled connection.
    pub(crate) async fn close(&self) {
        for s in &self.slots {
            if let Some(mut l) = s.lock().await.take() {
                let _ = l.unbind().await;
            }
        }
    }

    pub(crate) fn op_timeout(&self) -> Duration {
        self.op_timeout
    }
}
