//! Store URLs: which database a URL names, how to connect to it, and how to
//! show it without its password.
//!
//! Accepted: `sqlite:PATH`, `sqlite://PATH` (both relative unless PATH starts
//! with `/`), a bare path ending in `.db`, and `postgres://…` /
//! `postgresql://…`. SQLite URLs get `mode=rwc` unless they set a mode, so the
//! file is created on first use. This module does not touch the network or
//! the file system.

use crate::StoreError;
use crate::store::Dialect;

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Which database.
    pub dialect: Dialect,
    /// What to hand to the driver.
    pub connect_url: String,
    /// What to show in messages (no password).
    pub display: String,
}

/// Parses a store URL.
pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
    let trimmed = url.trim();
    let display = redact(trimmed);
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(Target {
            dialect: Dialect::Postgres,
            connect_url: trimmed.to_owned(),
            display,
        });
    }
    let (path, params) = if let Some(rest) = strip_prefix_ci(trimmed, "sqlite://") {
        split_query(rest)
    } else if let Some(rest) = strip_prefix_ci(trimmed, "sqlite:") {
        split_query(rest)
    } else if !trimmed.contains("://") && lower.ends_with(".db") {
        (encode_path(trimmed), None)
    } else {
        return Err(StoreError::UnsupportedUrl { url: display });
    };
    if path.is_empty() {
        return Err(StoreError::UnsupportedUrl { url: display });
    }
    let mut params: Vec<String> = params
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if !params.iter().any(|p| p.starts_with("mode=")) {
        params.push("mode=rwc".to_owned());
    }
    Ok(Target {
        dialect: Dialect::Sqlite,
        connect_url: format!("sqlite:{path}?{}", params.join("&")),
        display,
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn split_query(rest: &str) -> (String, Option<String>) {
    match rest.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (rest.to_owned(), None),
    }
}

/// Percent-encodes what would otherwise be read as URL syntax in a file path.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' | '?' | '#' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The URL with any password (in the user info or a `password=` parameter) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let userinfo_end = auth_start + at;
            if let Some(colon) = out[auth_start..userinfo_end].find(':') {
                out.replace_range(auth_start + colon + 1..userinfo_end, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(url: &str) -> Option<String> {
        match parse(url) {
            Ok(t) if t.dialect == Dialect::Sqlite => Some(t.connect_url),
            _ => None,
        }
    }

    #[test]
    fn sqlite_forms() {
        assert_eq!(
            sqlite("sqlite:data/t.db").as_deref(),
            Some("sqlite:data/t.db?mode=rwc")
        );
        assert_eq!(
            sqlite("sqlite:///var/lib/t.db").as_deref(),
            Some("sqlite:/var/lib/t.db?mode=rwc")
        );
        assert_eq!(
            sqlite("sqlite://t.db?mode=ro").as_deref(),
            Some("sqlite:t.db?mode=ro")
        );
        assert_eq!(
            sqlite("/tmp/my dir/t%1.db").as_deref(),
            Some("sqlite:/tmp/my%20dir/t%251.db?mode=rwc")
        );
        assert_eq!(sqlite("t.sqlite"), None);
        assert_eq!(sqlite("sqlite:"), None);
        assert!(matches!(
            parse("mysql://x/y"),
            Err(StoreError::UnsupportedUrl { .. })
        ));
    }

    #[test]
    fn postgres_forms_and_redaction() {
        let t = parse("postgresql://u:secret@db:5432/tenure?sslmode=require&password=x");
        let Ok(t) = t else {
            unreachable!("postgres URL rejected")
        };
        assert_eq!(t.dialect, Dialect::Postgres);
        assert_eq!(
            t.display,
            "postgresql://u:***@db:5432/tenure?sslmode=require&password=***"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
    }
}
