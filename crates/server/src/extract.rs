//! Request extractors: JSON bodies with envelope errors, and the four kinds
//! of callers (bootstrap, team, registration, runner) plus the lease token.

use crate::error::ApiError;
use crate::state::{hash_token, AppState};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use minitower_core::api::{Role, Team, LEASE_TOKEN_HEADER};
use minitower_store::RunnerIdentity;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Shared state handle as extracted by handlers.
pub type State = Arc<AppState>;

/// A JSON object body. Malformed JSON (or JSON that is not an object) is a
/// 400 with the reason; an empty body reads as `{}` so calls whose fields
/// are all optional need none.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(
                        "request body is larger than this call accepts \
                         (MINITOWER_MAX_REQUEST_BODY_SIZE; 512 KiB for a secret)",
                    )
                } else {
                    ApiError::invalid_request(format!("cannot read request body: {e}"))
                }
            })?;
        let slice: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // Every body of the API is an object; serde would otherwise accept a
        // JSON array for a struct (`[]` or `["acme","Acme"]`) field by field.
        if slice.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::invalid_request(
                "request body must be a JSON object",
            ));
        }
        serde_json::from_slice(slice)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
    }
}

/// A JSON object body that must be present: an empty body is a 400, not
/// `{}` (for calls that create something, so a stray empty POST does not).
pub struct RequiredJsonBody<T>(pub T);

impl<S, T> FromRequest<S> for RequiredJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(
                        "request body is larger than this call accepts \
                         (MINITOWER_MAX_REQUEST_BODY_SIZE; 512 KiB for a secret)",
                    )
                } else {
                    ApiError::invalid_request(format!("cannot read request body: {e}"))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid_request(
                "a JSON object body is required (send {} for the defaults)",
            ));
        }
        let req = Request::new(axum::body::Body::from(bytes));
        JsonBody::<T>::from_request(req, state)
            .await
            .map(|JsonBody(v)| RequiredJsonBody(v))
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be 'Bearer <token>'"))?;
    Ok(token)
}

/// A caller holding a team token.
#[derive(Debug, Clone)]
pub struct TeamAuth {
    pub token_id: i64,
    pub team: Team,
    pub role: Role,
    /// Narrower than the role when set (checked in the extractor).
    pub scope: Option<minitower_core::api::TokenScope>,
}

impl<S> FromRequestParts<S> for TeamAuth
where
    S: Send + Sync,
    State: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let st = State::from_ref(state);
        let token = bearer(parts)?;
        let hash = hash_token(token);
        let ident = st
            .auth
            .team(&hash, || st.store.token_by_hash(&hash))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked team token"))?;
        let now = st.now();
        if let Some(at) = ident.expires_at.filter(|at| *at <= now) {
            let at = minitower_core::api::format_ts(&at);
            st.token_refused(ident.token_id, &format!("expired at {at}"))
                .await;
            return Err(ApiError::unauthorized(format!(
                "team token expired at {at}; log in again or create a new token"
            )));
        }
        if let Some(scope) = &ident.scope {
            if let Err(why) = crate::scope::allows(&st, parts, ident.team.id, scope).await {
                st.token_refused(ident.token_id, &why).await;
                return Err(ApiError::forbidden(why));
            }
        }
        if st.should_touch(ident.token_id) {
            if let Err(e) = st.store.touch_token(ident.token_id, st.now()).await {
                tracing::warn!(error = %e, "could not record token use");
            }
        }
        Ok(TeamAuth {
            token_id: ident.token_id,
            team: ident.team,
            role: ident.role,
            scope: ident.scope,
        })
    }
}

/// The client's IP address (the TCP peer), or the unspecified address when
/// the router runs without connection info.
pub struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Ok(ClientAddr(ip))
    }
}

/// A caller holding an admin team token.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub TeamAuth);

impl<S> FromRequestParts<S> for AdminAuth
where
    S: Send + Sync,
    State: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = TeamAuth::from_request_parts(parts, state).await?;
        if auth.role != Role::Admin {
            return Err(ApiError::forbidden("this endpoint needs an admin token"));
        }
        Ok(AdminAuth(auth))
    }
}

/// A caller holding the bootstrap secret.
pub struct BootstrapAuth;

impl<S> FromRequestParts<S> for BootstrapAuth
where
    S: Send + Sync,
    State: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let st = State::from_ref(state);
        if st.is_bootstrap_token(bearer(parts)?) {
            Ok(BootstrapAuth)
        } else {
            Err(ApiError::unauthorized("invalid bootstrap token"))
        }
    }
}

/// A caller holding the runner registration secret.
pub struct RegistrationAuth;

impl<S> FromRequestParts<S> for RegistrationAuth
where
    S: Send + Sync,
    State: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let st = State::from_ref(state);
        if st.is_registration_token(bearer(parts)?) {
            Ok(RegistrationAuth)
        } else {
            Err(ApiError::unauthorized("invalid runner registration token"))
        }
    }
}

/// A registered runner.
pub struct RunnerAuth(pub RunnerIdentity);

impl<S> FromRequestParts<S> for RunnerAuth
where
    S: Send + Sync,
    State: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let st = State::from_ref(state);
        let token = bearer(parts)?;
        let hash = hash_token(token);
        let runner = st
            .auth
            .runner(&hash, || st.store.runner_by_token_hash(&hash))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown runner token"))?;
        Ok(RunnerAuth(runner))
    }
}

/// The hash of the `X-Lease-Token` header.
pub struct LeaseToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for LeaseToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let v = parts
            .headers
            .get(LEASE_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::unauthorized("missing X-Lease-Token header"))?;
        Ok(LeaseToken(hash_token(v)))
    }
}

/// A numeric id from the path; anything else is a 404 (no such object).
pub fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found(what))
}
