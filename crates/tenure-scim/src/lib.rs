//! SCIM 2.0 service provider (RFC 7643 core schema, RFC 7644 protocol).
//!
//! - [`schema`]: the User (with the Enterprise User and Tenure extensions) and
//!   Group schemas and their attribute characteristics;
//! - [`filter`]: the filter and PATCH path grammar, and evaluation on one value;
//! - [`patch`]: PATCH operations on one resource;
//! - [`resource`]: validating what clients send, shaping what is returned;
//! - [`error`]: SCIM error bodies;
//! - [`backend`]: what the endpoints need from storage and the lifecycle;
//! - [`http`]: the axum router of the endpoints.
//!
//! What this crate deliberately does not do: storage (list queries are
//! translated to SQL by `tenure-store`; nothing here filters a collection in
//! memory), lifecycle decisions (the engine's backend), command-line or
//! server assembly (the `tenure` binary), or reading a clock for anything but
//! the per-token rate limit.

pub mod backend;
pub mod error;
pub mod filter;
pub mod http;
pub mod patch;
pub mod resource;
pub mod schema;

pub use backend::{Backend, ListPage, ListQuery, Principal, Stored};
pub use error::{ScimError, ScimType};
pub use http::{ScimState, ServiceConfig, router};
pub use schema::ResourceKind;
