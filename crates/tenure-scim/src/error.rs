//! SCIM errors (RFC 7644 §3.12): an HTTP status, an optional `scimType` and
//! a detail that says what was wrong and where.
//!
//! Every failure the service provider answers is one of these, so every error
//! response is a SCIM error body. A 500's detail is generic: the cause is
//! logged by whoever built the error, never sent to the client.

use serde_json::{Value, json};
use std::fmt;

/// The SCIM error schema URN.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` keywords of RFC 7644 §3.12 Table 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    /// The filter syntax is invalid or the attribute and operator do not go together.
    InvalidFilter,
    /// The filter yields more results than the server will return.
    TooMany,
    /// An attribute value must be unique and is not.
    Uniqueness,
    /// The request tries to change an attribute that cannot be changed.
    Mutability,
    /// The request body is not valid SCIM.
    InvalidSyntax,
    /// The PATCH path is invalid.
    InvalidPath,
    /// The PATCH path's target does not exist (for a remove with a filter that matches nothing).
    NoTarget,
    /// A required value is missing or a value has the wrong type or format.
    InvalidValue,
    /// The protocol version is not supported.
    InvalidVers,
    /// The request would reveal sensitive data.
    Sensitive,
    /// A pagination cursor this server did not give (RFC 9865).
    InvalidCursor,
}

impl ScimType {
    /// The keyword as written in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidFilter => "invalidFilter",
            Self::TooMany => "tooMany",
            Self::Uniqueness => "uniqueness",
            Self::Mutability => "mutability",
            Self::InvalidSyntax => "invalidSyntax",
            Self::InvalidPath => "invalidPath",
            Self::NoTarget => "noTarget",
            Self::InvalidValue => "invalidValue",
            Self::InvalidVers => "invalidVers",
            Self::Sensitive => "sensitive",
            Self::InvalidCursor => "invalidCursor",
        }
    }
}

/// A SCIM error: what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScimError {
    /// The HTTP status.
    pub status: u16,
    /// The `scimType`, for 400 (and 409, 413) errors that have one.
    pub scim_type: Option<ScimType>,
    /// What went wrong, and where.
    pub detail: String,
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scim_type {
            Some(t) => write!(f, "{} {}: {}", self.status, t.as_str(), self.detail),
            None => write!(f, "{}: {}", self.status, self.detail),
        }
    }
}

impl ScimError {
    /// An error with a status and a detail.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// A 400 with a `scimType`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// 400 invalidFilter.
    pub fn filter(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidFilter, detail)
    }

    /// 400 invalidValue.
    pub fn value(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidValue, detail)
    }

    /// 400 invalidSyntax.
    pub fn syntax(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidSyntax, detail)
    }

    /// 400 invalidPath.
    pub fn path(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidPath, detail)
    }

    /// 400 mutability.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::Mutability, detail)
    }

    /// 409 uniqueness.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self {
            status: 409,
            scim_type: Some(ScimType::Uniqueness),
            detail: detail.into(),
        }
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(404, format!("{what} not found"))
    }

    /// 412: the resource changed since the version the client holds.
    pub fn precondition(detail: impl Into<String>) -> Self {
        Self::new(412, detail)
    }

    /// 500 with a generic detail (the caller logs the cause).
    pub fn internal() -> Self {
        Self::new(500, "internal error; the server log has the details")
    }

    /// The error body.
    pub fn body(&self) -> Value {
        let mut v = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, v.as_object_mut()) {
            obj.insert("scimType".into(), Value::String(t.as_str().into()));
        }
        v
    }
}
