//! Distinguished names (RFC 4514) and filter values (RFC 4515): escaping
//! values built from data, parsing the DNs a server returns, and comparing
//! DNs the way a directory does.
//!
//! Escaping uses `ldap3`'s [`ldap3::dn_escape`] and [`ldap3::ldap_escape`],
//! which escape every character the RFCs require (checked by the tests
//! below). Parsing is ours: servers return the same DN in different forms
//! (`\2C` or `\,`, upper or lower case attribute types, spaces after commas
//! from older servers), so DNs are compared by their parsed, case-folded
//! components, never as strings.
//!
//! This module does not know any schema: every attribute value is compared
//! case-insensitively, as the naming attributes of people and groups (`uid`,
//! `cn`, `ou`, `dc`, `sAMAccountName`) are in every directory we support.

use std::borrow::Cow;

/// Escapes a value for use in a DN's RDN (RFC 4514 section 2.4).
pub(crate) fn escape_value(v: &str) -> Cow<'_, str> {
    ldap3::dn_escape(v)
}

/// Escapes a value for use in a search filter (RFC 4515 section 3).
pub(crate) fn escape_filter(v: &str) -> Cow<'_, str> {
    ldap3::ldap_escape(v)
}

/// An equality filter `(attr=value)` with the value escaped.
pub(crate) fn eq_filter(attr: &str, value: &str) -> String {
    format!("({attr}={})", escape_filter(value))
}

/// One attribute type and value of an RDN, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ava {
    /// The attribute type as written.
    pub(crate) attr: String,
    /// The value, unescaped.
    pub(crate) value: String,
}

/// A parsed DN: its RDNs from the entry itself up to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dn {
    pub(crate) rdns: Vec<Vec<Ava>>,
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Dn {
    /// Parses a DN in its RFC 4514 string form (also accepting the spaces
    /// around separators that RFC 2253-era servers write). The empty string
    /// is the root DN.
    pub(crate) fn parse(s: &str) -> Result<Dn, String> {
        let bytes = s.as_bytes();
        let mut rdns: Vec<Vec<Ava>> = Vec::new();
        let mut current: Vec<Ava> = Vec::new();
        let mut i = 0;
        let skip_spaces = |i: &mut usize| {
            while *i < bytes.len() && bytes[*i] == b' ' {
                *i += 1;
            }
        };
        skip_spaces(&mut i);
        if i >= bytes.len() {
            return Ok(Dn { rdns });
        }
        loop {
            // Attribute type.
            skip_spaces(&mut i);
            let start = i;
            while i < bytes.len() && bytes[i] != b'=' {
                if matches!(bytes[i], b',' | b'+' | b'\\') {
                    return Err(format!(
                        "{s:?} is not a DN: an attribute type is missing its '='"
                    ));
                }
                i += 1;
            }
            if i >= bytes.len() {
                return Err(format!(
                    "{s:?} is not a DN: an attribute type is missing its '='"
                ));
            }
            let attr = s.get(start..i).unwrap_or_default().trim().to_owned();
            if attr.is_empty()
                || !attr
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(format!(
                    "{s:?} is not a DN: {attr:?} is not an attribute type"
                ));
            }
            i += 1; // '='
            skip_spaces(&mut i);
            // Value.
            let mut value: Vec<u8> = Vec::new();
            // Length of `value` up to its last escaped or non-space byte: unescaped trailing spaces are dropped.
            let mut keep = 0;
            if i < bytes.len() && bytes[i] == b'#' {
                // A BER-encoded value: kept as written.
                while i < bytes.len() && !matches!(bytes[i], b',' | b'+' | b';') {
                    value.push(bytes[i]);
                    i += 1;
                }
                keep = value.len();
            } else if i < bytes.len() && bytes[i] == b'"' {
                // RFC 2253 quoted value.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' && i + 1 < bytes.len() {
                        i += 1;
                    }
                    value.push(bytes[i]);
                    i += 1;
                }
                if i >= bytes.len() {
                    return Err(format!("{s:?} is not a DN: an unterminated quoted value"));
                }
                i += 1;
                keep = value.len();
                skip_spaces(&mut i);
            } else {
                while i < bytes.len() && !matches!(bytes[i], b',' | b'+' | b';') {
                    if bytes[i] == b'\\' {
                        let Some(&next) = bytes.get(i + 1) else {
                            return Err(format!("{s:?} is not a DN: it ends with a lone '\\'"));
                        };
                        if let (Some(h), Some(l)) =
                            (hex(next), bytes.get(i + 2).and_then(|&c| hex(c)))
                        {
                            value.push(h << 4 | l);
                            i += 3;
                        } else {
                            value.push(next);
                            i += 2;
                        }
                        keep = value.len();
                    } else {
                        value.push(bytes[i]);
                        if bytes[i] != b' ' {
                            keep = value.len();
                        }
                        i += 1;
                    }
                }
            }
            value.truncate(keep);
            let value = String::from_utf8(value)
                .map_err(|_| format!("{s:?} is not a DN: a value is not valid UTF-8"))?;
            current.push(Ava { attr, value });
            match bytes.get(i) {
                None => {
                    rdns.push(std::mem::take(&mut current));
                    break;
                }
                Some(b'+') => {
                    i += 1;
                }
                Some(_) => {
                    // ',' or ';'
                    rdns.push(std::mem::take(&mut current));
                    i += 1;
                }
            }
        }
        Ok(Dn { rdns })
    }

    /// The normalised form: attribute types and values lower-cased,
    /// multi-valued RDNs sorted, every value escaped the same way. Two DNs
    /// name the same entry when their normalised forms are equal.
    pub(crate) fn normalized(&self) -> String {
        let mut out = String::new();
        for (n, rdn) in self.rdns.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let mut parts: Vec<String> = rdn
                .iter()
                .map(|a| {
                    format!(
                        "{}={}",
                        a.attr.to_ascii_lowercase(),
                        escape_value(&a.value.to_lowercase())
                    )
                })
                .collect();
            parts.sort();
            out.push_str(&parts.join("+"));
        }
        out
    }

    /// The DN of the parent entry.
    pub(crate) fn parent(&self) -> Dn {
        Dn {
            rdns: self.rdns.iter().skip(1).cloned().collect(),
        }
    }

    /// The first RDN's single value of attribute `attr` (case-insensitive type).
    pub(crate) fn rdn_value(&self, attr: &str) -> Option<&str> {
        let first = self.rdns.first()?;
        if first.len() != 1 {
            return None;
        }
        first
            .iter()
            .find(|a| a.attr.eq_ignore_ascii_case(attr))
            .map(|a| a.value.as_str())
    }

    /// Whether this DN is `base` or below it.
    pub(crate) fn is_within(&self, base: &Dn) -> bool {
        if base.rdns.len() > self.rdns.len() {
            return false;
        }
        let skip = self.rdns.len() - base.rdns.len();
        let tail = Dn {
            rdns: self.rdns.iter().skip(skip).cloned().collect(),
        };
        tail.normalized() == base.normalized()
    }
}

/// The normalised form of a DN string, or the lower-cased string itself when
/// it does not parse (so that it still compares equal to itself).
pub(crate) fn normalize(dn: &str) -> String {
    match Dn::parse(dn) {
        Ok(d) => d.normalized(),
        Err(_) => dn.to_lowercase(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dn_escaping_covers_rfc4514() {
        assert_eq!(escape_value("plain"), "plain");
        assert_eq!(escape_value("a,b"), "a\\2cb");
        assert_eq!(escape_value("a+b=c"), "a\\2bb\\3dc");
        assert_eq!(escape_value("\"q\";<>\\"), "\\22q\\22\\3b\\3c\\3e\\5c");
        assert_eq!(escape_value("#lead"), "\\23lead");
        assert_eq!(escape_value("mid#dle"), "mid#dle");
        assert_eq!(escape_value(" lead"), "\\20lead");
        assert_eq!(escape_value("trail "), "trail\\20");
        assert_eq!(escape_value("nul\0"), "nul\\00");
        assert_eq!(escape_value("*()"), "*()");
        assert_eq!(escape_value("Zoë Åström"), "Zoë Åström");
    }

    #[test]
    fn filter_escaping_covers_rfc4515() {
        assert_eq!(escape_filter("plain"), "plain");
        assert_eq!(escape_filter("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape_filter("a\\b\0"), "a\\5cb\\00");
        assert_eq!(eq_filter("uid", "x*"), "(uid=x\\2a)");
        assert_eq!(escape_filter("Zoë"), "Zoë");
        // What comes out parses as one equality filter.
        for hostile in ["*)(uid=*", "x)(|(objectClass=*", "\\", "(", "*", "a\0b"] {
            assert!(
                ldap3::parse_filter(eq_filter("uid", hostile)).is_ok(),
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn escaped_values_parse_back() {
        for v in [
            "plain",
            "a,b+c=d",
            "\"q\";<>\\",
            "#lead",
            " lead and trail ",
            "nul\0",
            "*()",
            "Zoë Åström",
            "  ",
        ] {
            let dn = format!("uid={},ou=people,dc=example,dc=com", escape_value(v));
            let parsed = Dn::parse(&dn).unwrap();
            assert_eq!(parsed.rdn_value("uid"), Some(v), "{dn}");
            assert_eq!(parsed.rdns.len(), 4);
        }
    }

    #[test]
    fn equivalent_forms_normalise_alike() {
        let forms = [
            "uid=a\\2cb,ou=People,dc=Example,dc=com",
            "UID=a\\,b, ou=people, DC=example, DC=COM",
            "uid=A\\2Cb,ou=people,dc=example,dc=com",
            "uid=\"a,b\",ou=people,dc=example,dc=com",
        ];
        let n = normalize(forms[0]);
        for f in forms {
            assert_eq!(normalize(f), n, "{f}");
        }
        assert_ne!(
            normalize("uid=a\\2c b,ou=people"),
            normalize("uid=a\\2cb,ou=people")
        );
        // Escaped trailing spaces are part of the value, unescaped ones are not.
        assert_eq!(
            Dn::parse("cn=x\\20 ,dc=a").unwrap().rdn_value("cn"),
            Some("x ")
        );
        assert_eq!(Dn::parse("cn=x  ,dc=a").unwrap().rdn_value("cn"), Some("x"));
    }

    #[test]
    fn multi_valued_rdns_and_nesting() {
        let d = Dn::parse("cn=x+uid=y,ou=a,dc=b").unwrap();
        assert_eq!(d.rdns[0].len(), 2);
        assert_eq!(d.rdn_value("cn"), None);
        assert_eq!(normalize("uid=y+cn=x,ou=a,dc=b"), d.normalized());
        let base = Dn::parse("OU=A,DC=B").unwrap();
        assert!(d.is_within(&base));
        assert!(d.parent().is_within(&base));
        assert!(!Dn::parse("dc=b").unwrap().is_within(&base));
        assert!(!Dn::parse("cn=z,ou=aa,dc=b").unwrap().is_within(&base));
        assert!(Dn::parse("").unwrap().rdns.is_empty());
    }

    #[test]
    fn malformed_dns_are_errors() {
        for bad in ["uid", "uid=x,", "=x", "uid=x\\", "u id=x", "cn=\"open"] {
            assert!(Dn::parse(bad).is_err(), "{bad:?}");
        }
    }
}
