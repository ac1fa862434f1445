//! Teams, login, identity and tokens.

use crate::error::{ApiError, ApiResult};
use crate::extract::{
    parse_id, BootstrapAuth, ClientAddr, JsonBody, RequiredJsonBody, State, TeamAuth,
};
use crate::state::{hash_token, new_secret};
use argon2::password_hash::SaltString;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use minitower_core::api::*;
use minitower_core::validate;

const MIN_PASSWORD: usize = 8;

/// Creates a team and its first admin token.
#[utoipa::path(post, path = "/api/v1/bootstrap/team", tag = "teams",
    request_body = BootstrapTeamRequest,
    responses((status = 201, body = TeamWithToken), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("bootstrap" = [])))]
pub async fn bootstrap(
    AxState(st): AxState<State>,
    _auth: BootstrapAuth,
    JsonBody(req): JsonBody<BootstrapTeamRequest>,
) -> ApiResult<impl IntoResponse> {
    validate::slug(&req.slug).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid_request(
            "name must be 1 to 200 characters",
        ));
    }
    let password_hash = match req.password.as_deref() {
        None | Some("") => None,
        Some(p) if p.len() < MIN_PASSWORD => {
            return Err(ApiError::invalid_request(format!(
                "password must be at least {MIN_PASSWORD} characters"
            )))
        }
        Some(p) => Some(hash_password(&st, p.to_string()).await?),
    };
    let token = new_secret("mtt");
    let (team, _token_id) = st
        .store
        .create_team(
            &req.slug,
            name,
            password_hash.as_deref(),
            "bootstrap",
            &hash_token(&token),
            st.now(),
        )
        .await
        .map_err(|e| match e {
            minitower_store::StoreError::Conflict(_) => {
                ApiError::conflict(format!("team {:?} already exists", req.slug))
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(TeamWithToken { team, token })))
}

/// Exchanges a team password for a fresh admin token that expires after
/// `MINITOWER_LOGIN_TOKEN_TTL`. Attempts are throttled per client address,
/// per team and address and per team (429 with `Retry-After`).
#[utoipa::path(post, path = "/api/v1/teams/login", tag = "teams", request_body = LoginRequest,
    responses((status = 200, body = TeamWithToken), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope),
              (status = 429, body = ErrorEnvelope, description = "too many attempts; see Retry-After")))]
pub async fn login(
    AxState(st): AxState<State>,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<TeamWithToken>> {
    let refused = || ApiError::unauthorized("invalid team or password");
    let throttled = |wait| ApiError::rate_limited("too many login attempts; try again later", wait);
    st.login.check_address(addr).map_err(throttled)?;
    // A slug that cannot exist needs no lookup and no hash.
    if validate::slug(&req.slug).is_err() {
        return Err(refused());
    }
    st.login.check_team(&req.slug, addr).map_err(throttled)?;
    let info = st.store.team_login_info(&req.slug).await?;
    // Verify against a dummy hash when the team or its password is missing so
    // the answer takes as long either way.
    let (team, stored) = match info {
        Some((team, Some(hash))) => (Some(team), Some(hash)),
        _ => (None, None),
    };
    let ok = verify_password(&st, req.password.clone(), stored).await?;
    let team = match (team, ok) {
        (Some(t), true) => t,
        _ => return Err(refused()),
    };
    let token = new_secret("mtt");
    let now = st.now();
    let expires_at = now
        + chrono::Duration::from_std(st.config.login_token_ttl)
            .unwrap_or(chrono::Duration::hours(12));
    st.store
        .create_token(
            team.id,
            "login",
            Role::Admin,
            &hash_token(&token),
            now,
            minitower_store::TokenOptions {
                expires_at: Some(expires_at),
                scope: None,
            },
        )
        .await?;
    Ok(Json(TeamWithToken { team, token }))
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "teams",
    responses((status = 200, body = Me), (status = 401, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn me(auth: TeamAuth) -> Json<Me> {
    Json(Me {
        team: auth.team,
        role: auth.role,
        token_id: auth.token_id,
    })
}

/// Mints a token; members always get member tokens.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn create_token(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    RequiredJsonBody(req): RequiredJsonBody<CreateTokenRequest>,
) -> ApiResult<impl IntoResponse> {
    let name = req
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("token");
    if name.chars().count() > 100 {
        return Err(ApiError::invalid_request(
            "token name must be at most 100 characters",
        ));
    }
    let role = match (auth.role, req.role) {
        (Role::Admin, Some(r)) => r,
        (Role::Admin, None) => Role::Member,
        (Role::Member, _) => Role::Member,
    };
    let now = st.now();
    let expires_at = token_expiry(&req, now)?;
    let scope = req.scope.clone().map(crate::scope::validate).transpose()?;
    if scope.is_some() && role == Role::Admin {
        return Err(ApiError::invalid_request(
            "scope: a scoped token is a member token; leave role out or set it to member",
        ));
    }
    // A scoped token never gets here: token calls are outside every scope.
    let secret = new_secret("mtt");
    let info = st
        .store
        .create_token(
            auth.team.id,
            name,
            role,
            &hash_token(&secret),
            now,
            minitower_store::TokenOptions {
                expires_at,
                scope: scope.clone(),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: info.id,
            name: info.name,
            role: info.role,
            token: secret,
            expires_at: info.expires_at,
            scope: info.scope,
        }),
    ))
}

/// Longest token lifetime: ten years.
const MAX_TOKEN_LIFETIME_DAYS: i64 = 3650;

/// The expiry a token request asks for: `expires_in` (a duration such as
/// `30d`) or `expires_at` (RFC 3339), not both; at least a minute ahead and
/// at most ten years.
fn token_expiry(
    req: &CreateTokenRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    let at = match (&req.expires_in, req.expires_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "expires_in: give expires_in or expires_at, not both",
            ))
        }
        (None, None) => return Ok(None),
        (Some(text), None) => {
            let d = validate::duration(text).map_err(|e| {
                ApiError::invalid_request(format!("expires_in: {e} (e.g. 30d, 12h)"))
            })?;
            let d = chrono::Duration::from_std(d)
                .ok()
                .filter(|d| *d <= chrono::Duration::days(MAX_TOKEN_LIFETIME_DAYS))
                .ok_or_else(|| ApiError::invalid_request("expires_in: at most 3650 days"))?;
            now + d
        }
        (None, Some(at)) => at,
    };
    let field = if req.expires_in.is_some() {
        "expires_in"
    } else {
        "expires_at"
    };
    if at < now + chrono::Duration::minutes(1) {
        return Err(ApiError::invalid_request(format!(
            "{field}: the token must live at least one minute"
        )));
    }
    if at > now + chrono::Duration::days(MAX_TOKEN_LIFETIME_DAYS) {
        return Err(ApiError::invalid_request(format!(
            "{field}: at most 3650 days from now"
        )));
    }
    Ok(Some(at))
}

/// Tokens of the team (never the secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn list_tokens(
    AxState(st): AxState<State>,
    auth: TeamAuth,
) -> ApiResult<Json<TokenList>> {
    Ok(Json(TokenList {
        tokens: st.store.list_tokens(auth.team.id).await?,
    }))
}

/// Revokes a token; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "token id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn revoke_token(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "token")?;
    st.store.revoke_token(auth.team.id, id, st.now()).await?;
    st.auth.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

/// Hashes a new password on the bounded Argon2 workers ([`crate::throttle`]).
async fn hash_password(st: &State, p: String) -> ApiResult<String> {
    st.login
        .hash(move || crate::password::hash(p.as_bytes(), &new_salt()).map_err(ApiError::internal))
        .await
        .map_err(ApiError::internal)?
}

/// Checks a password; with no stored hash, against a dummy one so the
/// answer takes as long either way.
async fn verify_password(st: &State, p: String, stored: Option<String>) -> ApiResult<bool> {
    st.login
        .hash(move || {
            let real = stored.is_some();
            let stored = stored.unwrap_or_else(|| dummy_hash().to_string());
            crate::password::verify(p.as_bytes(), &stored) && real
        })
        .await
        .map_err(ApiError::internal)
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        crate::password::hash(b"not-a-real-password", &new_salt()).unwrap_or_default()
    })
}

fn new_salt() -> SaltString {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    SaltString::encode_b64(&bytes).expect("16 bytes make a valid salt")
}
