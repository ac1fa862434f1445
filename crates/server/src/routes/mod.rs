//! Route table, health endpoints, and the middleware every request passes:
//! metrics and one log line per request, and the error envelope around any
//! framework error that is not already JSON.

pub mod apps;
pub mod environments;
pub mod runner;
pub mod runs;
pub mod schedules;
pub mod stream;
pub mod teams;
pub mod webhooks;

use crate::error::{code_for, envelope, ApiError};
use crate::extract::State;
use crate::openapi::ApiDoc;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State as AxState};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body::Body as _;
use minitower_core::api::Health;
use std::time::Instant;
use utoipa::OpenApi;

/// Run id attached to a response so the request log can name it.
#[derive(Clone, Copy, Debug)]
pub struct RunIdExt(pub i64);

impl RunIdExt {
    /// Tags a response with the run it concerns.
    pub fn attach(run_id: i64, mut resp: Response) -> Response {
        resp.extensions_mut().insert(RunIdExt(run_id));
        resp
    }
}

/// Largest body of a secret write: the value (64 KiB) JSON-escaped, bounded
/// before parsing.
const SECRET_BODY_LIMIT: usize = 512 * 1024;

/// Builds the whole HTTP surface.
pub fn router(state: State) -> Router {
    let body_limit = usize::try_from(state.config.max_request_body_size).unwrap_or(usize::MAX);
    let api = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/bootstrap/team", post(teams::bootstrap))
        .route("/api/v1/teams/login", post(teams::login))
        .route("/api/v1/me", get(teams::me))
        .route(
            "/api/v1/tokens",
            post(teams::create_token).get(teams::list_tokens),
        )
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(teams::revoke_token),
        )
        .route(
            "/api/v1/environments",
            post(environments::create_environment).get(environments::list_environments),
        )
        .route(
            "/api/v1/environments/{name}",
            axum::routing::delete(environments::delete_environment),
        )
        .route("/api/v1/secrets", get(environments::list_secrets))
        .route(
            "/api/v1/secrets/{name}",
            axum::routing::put(environments::put_secret)
                .layer(DefaultBodyLimit::max(SECRET_BODY_LIMIT))
                .delete(environments::delete_secret),
        )
        .route("/api/v1/apps", post(apps::create_app).get(apps::list_apps))
        .route("/api/v1/apps/{app}", get(apps::get_app))
        .route(
            "/api/v1/apps/{app}/versions",
            post(apps::create_version)
                .layer(DefaultBodyLimit::disable())
                .get(apps::list_versions),
        )
        .route(
            "/api/v1/apps/{app}/versions/{version}",
            get(apps::get_version),
        )
        .route(
            "/api/v1/apps/{app}/runs",
            post(runs::create_run).get(runs::list_app_runs),
        )
        .route(
            "/api/v1/apps/{app}/schedules",
            get(schedules::list_schedules).post(schedules::create_schedule),
        )
        .route(
            "/api/v1/schedules/{id}",
            get(schedules::get_schedule)
                .patch(schedules::update_schedule)
                .delete(schedules::delete_schedule),
        )
        .route(
            "/api/v1/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route(
            "/api/v1/webhooks/{id}",
            get(webhooks::get_webhook)
                .patch(webhooks::update_webhook)
                .delete(webhooks::delete_webhook),
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route("/api/v1/webhooks/{id}/test", post(webhooks::send_test))
        .route("/api/v1/runs", get(runs::list_runs))
        .route("/api/v1/runs/summary", get(runs::summary))
        .route("/api/v1/runs/stats", get(runs::stats))
        .route("/api/v1/runs/lease", post(runner::lease))
        .route("/api/v1/runs/{run}", get(runs::get_run))
        .route("/api/v1/runs/{run}/cancel", post(runs::cancel))
        .route(
            "/api/v1/runs/{run}/logs",
            get(runs::get_logs).post(runner::post_logs),
        )
        .route("/api/v1/runs/{run}/logs/stream", get(stream::stream_logs))
        .route("/api/v1/runs/{run}/start", post(runner::start))
        .route("/api/v1/runs/{run}/heartbeat", post(runner::heartbeat))
        .route("/api/v1/runs/{run}/release", post(runner::release))
        .route("/api/v1/runners/offline", post(runner::offline))
        .route("/api/v1/runs/{run}/result", post(runner::result))
        .route("/api/v1/runs/{run}/artifact", get(runner::artifact))
        .route("/api/v1/runners/register", post(runner::register))
        .route("/api/v1/admin/runners", get(runner::list_runners))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    api.fallback(crate::ui::serve)
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(envelope_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Health)))]
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: Some(minitower_core::VERSION.into()),
    })
}

#[utoipa::path(get, path = "/ready", tag = "health", responses((status = 200, body = Health), (status = 503)))]
pub(crate) async fn ready(AxState(st): AxState<State>) -> Result<Json<Health>, ApiError> {
    st.store
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(format!("database not ready: {e}")))?;
    Ok(Json(Health {
        status: "ready".into(),
        version: None,
    }))
}

/// Metrics; with `MINITOWER_METRICS_TOKEN` set, only for `Authorization:
/// Bearer <that token>` (they name every team and app).
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body = String, description = "Prometheus metrics in the OpenMetrics text format"),
        (status = 401, body = minitower_core::api::ErrorEnvelope, description = "MINITOWER_METRICS_TOKEN is set and was not presented")))]
pub(crate) async fn metrics(
    AxState(st): AxState<State>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(want) = st.config.metrics_token.as_deref() {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .unwrap_or_default();
        use subtle::ConstantTimeEq;
        let same: bool = crate::state::sha256(presented.as_bytes())
            .ct_eq(&crate::state::sha256(want.as_bytes()))
            .into();
        if !same {
            return Err(ApiError::unauthorized(
                "metrics need Authorization: Bearer <MINITOWER_METRICS_TOKEN>",
            ));
        }
    }
    let text = st.metrics.render(st.store.as_ref()).await?;
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Wraps framework errors (bad path, body limit, unsupported media type)
/// that did not come out as the JSON envelope.
async fn envelope_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_string();
    }
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY
        || status == StatusCode::UNSUPPORTED_MEDIA_TYPE
    {
        StatusCode::BAD_REQUEST
    } else {
        parts.status
    };
    let mut out = envelope(status, code_for(status), &message);
    out.extensions_mut().extend(parts.extensions);
    out
}

/// Metrics and one structured log line per request.
async fn observe(AxState(st): AxState<State>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| fallback_label(req.uri().path()));
    let req_bytes = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let resp = next.run(req).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    let resp_bytes = resp.body().size_hint().exact().unwrap_or(0);
    st.metrics.observe_http(
        method.as_str(),
        &path,
        status,
        elapsed.as_secs_f64(),
        req_bytes,
        resp_bytes,
    );
    let run_id = resp.extensions().get::<RunIdExt>().map(|r| r.0);
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if path == "/health" || path == "/metrics" || method == Method::OPTIONS {
        tracing::debug!(%method, path, status, latency_ms, run_id, "request");
    } else if status >= 500 {
        tracing::error!(%method, path, status, latency_ms, run_id, "request");
    } else {
        tracing::info!(%method, path, status, latency_ms, run_id, "request");
    }
    resp
}

/// Label for paths no route matched: the UI, or a bounded "unmatched".
fn fallback_label(path: &str) -> String {
    if path.starts_with("/api/") {
        "unmatched".into()
    } else if path.starts_with("/assets/") {
        "/assets/{file}".into()
    } else {
        "/ui".into()
    }
}
