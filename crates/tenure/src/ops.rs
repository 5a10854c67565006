//! The service's operational endpoints, beside `/scim/v2`:
//!
//! - `GET /healthz`: the process is up (200).
//! - `GET /readyz`: 200 once the store answers and the scheduler finished its
//!   first round; 503 with the reason otherwise.
//! - `GET /metrics`: Prometheus text: queue depth by state, operations by
//!   system and outcome, per-operation latency per system, time to revoke,
//!   quarantined systems.
//! - `GET /.well-known/jwks.json`: the keys security event tokens are signed
//!   with (404 when none are configured).
//! - `POST /api/v1/identities/{id}/suspend` and `…/resume` with
//!   `{"reason": "…"}`: the emergency suspend of `tenure suspend`, for a
//!   bearer token with the `suspend` scope; answers with each system's
//!   confirmation once every system answered (or failed).
//!
//! Errors are JSON `{"error": "…"}` with the status that says what happened
//! (400 bad request, 401 no valid token, 403 token without the scope, 404
//! unknown identity, 500 store or connector failure).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tenure_engine::{Engine, EngineError, NoProgress};

/// The scope the suspend API needs.
pub const SCOPE_SUSPEND: &str = "suspend";

/// What the endpoints share.
#[derive(Clone)]
pub struct OpsState {
    engine: Arc<Engine>,
    metrics: Option<PrometheusHandle>,
    ready: Arc<AtomicBool>,
}

impl OpsState {
    /// State over `engine`; `ready` is set once the scheduler finished its first round.
    pub fn new(engine: Arc<Engine>, ready: Arc<AtomicBool>) -> OpsState {
        OpsState {
            engine,
            metrics: install_recorder(),
            ready,
        }
    }
}

/// Installs the process's Prometheus recorder (once; later calls reuse it).
fn install_recorder() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ];
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tenure_time_to_revoke_seconds".into()),
                    &seconds,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tenure_operation_seconds".into()),
                        &seconds,
                    )
                })
                .and_then(PrometheusBuilder::install_recorder);
            match built {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the metrics recorder; /metrics will say so");
                    None
                }
            }
        })
        .clone()
}

/// The operational routes.
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/identities/{id}/suspend", post(suspend))
        .route("/api/v1/identities/{id}/resume", post(resume))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The public keys security event tokens are signed with (RFC 7517).
async fn jwks(State(s): State<OpsState>) -> Response {
    match &s.engine.notifier {
        Some(n) => Json(n.jwks()).into_response(),
        None => error(StatusCode::NOT_FOUND, "no [security_events] are configured"),
    }
}

async fn readyz(State(s): State<OpsState>) -> Response {
    if let Err(e) = s.engine.store.queue_counts().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"));
    }
    if !s.ready.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the scheduler has not finished its first round",
        );
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn metrics(State(s): State<OpsState>) -> Response {
    let Some(handle) = &s.metrics else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics recorder could not be installed",
        );
    };
    match s.engine.store.queue_counts().await {
        Ok(c) => {
            for (state, n) in [
                ("queued", c.queued),
                ("running", c.running),
                ("failed", c.failed),
            ] {
                metrics::gauge!("tenure_queue_operations", "state" => state).set(n as f64);
            }
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")),
    }
    if let Ok(health) = s.engine.store.system_health().await {
        for system in s.engine.connectors.keys() {
            let h = health.iter().find(|h| &h.system == system);
            metrics::gauge!("tenure_system_quarantined", "system" => system.to_string()).set(
                if h.is_some_and(|h| h.quarantined_since.is_some()) {
                    1.0
                } else {
                    0.0
                },
            );
            metrics::gauge!("tenure_system_consecutive_failures", "system" => system.to_string())
                .set(h.map_or(0.0, |h| h.failures as f64));
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// The token's name, if the request carries a valid token with the scope.
async fn authorise(s: &OpsState, headers: &HeaderMap) -> Result<String, Response> {
    let unauthorised = |why: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, why);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorised("a bearer token is required"));
    };
    let Some(secret) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return Err(unauthorised(
            "the Authorization header must be `Bearer TOKEN`",
        ));
    };
    let now = s.engine.wall.now();
    match s.engine.store.authenticate_token(secret.trim(), now).await {
        Ok(Some(t)) if t.scopes.iter().any(|x| x == SCOPE_SUSPEND) => Ok(t.name),
        Ok(Some(t)) => Err(error(
            StatusCode::FORBIDDEN,
            format!("token {:?} lacks the {SCOPE_SUSPEND:?} scope", t.name),
        )),
        Ok(None) => Err(unauthorised("the token is unknown, revoked or expired")),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store: {e}"),
        )),
    }
}

async fn suspend(
    State(s): State<OpsState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    set(s, id, headers, body, true).await
}

async fn resume(
    State(s): State<OpsState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    set(s, id, headers, body, false).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SuspendRequest {
    reason: String,
}

async fn set(
    s: OpsState,
    id: String,
    headers: HeaderMap,
    body: axum::body::Bytes,
    suspend: bool,
) -> Response {
    let token = match authorise(&s, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let request: SuspendRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body must be JSON {{\"reason\": \"…\"}}: {e}"),
            );
        }
    };
    let id = match tenure_core::IdentityId::new(id.as_str()) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("identity {id:?}: {e}")),
    };
    let outcome = tenure_engine::suspend::set_suspended_by(
        &s.engine,
        &format!("token:{token}"),
        &id,
        suspend,
        &request.reason,
        true,
        &NoProgress,
    )
    .await;
    match outcome {
        Ok(report) => {
            let status = if report.complete() {
                StatusCode::OK
            } else {
                // Accepted: what failed is retried by the queue and shown per system.
                StatusCode::ACCEPTED
            };
            (status, Json(report)).into_response()
        }
        Err(e @ EngineError::UnknownIdentity(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ EngineError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
