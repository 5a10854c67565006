//! Identifier newtypes.
//!
//! Every identifier that crosses a boundary (HR file, configuration, database,
//! plan file) is parsed once, here, into a type that cannot hold an invalid
//! value: non-empty, at most 256 bytes, no control characters. Configuration
//! identifiers (systems, roles, rules, sources) are further restricted to a
//! slug alphabet so that they are safe in file names, URLs and log lines.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// What kind of identifier it was meant to be.
        kind: &'static str,
    },
    /// The identifier is too long.
    #[error("{kind} is {len} bytes long; the limit is 256")]
    TooLong {
        /// What kind of identifier it was meant to be.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The identifier contains a character it may not contain.
    #[error("{kind} {value:?} contains {ch:?}, which is not allowed here")]
    BadChar {
        /// What kind of identifier it was meant to be.
        kind: &'static str,
        /// The offending value.
        value: String,
        /// The first offending character.
        ch: char,
    },
}

const MAX_LEN: usize = 256;

fn check_text(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.trim().is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    if let Some(ch) = s.chars().find(|c| c.is_control()) {
        return Err(IdError::BadChar {
            kind,
            value: s.to_owned(),
            ch,
        });
    }
    Ok(())
}

fn check_slug(kind: &'static str, s: &str) -> Result<(), IdError> {
    check_text(kind, s)?;
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::BadChar {
            kind,
            value: s.to_owned(),
            ch,
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "CompactString", into = "CompactString")]
        pub struct $name(CompactString);

        impl $name {
            /// Parses an identifier, rejecting empty, over-long or ill-formed values.
            pub fn new(s: impl Into<CompactString>) -> Result<Self, IdError> {
                let s = s.into();
                $check($kind, &s)?;
                Ok(Self(s))
            }
            /// For identifiers written in Tenure's own code, known to be valid.
            #[allow(dead_code)]
            pub(crate) fn from_static(s: &'static str) -> Self {
                Self(CompactString::const_new(s))
            }
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<CompactString> for $name {
            type Error = IdError;
            fn try_from(s: CompactString) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl From<$name> for CompactString {
            fn from(v: $name) -> CompactString {
                v.0
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0.into_string()
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// An identity's identifier, as assigned by its authoritative source (an employee number).
    IdentityId, "identity id", check_text
);
id_type!(
    /// A connected system's identifier from the configuration (`crm`, `directory`).
    SystemId, "system id", check_slug
);
id_type!(
    /// A source's identifier from the configuration (`hr`).
    SourceId, "source id", check_slug
);
id_type!(
    /// A business role's identifier from the configuration.
    RoleId, "role id", check_slug
);
id_type!(
    /// A birthright rule's identifier from the configuration.
    RuleId, "rule id", check_slug
);
id_type!(
    /// A deprovisioning policy's identifier from the configuration.
    PolicyId, "deprovisioning policy id", check_slug
);
id_type!(
    /// The name of an entitlement on one system (a group, a role, a licence).
    EntitlementName, "entitlement", check_text
);
id_type!(
    /// An account's key on its system (a user name, a DN, a SCIM id): what the
    /// connector uses to address the account.
    AccountKey, "account key", check_text
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_control_and_long() {
        assert!(matches!(IdentityId::new(""), Err(IdError::Empty { .. })));
        assert!(matches!(IdentityId::new("  "), Err(IdError::Empty { .. })));
        assert!(matches!(
            IdentityId::new("a\nb"),
            Err(IdError::BadChar { ch: '\n', .. })
        ));
        assert!(matches!(
            IdentityId::new("x".repeat(257)),
            Err(IdError::TooLong { len: 257, .. })
        ));
        assert_eq!(
            IdentityId::new("E-0001 ß").map(|i| i.to_string()),
            Ok("E-0001 ß".to_owned())
        );
    }

    #[test]
    fn slugs_are_restricted() {
        assert!(SystemId::new("crm-eu_1.prod").is_ok());
        assert!(matches!(
            SystemId::new("crm eu"),
            Err(IdError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            SystemId::new("crm/../x"),
            Err(IdError::BadChar { ch: '/', .. })
        ));
    }

    #[test]
    fn serde_validates() {
        let ok: Result<SystemId, _> = serde_json::from_str("\"crm\"");
        assert!(ok.is_ok());
        let bad: Result<SystemId, _> = serde_json::from_str("\"c r m\"");
        assert!(bad.is_err());
    }
}
