//! The SCIM 2.0 HTTP endpoints (RFC 7644) as an axum router, to be nested
//! at `/scim/v2`.
//!
//! Every answer is `application/scim+json`, every error a SCIM error body.
//! Requests are authenticated by bearer token ([`Backend::authenticate`]):
//! 401 without or with a bad token, 403 without the scope (`scim:read` for
//! reads and searches, `scim:write` for writes). Each token has its own
//! request budget (429 with `Retry-After` beyond it). Bodies are read up to
//! a limit (413 beyond), and must be `application/scim+json` or
//! `application/json` (415 otherwise). Discovery endpoints
//! (`/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`) need no token:
//! they describe the service, not its data.
//!
//! This module holds no storage and no lifecycle: it validates requests
//! (schemas, filters, paths), shapes responses (`meta`, projections, ETags)
//! and calls the [`Backend`].

use crate::backend::{Backend, ListPage, ListQuery, Principal, Stored};
use crate::error::{ScimError, ScimType};
use crate::filter::{self, AttrPath, Filter};
use crate::patch;
use crate::resource::{self, Projection};
use crate::schema::{self, ResourceKind, SCHEMAS};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// The SCIM media type.
pub const SCIM_JSON: &str = "application/scim+json";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// The read scope.
pub const SCOPE_READ: &str = "scim:read";
/// The write scope.
pub const SCOPE_WRITE: &str = "scim:write";

/// Limits and addresses of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The absolute URL of the SCIM root (`https://host/scim/v2`), used in
    /// `meta.location`; `None`: built from the request's `Host` header and
    /// [`ServiceConfig::base_path`].
    pub public_url: Option<String>,
    /// Where the router is nested (`/scim/v2`).
    pub base_path: String,
    /// Whether the server speaks TLS (for URLs built from `Host`).
    pub tls: bool,
    /// The largest request body, in bytes (not bulk).
    pub max_body_bytes: usize,
    /// The most operations in one bulk request.
    pub bulk_max_operations: usize,
    /// The largest bulk request, in bytes.
    pub bulk_max_payload: usize,
    /// The default page size.
    pub default_count: u64,
    /// The largest page size (`filter.maxResults`).
    pub max_results: u64,
    /// Requests per second each token may make (sustained); 0: no limit.
    pub requests_per_second: u32,
    /// Requests a token may make in a burst.
    pub burst: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            base_path: "/scim/v2".into(),
            tls: false,
            max_body_bytes: 256 * 1024,
            bulk_max_operations: 1000,
            bulk_max_payload: 4 * 1024 * 1024,
            default_count: 100,
            max_results: 1000,
            requests_per_second: 100,
            burst: 200,
        }
    }
}

/// The router's state.
#[derive(Clone)]
pub struct ScimState {
    backend: Arc<dyn Backend>,
    config: Arc<ServiceConfig>,
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl ScimState {
    /// A state over a backend.
    pub fn new(backend: Arc<dyn Backend>, config: ServiceConfig) -> Self {
        Self {
            backend,
            config: Arc::new(config),
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// The SCIM endpoints, to be nested at [`ServiceConfig::base_path`].
pub fn router(state: ScimState) -> Router {
    Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema_by_id))
        .route("/Users", get(list_users).post(create_users))
        .route("/Groups", get(list_groups).post(create_groups))
        .route("/Users/.search", post(search_users))
        .route("/Groups/.search", post(search_groups))
        .route("/.search", post(search_root))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/Bulk", post(bulk))
        .route("/Me", any(me))
        .route("/Me/{*rest}", any(me))
        .fallback(not_found)
        .with_state(state)
}

/// A SCIM response.
struct Reply {
    status: StatusCode,
    body: Option<Value>,
    headers: Vec<(header::HeaderName, String)>,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }
    fn header(mut self, name: header::HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = match self.body {
            Some(b) => {
                let mut r = Response::new(Body::from(b.to_string()));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
                r
            }
            None => Response::new(Body::empty()),
        };
        *resp.status_mut() = self.status;
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

struct Failure(ScimError, Vec<(header::HeaderName, String)>);

impl From<ScimError> for Failure {
    fn from(e: ScimError) -> Self {
        Failure(e, Vec::new())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = Reply::json(status, self.0.body());
        r.headers = self.1;
        r.into_response()
    }
}

type Answer = Result<Reply, Failure>;

fn base_url(state: &ScimState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.config.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.config.tls { "https" } else { "http" };
    format!("{scheme}://{host}{}", state.config.base_path)
}

/// Checks the bearer token, the scope and the token's rate.
async fn authorize(
    state: &ScimState,
    headers: &HeaderMap,
    scope: &str,
) -> Result<Principal, Failure> {
    let unauthorized = |detail: &str| {
        Failure(
            ScimError::new(401, detail),
            vec![(
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"tenure\"".to_owned(),
            )],
        )
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized(
            "authentication required: send `Authorization: Bearer <token>`",
        ));
    };
    let Some(secret) = value
        .split_once(' ')
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    else {
        return Err(unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    };
    let Some(p) = state.backend.authenticate(secret).await? else {
        return Err(unauthorized(
            "the bearer token is unknown, expired or revoked",
        ));
    };
    if !p.has(scope) {
        return Err(
            ScimError::new(403, format!("token {:?} lacks the scope {scope}", p.name)).into(),
        );
    }
    rate(state, &p)?;
    Ok(p)
}

/// A token bucket per token: `burst` requests, refilled at `requests_per_second`.
fn rate(state: &ScimState, p: &Principal) -> Result<(), Failure> {
    let rps = f64::from(state.config.requests_per_second);
    if rps <= 0.0 {
        return Ok(());
    }
    let burst = f64::from(state.config.burst.max(1));
    let now = Instant::now();
    let Ok(mut buckets) = state.buckets.lock() else {
        return Ok(());
    };
    let (tokens, last) = buckets.entry(p.name.clone()).or_insert((burst, now));
    let elapsed = now.saturating_duration_since(*last).as_secs_f64();
    *tokens = (*tokens + elapsed * rps).min(burst);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        return Ok(());
    }
    let wait = ((1.0 - *tokens) / rps).ceil().max(1.0);
    Err(Failure(
        ScimError::new(
            429,
            format!(
                "token {:?} sent too many requests; retry after {wait} s",
                p.name
            ),
        ),
        vec![(header::RETRY_AFTER, format!("{wait}"))],
    ))
}

/// Reads a JSON body: content type, size limit, syntax.
async fn read_json(req: Request, limit: usize) -> Result<Value, ScimError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim().to_owned();
        if mime != SCIM_JSON && mime != "application/json" {
            return Err(ScimError::new(
                415,
                format!("the body must be {SCIM_JSON} or application/json, not {mime:?}"),
            ));
        }
    }
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ScimError::new(
                413,
                format!("the request body is larger than {limit} bytes"),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ScimError::syntax(format!(
            "the body is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Reads `W/"n"`, `"n"` or `*` (`None`).
fn parse_etag(v: &str) -> Result<Option<i64>, ScimError> {
    let v = v.trim();
    if v == "*" {
        return Ok(None);
    }
    let inner = v.strip_prefix("W/").unwrap_or(v).trim_matches('"');
    inner.parse::<i64>().map(Some).map_err(|_| {
        ScimError::precondition(format!("If-Match {v:?} is no version of this resource"))
    })
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ScimError> {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        Some(v) => parse_etag(v),
        None => Ok(None),
    }
}

/// The full resource as returned: id, meta, `$ref`s.
fn render(kind: ResourceKind, s: &Stored, base: &str) -> Value {
    let mut obj = match &s.resource {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    obj.insert("id".into(), Value::String(s.id.clone()));
    let refs = |list: Option<&mut Value>, default_endpoint: &str| {
        if let Some(Value::Array(items)) = list {
            for i in items {
                if let Value::Object(o) = i {
                    let endpoint = match o.get("type").and_then(Value::as_str) {
                        Some("Group") => "/Groups",
                        Some("User") => "/Users",
                        _ => default_endpoint,
                    };
                    if let Some(v) = o.get("value").and_then(Value::as_str) {
                        let r = format!("{base}{endpoint}/{v}");
                        o.insert("$ref".into(), Value::String(r));
                    }
                }
            }
        }
    };
    match kind {
        ResourceKind::User => refs(obj.get_mut("groups"), "/Groups"),
        ResourceKind::Group => refs(obj.get_mut("members"), "/Users"),
    }
    obj.insert(
        "meta".into(),
        json!({
            "resourceType": kind.name(),
            "created": s.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": s.modified.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "location": format!("{base}{}/{}", kind.endpoint(), s.id),
            "version": etag(s.version),
        }),
    );
    Value::Object(obj)
}

fn one(kind: ResourceKind, s: &Stored, base: &str, p: &Projection, status: StatusCode) -> Reply {
    let body = resource::project(kind, &render(kind, s, base), p);
    let mut r = Reply::json(status, body).header(header::ETAG, etag(s.version));
    if status == StatusCode::CREATED {
        r = r.header(
            header::LOCATION,
            format!("{base}{}/{}", kind.endpoint(), s.id),
        );
    }
    r
}

// ---- discovery ----

async fn service_provider_config(State(st): State<ScimState>, headers: HeaderMap) -> Reply {
    let base = base_url(&st, &headers);
    let c = &st.config;
    Reply::json(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://example.invalid/tenure/docs/scim",
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": c.bulk_max_operations, "maxPayloadSize": c.bulk_max_payload},
            "filter": {"supported": true, "maxResults": c.max_results},
            "changePassword": {"supported": false},
            "sort": {"supported": true},
            "pagination": {
                "cursor": true,
                "index": true,
                "defaultPaginationMethod": "index",
                "defaultPageSize": c.default_count,
                "maxPageSize": c.max_results,
            },
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A token created with `tenure token create`, sent as `Authorization: Bearer <token>`.",
                "primary": true,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
        }),
    )
}

fn list_of(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": items.len(),
        "itemsPerPage": items.len(),
        "startIndex": 1,
        "Resources": items,
    })
}

async fn resource_types(State(st): State<ScimState>, headers: HeaderMap) -> Reply {
    let base = base_url(&st, &headers);
    Reply::json(
        StatusCode::OK,
        list_of(
            [ResourceKind::User, ResourceKind::Group]
                .iter()
                .map(|k| k.to_json(&base))
                .collect(),
        ),
    )
}

async fn resource_type(
    State(st): State<ScimState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Answer {
    let base = base_url(&st, &headers);
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .find(|k| k.name() == name)
        .map(|k| Reply::json(StatusCode::OK, k.to_json(&base)))
        .ok_or_else(|| ScimError::not_found(format!("resource type {name:?}")).into())
}

async fn schemas(State(st): State<ScimState>, headers: HeaderMap) -> Reply {
    let base = base_url(&st, &headers);
    Reply::json(
        StatusCode::OK,
        list_of(SCHEMAS.iter().map(|s| s.to_json(&base)).collect()),
    )
}

async fn schema_by_id(
    State(st): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let base = base_url(&st, &headers);
    SCHEMAS
        .iter()
        .find(|s| s.id == id)
        .map(|s| Reply::json(StatusCode::OK, s.to_json(&base)))
        .ok_or_else(|| ScimError::not_found(format!("schema {id:?}")).into())
}

async fn me() -> Failure {
    ScimError::new(
        501,
        "/Me is not supported: tokens belong to provisioning clients, not to users",
    )
    .into()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Failure {
    ScimError::new(404, format!("no SCIM endpoint {method} {}", uri.path())).into()
}

// ---- queries ----

/// Checks that every path of a filter names an attribute of `kind`.
fn check_filter(kind: ResourceKind, f: &Filter) -> Result<(), ScimError> {
    fn path_ok(kind: ResourceKind, p: &AttrPath) -> Result<(), ScimError> {
        let r = schema::resolve(kind, &p.to_string()).ok_or_else(|| {
            ScimError::filter(format!("{p} is not an attribute of a {}", kind.name()))
        })?;
        if r.leaf().returned == schema::Returned::Never {
            return Err(ScimError::filter(format!("{p} cannot be filtered on")));
        }
        Ok(())
    }
    match f {
        Filter::Compare(p, _, _) | Filter::Present(p) => path_ok(kind, p),
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_filter(kind, a)?;
            check_filter(kind, b)
        }
        Filter::Not(a) => check_filter(kind, a),
        Filter::ValuePath(p, inner) => {
            let r = schema::resolve(kind, &p.to_string()).ok_or_else(|| {
                ScimError::filter(format!("{p} is not an attribute of a {}", kind.name()))
            })?;
            if r.attr.sub_attributes.is_empty() {
                return Err(ScimError::filter(format!(
                    "{p} has no sub-attributes to filter"
                )));
            }
            check_sub_filter(kind, p, inner)
        }
    }
}

fn check_sub_filter(kind: ResourceKind, parent: &AttrPath, f: &Filter) -> Result<(), ScimError> {
    let full = |p: &AttrPath| AttrPath {
        uri: parent.uri.clone(),
        name: parent.name.clone(),
        sub: Some(p.name.clone()),
    };
    match f {
        Filter::Compare(p, _, _) | Filter::Present(p) => {
            if p.sub.is_some() || p.uri.is_some() {
                return Err(ScimError::filter(format!(
                    "{p} inside {parent}[…] must be a sub-attribute name"
                )));
            }
            schema::resolve(kind, &full(p).to_string())
                .map(|_| ())
                .ok_or_else(|| ScimError::filter(format!("{parent} has no sub-attribute {p}")))
        }
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_sub_filter(kind, parent, a)?;
            check_sub_filter(kind, parent, b)
        }
        Filter::Not(a) => check_sub_filter(kind, parent, a),
        Filter::ValuePath(p, _) => Err(ScimError::filter(format!(
            "value filters do not nest ({p})"
        ))),
    }
}

/// Raw list parameters, from a query string or a SearchRequest.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
    cursor: Option<String>,
}

fn number(name: &str, v: Option<&str>) -> Result<Option<i64>, ScimError> {
    v.map(|s| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| ScimError::value(format!("{name} must be an integer, not {s:?}")))
    })
    .transpose()
}

fn build_query(
    st: &ScimState,
    kind: Option<ResourceKind>,
    p: &ListParams,
) -> Result<(ListQuery, Projection), ScimError> {
    let filter = match p.filter.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => {
            let f = filter::parse(f)?;
            if let Some(kind) = kind {
                check_filter(kind, &f)?;
            }
            Some(f)
        }
        _ => None,
    };
    if let (Some(kind), Some(s)) = (kind, &p.sort_by) {
        let r = schema::resolve(kind, s).ok_or_else(|| {
            ScimError::value(format!(
                "sortBy {s:?} is not an attribute of a {}",
                kind.name()
            ))
        })?;
        if r.leaf().kind == schema::AttrType::Complex {
            return Err(ScimError::value(format!(
                "sortBy {s:?} names a complex attribute"
            )));
        }
    }
    let descending = match p
        .sort_order
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("ascending") => false,
        Some("descending") => true,
        Some(o) => {
            return Err(ScimError::value(format!(
                "sortOrder must be ascending or descending, not {o:?}"
            )));
        }
    };
    if p.cursor.is_some() && p.start_index.is_some() {
        return Err(ScimError::value(
            "give either startIndex (index pagination) or cursor (RFC 9865), not both",
        ));
    }
    let start = number("startIndex", p.start_index.as_deref())?
        .unwrap_or(1)
        .max(1);
    let count = number("count", p.count.as_deref())?
        .map_or(st.config.default_count, |c| {
            u64::try_from(c.max(0)).unwrap_or(0)
        })
        .min(st.config.max_results);
    Ok((
        ListQuery {
            filter,
            sort_by: p.sort_by.clone(),
            descending,
            start_index: u64::try_from(start).unwrap_or(1),
            count,
            cursor: p.cursor.clone(),
        },
        Projection::parse(p.attributes.as_deref(), p.excluded_attributes.as_deref()),
    ))
}

fn list_body(
    kind: ResourceKind,
    page: &ListPage,
    q: &ListQuery,
    proj: &Projection,
    base: &str,
) -> Value {
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|s| resource::project(kind, &render(kind, s, base), proj))
        .collect();
    let mut v = json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": page.total,
        "itemsPerPage": items.len(),
        "startIndex": q.start_index,
        "Resources": items,
    });
    if let (Some(c), Some(o)) = (&page.next_cursor, v.as_object_mut()) {
        o.insert("nextCursor".into(), Value::String(c.clone()));
    }
    v
}

async fn list(st: &ScimState, headers: &HeaderMap, kind: ResourceKind, p: ListParams) -> Answer {
    authorize(st, headers, SCOPE_READ).await?;
    let (q, proj) = build_query(st, Some(kind), &p)?;
    let page = st.backend.list(kind, &q).await?;
    let base = base_url(st, headers);
    Ok(Reply::json(
        StatusCode::OK,
        list_body(kind, &page, &q, &proj, &base),
    ))
}

async fn list_users(
    State(st): State<ScimState>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> Answer {
    list(&st, &headers, ResourceKind::User, p).await
}

async fn list_groups(
    State(st): State<ScimState>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> Answer {
    list(&st, &headers, ResourceKind::Group, p).await
}

fn search_params(body: Value) -> Result<ListParams, ScimError> {
    let Value::Object(o) = body else {
        return Err(ScimError::syntax("a SearchRequest must be a JSON object"));
    };
    let ok = o
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(SEARCH_SCHEMA)));
    if !ok {
        return Err(ScimError::syntax(format!(
            "a SearchRequest's `schemas` must be [{SEARCH_SCHEMA:?}]"
        )));
    }
    let text = |k: &str| -> Result<Option<String>, ScimError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Array(a)) => Ok(Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Some(v) => Err(ScimError::value(format!("{k} cannot be {v}"))),
        }
    };
    Ok(ListParams {
        filter: text("filter")?,
        sort_by: text("sortBy")?,
        sort_order: text("sortOrder")?,
        start_index: text("startIndex")?,
        count: text("count")?,
        attributes: text("attributes")?,
        excluded_attributes: text("excludedAttributes")?,
        cursor: text("cursor")?,
    })
}

async fn search_kind(st: ScimState, kind: ResourceKind, req: Request) -> Answer {
    let headers = req.headers().clone();
    authorize(&st, &headers, SCOPE_READ).await?;
    let body = read_json(req, st.config.max_body_bytes).await?;
    let p = search_params(body)?;
    list(&st, &headers, kind, p).await
}

async fn search_users(State(st): State<ScimState>, req: Request) -> Answer {
    search_kind(st, ResourceKind::User, req).await
}

async fn search_groups(State(st): State<ScimState>, req: Request) -> Answer {
    search_kind(st, ResourceKind::Group, req).await
}

/// `POST /.search`: users then groups, each included when the filter's
/// attributes belong to it.
async fn search_root(State(st): State<ScimState>, req: Request) -> Answer {
    let headers = req.headers().clone();
    authorize(&st, &headers, SCOPE_READ).await?;
    let body = read_json(req, st.config.max_body_bytes).await?;
    let p = search_params(body)?;
    let (q, proj) = build_query(&st, None, &p)?;
    let kinds: Vec<ResourceKind> = [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .filter(|k| {
            q.filter
                .as_ref()
                .is_none_or(|f| check_filter(*k, f).is_ok())
        })
        .collect();
    if kinds.is_empty() {
        return Err(ScimError::filter("the filter names attributes no resource type has").into());
    }
    let base = base_url(&st, &headers);
    let mut total = 0;
    let mut items = Vec::new();
    let mut skip = q.start_index.saturating_sub(1);
    let mut want = q.count;
    for kind in kinds {
        // How many this type has, then the slice of the combined list it holds.
        let counted = st
            .backend
            .list(
                kind,
                &ListQuery {
                    start_index: 1,
                    count: 0,
                    cursor: None,
                    ..q.clone()
                },
            )
            .await?;
        total += counted.total;
        if want > 0 && skip < counted.total {
            let page = st
                .backend
                .list(
                    kind,
                    &ListQuery {
                        start_index: skip + 1,
                        count: want,
                        cursor: None,
                        ..q.clone()
                    },
                )
                .await?;
            want = want.saturating_sub(page.items.len() as u64);
            items.extend(
                page.items
                    .iter()
                    .map(|s| resource::project(kind, &render(kind, s, &base), &proj)),
            );
            skip = 0;
        } else {
            skip = skip.saturating_sub(counted.total);
        }
    }
    Ok(Reply::json(
        StatusCode::OK,
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "itemsPerPage": items.len(),
            "startIndex": q.start_index,
            "Resources": items,
        }),
    ))
}

// ---- single resources ----

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjParams {
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

async fn get_one(
    st: &ScimState,
    headers: &HeaderMap,
    kind: ResourceKind,
    id: &str,
    p: ProjParams,
) -> Answer {
    authorize(st, headers, SCOPE_READ).await?;
    let s = st
        .backend
        .get(kind, id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("{} {id:?}", kind.name())))?;
    if let Some(v) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && v.split(',')
            .any(|t| t.trim() == etag(s.version) || t.trim() == "*")
    {
        return Ok(Reply {
            status: StatusCode::NOT_MODIFIED,
            body: None,
            headers: vec![(header::ETAG, etag(s.version))],
        });
    }
    let base = base_url(st, headers);
    let proj = Projection::parse(p.attributes.as_deref(), p.excluded_attributes.as_deref());
    Ok(one(kind, &s, &base, &proj, StatusCode::OK))
}

async fn get_user(
    State(st): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<ProjParams>,
) -> Answer {
    get_one(&st, &headers, ResourceKind::User, &id, p).await
}

async fn get_group(
    State(st): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<ProjParams>,
) -> Answer {
    get_one(&st, &headers, ResourceKind::Group, &id, p).await
}

async fn create(st: ScimState, kind: ResourceKind, p: ProjParams, req: Request) -> Answer {
    let headers = req.headers().clone();
    let who = authorize(&st, &headers, SCOPE_WRITE).await?;
    let body = read_json(req, st.config.max_body_bytes).await?;
    let resource = resource::normalize(kind, body)?;
    let s = st.backend.create(&who, kind, resource).await?;
    let base = base_url(&st, &headers);
    let proj = Projection::parse(p.attributes.as_deref(), p.excluded_attributes.as_deref());
    Ok(one(kind, &s, &base, &proj, StatusCode::CREATED))
}

async fn create_users(
    State(st): State<ScimState>,
    Query(p): Query<ProjParams>,
    req: Request,
) -> Answer {
    create(st, ResourceKind::User, p, req).await
}

async fn create_groups(
    State(st): State<ScimState>,
    Query(p): Query<ProjParams>,
    req: Request,
) -> Answer {
    create(st, ResourceKind::Group, p, req).await
}

async fn put(st: ScimState, kind: ResourceKind, id: String, p: ProjParams, req: Request) -> Answer {
    let headers = req.headers().clone();
    let who = authorize(&st, &headers, SCOPE_WRITE).await?;
    let version = if_match(&headers)?;
    let body = read_json(req, st.config.max_body_bytes).await?;
    let resource = resource::normalize(kind, body)?;
    let s = st
        .backend
        .replace(&who, kind, &id, resource, version)
        .await?;
    let base = base_url(&st, &headers);
    let proj = Projection::parse(p.attributes.as_deref(), p.excluded_attributes.as_deref());
    Ok(one(kind, &s, &base, &proj, StatusCode::OK))
}

async fn put_user(
    State(st): State<ScimState>,
    Path(id): Path<String>,
    Query(p): Query<ProjParams>,
    req: Request,
) -> Answer {
    put(st, ResourceKind::User, id, p, req).await
}

async fn put_group(
    State(st): State<ScimState>,
    Path(id): Path<String>,
    Query(p): Query<ProjParams>,
    req: Request,
) -> Answer {
    put(st, ResourceKind::Group, id, p, req).await
}

async fn patch_one(
    st: ScimState,
    kind: ResourceKind,
    id: String,
    p: ProjParams,
    req: Request,
) -> Answer {
    let headers = req.headers().clone();
    let who = authorize(&st, &headers, SCOPE_WRITE).await?;
    let version = if_match(&headers)?;
    let body = read_json(req, st.config.max_body_bytes).await?;
    let ops = patch::parse_request(&body)?;
    let s = st.backend.patch(&who, kind, &id, &ops, version).await?;
    let base = base_url(&st, &headers);
    let proj = Projection::parse(p.attributes.as_deref(), p.excluded_attributes.as_deref());
    Ok(one(kind, &s, &base, &proj, StatusCode::OK))
}

async fn patch_user(
    State(st): State<ScimState>,
    Path(id): Path<String>,
    Query(p): Query<ProjParams>,
    req: Request,
) -> Answer {
    patch_one(st, ResourceKind::User, id, p, req).await
}

async fn patch_group(
    State(st): State<ScimState>,
    Path(id): Path<String>,
    Query(p): Query<ProjParams>,
    req: Request,
) -> Answer {
    patch_one(st, ResourceKind::Group, id, p, req).await
}

async fn delete_one(st: &ScimState, headers: &HeaderMap, kind: ResourceKind, id: &str) -> Answer {
    let who = authorize(st, headers, SCOPE_WRITE).await?;
    let version = if_match(headers)?;
    st.backend.delete(&who, kind, id, version).await?;
    Ok(Reply {
        status: StatusCode::NO_CONTENT,
        body: None,
        headers: Vec::new(),
    })
}

async fn delete_user(
    State(st): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    delete_one(&st, &headers, ResourceKind::User, &id).await
}

async fn delete_group(
    State(st): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    delete_one(&st, &headers, ResourceKind::Group, &id).await
}

// ---- bulk ----

/// Replaces every `"bulkId:x"` string in `v` with the id created for `x`.
fn resolve_bulk_ids(v: &mut Value, ids: &HashMap<String, String>) -> Result<(), String> {
    match v {
        Value::String(s) => {
            if let Some(r) = s.strip_prefix("bulkId:") {
                match ids.get(r) {
                    Some(id) => *s = id.clone(),
                    None => return Err(r.to_owned()),
                }
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|x| resolve_bulk_ids(x, ids)),
        Value::Object(o) => o.values_mut().try_for_each(|x| resolve_bulk_ids(x, ids)),
        _ => Ok(()),
    }
}

/// Whether a bulk operation deactivates or deletes a user.
fn deactivates(method: &str, path: &str, data: Option<&Value>) -> bool {
    if !path.starts_with("/Users") {
        return false;
    }
    if method.eq_ignore_ascii_case("DELETE") {
        return true;
    }
    let inactive = |v: &Value| resource::as_bool(v) == Some(false);
    match data {
        Some(Value::Object(o)) => {
            if o.iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("active") && inactive(v))
            {
                return true;
            }
            // A PatchOp: an operation on `active`, or a value holding it.
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
                .and_then(|(_, v)| v.as_array())
                .is_some_and(|ops| {
                    ops.iter().any(|op| {
                        let path_active = op
                            .get("path")
                            .and_then(Value::as_str)
                            .is_some_and(|p| p.eq_ignore_ascii_case("active"));
                        let value = op.get("value");
                        (path_active && value.is_some_and(inactive))
                            || value.and_then(Value::as_object).is_some_and(|m| {
                                m.iter()
                                    .any(|(k, v)| k.eq_ignore_ascii_case("active") && inactive(v))
                            })
                    })
                })
        }
        _ => false,
    }
}

async fn bulk(State(st): State<ScimState>, req: Request) -> Answer {
    let headers = req.headers().clone();
    let who = authorize(&st, &headers, SCOPE_WRITE).await?;
    let body = read_json(req, st.config.bulk_max_payload)
        .await
        .map_err(|mut e| {
            if e.status == 413 {
                e.detail = format!(
                    "the bulk request is larger than maxPayloadSize ({} bytes)",
                    st.config.bulk_max_payload
                );
            }
            e
        })?;
    let Value::Object(o) = body else {
        return Err(ScimError::syntax("a BulkRequest must be a JSON object").into());
    };
    let ok = o
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(BULK_REQUEST)));
    if !ok {
        return Err(ScimError::syntax(format!(
            "a BulkRequest's `schemas` must be [{BULK_REQUEST:?}]"
        ))
        .into());
    }
    let fail_on_errors = match o.get("failOnErrors") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0),
        Some(v) => {
            return Err(ScimError::value(format!(
                "failOnErrors must be a positive integer, not {v}"
            ))
            .into());
        }
    };
    let Some(Value::Array(ops)) = o.get("Operations") else {
        return Err(ScimError::syntax("a BulkRequest needs an `Operations` list").into());
    };
    if ops.len() > st.config.bulk_max_operations {
        return Err(ScimError {
            status: 413,
            scim_type: Some(ScimType::TooMany),
            detail: format!(
                "the bulk request has {} operations; maxOperations is {}",
                ops.len(),
                st.config.bulk_max_operations
            ),
        }
        .into());
    }
    let n = ops
        .iter()
        .filter(|op| {
            deactivates(
                op.get("method").and_then(Value::as_str).unwrap_or(""),
                op.get("path").and_then(Value::as_str).unwrap_or(""),
                op.get("data"),
            )
        })
        .count() as u64;
    if n > 0 {
        st.backend.check_bulk(&who, n).await?;
    }
    let base = base_url(&st, &headers);
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut results = Vec::new();
    let mut errors = 0u64;
    for (i, op) in ops.iter().enumerate() {
        if fail_on_errors.is_some_and(|f| errors >= f) {
            break;
        }
        let method = op
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_uppercase();
        let bulk_id = op.get("bulkId").and_then(Value::as_str).map(str::to_owned);
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let outcome = bulk_one(
            &st,
            &who,
            &method,
            &path,
            bulk_id.as_deref(),
            op,
            &mut ids,
            &base,
            i,
        )
        .await;
        let mut r = Map::new();
        r.insert("method".into(), Value::String(method.clone()));
        if let Some(b) = &bulk_id {
            r.insert("bulkId".into(), Value::String(b.clone()));
        }
        match outcome {
            Ok((status, location, version)) => {
                r.insert("status".into(), Value::String(status.to_string()));
                if let Some(l) = location {
                    r.insert("location".into(), Value::String(l));
                }
                if let Some(v) = version {
                    r.insert("version".into(), Value::String(etag(v)));
                }
            }
            Err(e) => {
                errors += 1;
                r.insert("status".into(), Value::String(e.status.to_string()));
                r.insert("response".into(), e.body());
            }
        }
        results.push(Value::Object(r));
    }
    Ok(Reply::json(
        StatusCode::OK,
        json!({"schemas": [BULK_RESPONSE], "Operations": results}),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn bulk_one(
    st: &ScimState,
    who: &Principal,
    method: &str,
    path: &str,
    bulk_id: Option<&str>,
    op: &Value,
    ids: &mut HashMap<String, String>,
    base: &str,
    index: usize,
) -> Result<(u16, Option<String>, Option<i64>), ScimError> {
    let at = |e: ScimError| ScimError {
        detail: format!("Operations[{index}]: {}", e.detail),
        ..e
    };
    let path = match path.rsplit_once('/') {
        Some((head, last)) if last.starts_with("bulkId:") => {
            let mut v = Value::String(last.to_owned());
            resolve_bulk_ids(&mut v, ids).map_err(|r| {
                at(ScimError::new(
                    409,
                    format!("bulkId {r:?} names no operation that succeeded before this one"),
                ))
            })?;
            format!("{head}/{}", v.as_str().unwrap_or(""))
        }
        _ => path.to_owned(),
    };
    let mut data = op.get("data").cloned();
    if let Some(d) = &mut data {
        resolve_bulk_ids(d, ids).map_err(|r| {
            at(ScimError::new(
                409,
                format!("bulkId {r:?} names no operation that succeeded before this one"),
            ))
        })?;
    }
    let version = match op.get("version").and_then(Value::as_str) {
        Some(v) => parse_etag(v).map_err(at)?,
        None => None,
    };
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let kind = match parts.next() {
        Some("Users") => ResourceKind::User,
        Some("Groups") => ResourceKind::Group,
        _ => {
            return Err(at(ScimError::path(format!(
                "bulk path {path:?} names no resource type"
            ))));
        }
    };
    let id = parts.next().filter(|s| !s.is_empty());
    let need_data = || {
        data.clone()
            .ok_or_else(|| at(ScimError::syntax("this operation needs `data`")))
    };
    let loc = |id: &str| Some(format!("{base}{}/{id}", kind.endpoint()));
    match (method, id) {
        ("POST", None) => {
            let bulk_id = bulk_id
                .ok_or_else(|| at(ScimError::syntax("a POST in a bulk request needs a bulkId")))?;
            let r = resource::normalize(kind, need_data()?).map_err(at)?;
            let s = st.backend.create(who, kind, r).await.map_err(at)?;
            ids.insert(bulk_id.to_owned(), s.id.clone());
            Ok((201, loc(&s.id), Some(s.version)))
        }
        ("PUT", Some(id)) => {
            let r = resource::normalize(kind, need_data()?).map_err(at)?;
            let s = st
                .backend
                .replace(who, kind, id, r, version)
                .await
                .map_err(at)?;
            Ok((200, loc(&s.id), Some(s.version)))
        }
        ("PATCH", Some(id)) => {
            let ops = patch::parse_request(&need_data()?).map_err(at)?;
            let s = st
                .backend
                .patch(who, kind, id, &ops, version)
                .await
                .map_err(at)?;
            Ok((200, loc(&s.id), Some(s.version)))
        }
        ("DELETE", Some(id)) => {
            st.backend
                .delete(who, kind, id, version)
                .await
                .map_err(at)?;
            Ok((204, loc(id), None))
        }
        _ => Err(at(ScimError::syntax(format!(
            "unsupported bulk operation {method} {path} (POST to a collection; PUT, PATCH or DELETE to a resource)"
        )))),
    }
}
