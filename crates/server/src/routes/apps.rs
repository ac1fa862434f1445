//! Apps and their immutable versions.

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, State, TeamAuth};
use crate::upload::receive_version;
use axum::extract::{Multipart, Path, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use minitower_core::api::*;
use minitower_core::validate;
use minitower_store::AppRecord;

/// Loads an app of the caller's team or answers 404.
pub async fn app_of(st: &State, auth: &TeamAuth, slug: &str) -> ApiResult<AppRecord> {
    st.store
        .get_app(auth.team.id, slug)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("app {slug:?}")))
}

/// Creates an app.
#[utoipa::path(post, path = "/api/v1/apps", tag = "apps", request_body = CreateAppRequest,
    responses((status = 201, body = App), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn create_app(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    JsonBody(req): JsonBody<CreateAppRequest>,
) -> ApiResult<impl IntoResponse> {
    validate::slug(&req.slug).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    if req
        .description
        .as_deref()
        .is_some_and(|d| d.chars().count() > 2000)
    {
        return Err(ApiError::invalid_request(
            "description must be at most 2000 characters",
        ));
    }
    let rec = st
        .store
        .create_app(
            auth.team.id,
            &req.slug,
            req.description.as_deref(),
            st.now(),
        )
        .await
        .map_err(|e| match e {
            minitower_store::StoreError::Conflict(_) => {
                ApiError::conflict(format!("app {:?} already exists", req.slug))
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(rec.app)))
}

/// Apps of the team.
#[utoipa::path(get, path = "/api/v1/apps", tag = "apps",
    responses((status = 200, body = AppList), (status = 401, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn list_apps(AxState(st): AxState<State>, auth: TeamAuth) -> ApiResult<Json<AppList>> {
    Ok(Json(AppList {
        apps: st.store.list_apps(auth.team.id).await?,
    }))
}

/// One app with its latest version number.
#[utoipa::path(get, path = "/api/v1/apps/{app}", tag = "apps", params(("app" = String, Path)),
    responses((status = 200, body = App), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn get_app(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(slug): Path<String>,
) -> ApiResult<Json<App>> {
    Ok(Json(app_of(&st, &auth, &slug).await?.app))
}

/// Uploads a version (multipart: `artifact`, `entrypoint`, `timeout_seconds`, `params_schema`,
/// the retry fields and the job fields; see docs/api.md).
#[utoipa::path(post, path = "/api/v1/apps/{app}/versions", tag = "apps", params(("app" = String, Path)),
    request_body(content_type = "multipart/form-data", description = "artifact (file), entrypoint, timeout_seconds, params_schema, retries, retry_delay; job fields: command (JSON list), shell, git (JSON {url, ref, command|script, secret}), binary (JSON {url, sha256, args}), pty (true|false|JSON {cols, rows}), priority (number or foreground|background|best_effort), limits (JSON {memory, cpus, pids, disk})"),
    responses((status = 201, body = Version), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
              (status = 413, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn create_version(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(slug): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<impl IntoResponse> {
    let app = app_of(&st, &auth, &slug).await?;
    let multipart = multipart.map_err(|e| {
        ApiError::invalid_request(format!("expected a multipart/form-data body: {e}"))
    })?;
    let new_version = receive_version(&st, multipart).await?;
    let version = st
        .store
        .create_version(auth.team.id, app.id, new_version, st.now())
        .await?;
    Ok((StatusCode::CREATED, Json(version)))
}

/// Versions of an app, newest first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/versions", tag = "apps", params(("app" = String, Path)),
    responses((status = 200, body = VersionList), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn list_versions(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(slug): Path<String>,
) -> ApiResult<Json<VersionList>> {
    let app = app_of(&st, &auth, &slug).await?;
    Ok(Json(VersionList {
        versions: st.store.list_versions(auth.team.id, app.id).await?,
    }))
}

/// One version (`latest` or its number): the CLI reads its `params_schema`
/// to type `-p key=value` before it creates anything.
#[utoipa::path(get, path = "/api/v1/apps/{app}/versions/{version}", tag = "apps",
    params(("app" = String, Path), ("version" = String, Path, pattern = r"^([1-9][0-9]{0,17}|latest)$", description = "a version number or `latest`")),
    responses((status = 200, body = Version), (status = 404, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn get_version(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path((slug, version)): Path<(String, String)>,
) -> ApiResult<Json<Version>> {
    let wanted = match version.as_str() {
        "latest" => None,
        n => match n.parse::<i64>() {
            Ok(n) if n >= 1 => Some(n),
            // A path that names no version is a 404, like any other: the
            // contract's pattern says what names one.
            _ => {
                return Err(ApiError::not_found(&format!(
                    "version {n:?} of app {slug:?}"
                )))
            }
        },
    };
    let app = app_of(&st, &auth, &slug).await?;
    let rec = st
        .store
        .get_version(auth.team.id, app.id, wanted)
        .await?
        .ok_or_else(|| match wanted {
            Some(n) => ApiError::not_found(&format!("version {n} of app {slug:?}")),
            None => ApiError::not_found(&format!(
                "latest version of app {slug:?} (none uploaded yet)"
            )),
        })?;
    Ok(Json(rec.version))
}
