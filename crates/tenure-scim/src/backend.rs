//! What the HTTP layer needs from storage and the lifecycle: the
//! [`Backend`] trait, and the values that cross it.
//!
//! `tenure-scim` knows SCIM, not the store: the engine implements this trait
//! over the store (with the filters translated to SQL there) and the
//! lifecycle. Every method answers a [`ScimError`] the client can be shown.

use crate::error::ScimError;
use crate::filter::Filter;
use crate::patch::PatchOp;
use crate::schema::ResourceKind;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Who is calling: a token's name and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (the audit log's actor is `token:<name>`).
    pub name: String,
    /// Its scopes (`scim:read`, `scim:write` …).
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether it holds `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// A stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The id.
    pub id: String,
    /// Incremented by every write; `meta.version` is `W/"<version>"`.
    pub version: i64,
    /// When created.
    pub created: DateTime<Utc>,
    /// When last modified.
    pub modified: DateTime<Utc>,
    /// The resource in stored form, without `id` and `meta`; a user's
    /// `groups` and a group's `members` are filled in by the backend.
    pub resource: Value,
}

/// A list query, already validated.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// The filter (every path resolves for the resource kind).
    pub filter: Option<Filter>,
    /// The attribute to sort by (resolves to a single-valued attribute).
    pub sort_by: Option<String>,
    /// Descending order.
    pub descending: bool,
    /// 1-based index of the first result.
    pub start_index: u64,
    /// How many results at most.
    pub count: u64,
    /// Cursor pagination (RFC 9865): `Some("")` asks for the first page.
    pub cursor: Option<String>,
}

/// One page of results.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// How many resources match in all.
    pub total: u64,
    /// This page.
    pub items: Vec<Stored>,
    /// The cursor of the next page (cursor pagination only).
    pub next_cursor: Option<String>,
}

/// Storage and lifecycle behind the SCIM endpoints.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The principal a bearer token's secret belongs to, if it is valid now.
    async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, ScimError>;
    /// One resource.
    async fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<Stored>, ScimError>;
    /// A page of resources matching a query.
    async fn list(&self, kind: ResourceKind, query: &ListQuery) -> Result<ListPage, ScimError>;
    /// Creates a resource (already normalized).
    async fn create(
        &self,
        who: &Principal,
        kind: ResourceKind,
        resource: Value,
    ) -> Result<Stored, ScimError>;
    /// Replaces a resource (already normalized); with `if_match`, only at that version.
    async fn replace(
        &self,
        who: &Principal,
        kind: ResourceKind,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<Stored, ScimError>;
    /// Applies PATCH operations; with `if_match`, only at that version.
    async fn patch(
        &self,
        who: &Principal,
        kind: ResourceKind,
        id: &str,
        ops: &[PatchOp],
        if_match: Option<i64>,
    ) -> Result<Stored, ScimError>;
    /// Deletes a resource; with `if_match`, only at that version.
    async fn delete(
        &self,
        who: &Principal,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<(), ScimError>;
    /// The mass-change guard for a bulk request that would deactivate or
    /// delete `deactivations` users: an error refuses the whole request.
    async fn check_bulk(&self, who: &Principal, deactivations: u64) -> Result<(), ScimError>;
}
