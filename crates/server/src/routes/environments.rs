//! Environments and their secrets, per team.
//!
//! Secret values come in once (`PUT`), are sealed with the server's key ring
//! before they reach the store, and never go out again through this API:
//! lists carry names, versions and times only. Values are never logged: the
//! request body type redacts itself in `Debug`, and no error message here
//! quotes a value.

use crate::error::{ApiError, ApiResult};
use crate::extract::{RequiredJsonBody, State, TeamAuth};
use crate::secrets_crypto::{SecretRef, MAX_SECRET_BYTES};
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use minitower_core::api::*;
use minitower_core::towerfile::AppSection;
use minitower_store::{NewSecret, StoreError};
use serde::Deserialize;

/// How often a secret write is retried when another write raced it.
const PUT_ATTEMPTS: usize = 5;

/// Maps the store's "no such environment" to a 400 naming the field, for
/// calls where the environment is an input (run creation, secrets).
pub fn unknown_environment(name: &str) -> impl FnOnce(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::NotFound("environment") => ApiError::invalid_request(format!(
            "environment: the team has no environment {name:?} (create it with \
             POST /api/v1/environments or `minitower environments create {name}`)"
        )),
        other => other.into(),
    }
}

fn environment_name(name: &str) -> ApiResult<()> {
    minitower_core::validate::slug(name)
        .map_err(|e| ApiError::invalid_request(format!("environment: {e}")))
}

/// The team's environments with the online runners serving each.
#[utoipa::path(get, path = "/api/v1/environments", tag = "environments",
    responses((status = 200, body = EnvironmentList), (status = 401, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn list_environments(
    AxState(st): AxState<State>,
    auth: TeamAuth,
) -> ApiResult<Json<EnvironmentList>> {
    Ok(Json(EnvironmentList {
        environments: st.store.list_environments(auth.team.id).await?,
    }))
}

/// Adds an environment to the team.
#[utoipa::path(post, path = "/api/v1/environments", tag = "environments",
    request_body = CreateEnvironmentRequest,
    responses((status = 201, body = Environment), (status = 400, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn create_environment(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    RequiredJsonBody(req): RequiredJsonBody<CreateEnvironmentRequest>,
) -> ApiResult<impl IntoResponse> {
    environment_name(&req.name)?;
    let env = st
        .store
        .create_environment(auth.team.id, &req.name, st.now())
        .await?;
    Ok((StatusCode::CREATED, Json(env)))
}

/// Deletes an environment and its secrets: refused (409) for `default` and
/// while runs are queued or running in it.
#[utoipa::path(delete, path = "/api/v1/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "environment name")),
    responses((status = 204), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn delete_environment(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if minitower_core::validate::slug(&name).is_err() {
        return Err(ApiError::not_found(&format!("environment {name:?}")));
    }
    st.store
        .delete_environment(auth.team.id, &name)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::not_found(&format!("environment {name:?}")),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?environment=E` of the secrets calls (default `default`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SecretsQuery {
    /// Environment of the secrets (default `default`).
    #[param(pattern = r"^[a-z][a-z0-9-]{0,62}$")]
    pub environment: Option<String>,
}

impl SecretsQuery {
    fn environment(&self) -> ApiResult<&str> {
        let env = self.environment.as_deref().unwrap_or("default");
        environment_name(env)?;
        Ok(env)
    }
}

fn secret_name(name: &str) -> ApiResult<()> {
    AppSection::secret_name_ok(name)
        .map_err(|why| ApiError::invalid_request(format!("name: {name:?} {why}")))
}

/// Names, versions and update times of an environment's secrets; never values.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", params(SecretsQuery),
    responses((status = 200, body = SecretList), (status = 400, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn list_secrets(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Query(q): Query<SecretsQuery>,
) -> ApiResult<Json<SecretList>> {
    let env = q.environment()?;
    let secrets = st
        .store
        .list_secrets(auth.team.id, env)
        .await
        .map_err(unknown_environment(env))?;
    Ok(Json(SecretList {
        environment: env.to_string(),
        secrets,
    }))
}

/// Sets a secret (201 when new, 200 when replaced; the version goes up by
/// one). The value is sealed before it is stored and is never shown again.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", description = "environment variable name"), SecretsQuery),
    request_body = PutSecretRequest,
    responses((status = 201, body = SecretInfo), (status = 200, body = SecretInfo),
              (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn put_secret(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(name): Path<String>,
    Query(q): Query<SecretsQuery>,
    RequiredJsonBody(req): RequiredJsonBody<PutSecretRequest>,
) -> ApiResult<impl IntoResponse> {
    secret_name(&name)?;
    let env = q.environment()?;
    let value = req.value;
    if value.is_empty() {
        return Err(ApiError::invalid_request("value: must not be empty"));
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::invalid_request(format!(
            "value: at most {MAX_SECRET_BYTES} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(ApiError::invalid_request(
            "value: must not contain NUL (it becomes an environment variable)",
        ));
    }
    let team_id = auth.team.id;
    for _ in 0..PUT_ATTEMPTS {
        let stored = st.store.secret_version(team_id, env, &name).await?;
        let version = stored.unwrap_or(0) + 1;
        let at = SecretRef {
            team_id,
            environment: env,
            name: &name,
            version,
        };
        let sealed = st
            .keys
            .seal(&at, value.as_bytes())
            .map_err(ApiError::internal)?;
        let put = st
            .store
            .put_secret(NewSecret {
                team_id,
                environment: env,
                name: &name,
                version,
                sealed_value: &sealed,
                key_id: st.keys.primary_id(),
                now: st.now(),
            })
            .await;
        match put {
            Ok(info) => {
                let status = if stored.is_none() {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                return Ok((status, Json(info)));
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(unknown_environment(env)(e)),
        }
    }
    Err(ApiError::conflict(format!(
        "secret {name:?} is being changed concurrently; try again"
    )))
}

/// Deletes a secret of an environment.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", description = "environment variable name"), SecretsQuery),
    responses((status = 204), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn delete_secret(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(name): Path<String>,
    Query(q): Query<SecretsQuery>,
) -> ApiResult<StatusCode> {
    let env = q.environment()?;
    if AppSection::secret_name_ok(&name).is_err() {
        return Err(ApiError::not_found(&format!("secret {name:?}")));
    }
    st.store
        .delete_secret(auth.team.id, env, &name)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => {
                ApiError::not_found(&format!("secret {name:?} in environment {env:?}"))
            }
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}
