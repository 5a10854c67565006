//! Database URLs: which dialect, whether they hold a password, how to show
//! them without it, and where a relative SQLite path points.
//!
//! This module does not open connections and does not resolve secret
//! references (see `settings`); it only looks at the text of a URL.

use super::dialect::Dialect;
use std::fmt;
use std::path::Path;

/// Query parameters whose value is a secret.
const SECRET_PARAMS: &[&str] = &["password", "pass", "pwd", "sslpassword"];

/// A database URL that may contain a password: its `Debug` and `Display`
/// show it redacted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DbUrl(String);

impl DbUrl {
    pub(crate) fn new(url: String) -> DbUrl {
        DbUrl(url)
    }

    /// The URL itself, for the driver only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub(crate) fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({:?})", self.redacted())
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The dialect a URL's scheme names.
pub(crate) fn dialect_of(url: &str) -> Option<Dialect> {
    let scheme = url.split_once(':')?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => Some(Dialect::Sqlite),
        "postgres" | "postgresql" => Some(Dialect::Postgres),
        "mysql" | "mariadb" => Some(Dialect::MySql),
        _ => None,
    }
}

/// The parts of a network URL: `scheme://[userinfo@]host[/path][?query][#frag]`.
struct Parts<'a> {
    prefix: &'a str,
    userinfo: Option<&'a str>,
    hostpath: &'a str,
    query: Option<&'a str>,
}

fn split(url: &str) -> Option<Parts<'_>> {
    let idx = url.find("://")?;
    let (prefix, rest) = url.split_at(idx + 3);
    let rest = rest.split('#').next().unwrap_or(rest);
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let authority = before_query.get(..authority_end).unwrap_or(before_query);
    let (userinfo, hostpath) = match authority.rfind('@') {
        Some(at) => (
            authority.get(..at),
            before_query.get(at + 1..).unwrap_or_default(),
        ),
        None => (None, before_query),
    };
    Some(Parts {
        prefix,
        userinfo,
        hostpath,
        query,
    })
}

/// Whether a network URL carries a password (in its user info or a query parameter).
pub(crate) fn has_password(url: &str) -> bool {
    if dialect_of(url) == Some(Dialect::Sqlite) {
        return false;
    }
    let Some(p) = split(url) else {
        return false;
    };
    let in_userinfo = p
        .userinfo
        .and_then(|u| u.split_once(':'))
        .is_some_and(|(_, pw)| !pw.is_empty());
    let in_query = p.query.is_some_and(|q| {
        q.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) && !v.is_empty()
        })
    });
    in_userinfo || in_query
}

/// The URL with passwords (user info and secret query parameters) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    if dialect_of(url) == Some(Dialect::Sqlite) {
        return url.to_owned();
    }
    let Some(p) = split(url) else {
        // Not a URL we understand: show only its scheme.
        return match url.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:***"),
            None => "***".to_owned(),
        };
    };
    let mut out = String::from(p.prefix);
    if let Some(u) = p.userinfo {
        match u.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***@");
            }
            None => {
                out.push_str(u);
                out.push('@');
            }
        }
    }
    out.push_str(p.hostpath);
    if let Some(q) = p.query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => kv.to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// Turns a SQLite URL into one with an absolute path (relative paths are
/// relative to `config_dir`) that creates the file when missing (unless the
/// URL sets `mode` itself).
pub(crate) fn resolve_sqlite(url: &str, config_dir: &Path) -> Result<String, String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| "a SQLite URL must start with sqlite://".to_owned())?;
    let (path, params) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let memory =
        path == ":memory:" || params.is_some_and(|q| q.split('&').any(|kv| kv == "mode=memory"));
    if memory {
        return Ok(url.to_owned());
    }
    if path.is_empty() {
        return Err("the SQLite URL names no file (write sqlite://path/to/file.db)".to_owned());
    }
    let decoded = percent_decode(path)?;
    let p = Path::new(&decoded);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_dir.join(p)
    };
    let abs = abs
        .to_str()
        .ok_or_else(|| format!("the SQLite path {} is not valid UTF-8", abs.display()))?;
    let mut params: Vec<&str> = params
        .map(|q| q.split('&').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if !params.iter().any(|kv| kv.starts_with("mode=")) {
        params.push("mode=rwc");
    }
    Ok(format!(
        "sqlite://{}?{}",
        percent_encode(abs),
        params.join("&")
    ))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return Err(format!("the SQLite path {s:?} has a malformed %-escape")),
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("the SQLite path {s:?} is not valid UTF-8"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || matches!(c, ' ' | '"' | '#' | '<' | '>' | '?' | '`' | '{' | '}' | '%')
        {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_detected_and_redacted() {
        for url in [
            "postgres://u:secret@h/db",
            "postgresql://u:secret@h:5432/db?sslmode=require",
            "mysql://u:secret@h/db",
            "mariadb://u:se%40cret@h/db",
            "postgres://u@h/db?password=secret",
            "postgres://u:p@ss:secret@h/db",
        ] {
            assert!(has_password(url), "{url}");
            let r = redact(url);
            assert!(!r.contains("secret"), "{r}");
            assert!(r.contains("***"), "{r}");
        }
        for url in [
            "postgres://u@h/db",
            "postgres://h/db",
            "mysql://root:@127.0.0.1:3306/test",
            "sqlite://apps/crm.db",
            "sqlite://a:b@c.db",
        ] {
            assert!(!has_password(url), "{url}");
        }
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=x"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("weird"), "***");
        assert_eq!(
            format!("{:?}", DbUrl::new("mysql://u:pw@h/db".into())),
            "DbUrl(\"mysql://u:***@h/db\")"
        );
    }

    #[test]
    fn dialects() {
        assert_eq!(dialect_of("sqlite:x.db"), Some(Dialect::Sqlite));
        assert_eq!(dialect_of("POSTGRES://h/db"), Some(Dialect::Postgres));
        assert_eq!(dialect_of("mariadb://h/db"), Some(Dialect::MySql));
        assert_eq!(dialect_of("oracle://h/db"), None);
        assert_eq!(dialect_of("nothing"), None);
    }

    #[test]
    fn sqlite_paths_are_made_absolute() {
        let dir = Path::new("/etc/tenure");
        assert_eq!(
            resolve_sqlite("sqlite://apps/crm.db", dir).as_deref(),
            Ok("sqlite:///etc/tenure/apps/crm.db?mode=rwc")
        );
        assert_eq!(
            resolve_sqlite("sqlite:/abs/my db.sqlite?mode=ro", dir).as_deref(),
            Ok("sqlite:///abs/my%20db.sqlite?mode=ro")
        );
        assert_eq!(
            resolve_sqlite("sqlite://a%23b.db", dir).as_deref(),
            Ok("sqlite:///etc/tenure/a%23b.db?mode=rwc")
        );
        assert_eq!(
            resolve_sqlite("sqlite::memory:", dir).as_deref(),
            Ok("sqlite::memory:")
        );
        assert!(resolve_sqlite("sqlite://", dir).is_err());
    }
}
