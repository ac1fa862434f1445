//! What a scoped token may call.
//!
//! Design note. The invariant: a token with a scope reaches a handler only
//! when the route's action (read for GET, trigger, cancel, deploy) is in the
//! scope and, when the scope names an app, the route concerns that app
//! (its `{app}` segment, or the app of its `{run}`); token, secret and
//! admin routes and every other write are outside every scope. The check
//! runs in the `TeamAuth` extractor, before any handler, so a new route is
//! refused to scoped tokens until it is listed here. Proven by
//! `crates/server/tests/tokens.rs` (refusals with their reasons, and the
//! audit of the refused token).

use crate::error::{ApiError, ApiResult};
use crate::extract::State;
use axum::extract::{MatchedPath, RawPathParams};
use axum::http::{request::Parts, Method};
use minitower_core::api::{ScopeAction, TokenScope};

/// Checks a requested scope: known actions (serde did that), at least one,
/// no duplicates, and a well-formed app slug.
pub fn validate(mut scope: TokenScope) -> ApiResult<TokenScope> {
    if scope.actions.is_empty() {
        return Err(ApiError::invalid_request(
            "scope.actions: name at least one of read, trigger, cancel, deploy",
        ));
    }
    scope.actions.sort();
    scope.actions.dedup();
    if let Some(app) = &scope.app {
        minitower_core::validate::slug(app)
            .map_err(|e| ApiError::invalid_request(format!("scope.app: {e}")))?;
    }
    Ok(scope)
}

/// The action a route performs, or `None` when no scope may call it.
fn action(method: &Method, route: &str) -> Option<ScopeAction> {
    const NEVER: [&str; 3] = ["/api/v1/tokens", "/api/v1/secrets", "/api/v1/admin"];
    if NEVER.iter().any(|p| route.starts_with(p)) {
        return None;
    }
    match (method, route) {
        (&Method::GET | &Method::HEAD, _) => Some(ScopeAction::Read),
        (&Method::POST, "/api/v1/apps/{app}/runs") => Some(ScopeAction::Trigger),
        (&Method::POST, "/api/v1/runs/{run}/cancel") => Some(ScopeAction::Cancel),
        (&Method::POST, "/api/v1/apps/{app}/versions") => Some(ScopeAction::Deploy),
        _ => None,
    }
}

/// `Ok` when `scope` allows this request, else why not (for the 403 and the
/// token's audit).
pub async fn allows(
    st: &State,
    parts: &mut Parts,
    team_id: i64,
    scope: &TokenScope,
) -> Result<(), String> {
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let method = parts.method.clone();
    let what = format!("{method} {route}");
    let shown = scope.describe();
    if method == Method::GET && route == "/api/v1/me" {
        return Ok(());
    }
    let Some(action) = action(&method, &route) else {
        return Err(format!(
            "out of scope: {what} is not allowed to scoped tokens (this token: {shown})"
        ));
    };
    if !scope.actions.contains(&action) {
        return Err(format!(
            "out of scope: {what} needs the {} action (this token: {shown})",
            action.as_str()
        ));
    }
    let Some(app) = &scope.app else {
        return Ok(());
    };
    let params = RawPathParams::from_request_parts(parts, &())
        .await
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let target = if let Some(a) = param("app") {
        Some(a)
    } else if let Some(run) = param("run") {
        match run.parse::<i64>() {
            // A run the team does not have: the handler answers 404.
            Ok(id) => match st.store.get_run(team_id, id).await {
                Ok(Some(r)) => Some(r.run.app),
                _ => return Ok(()),
            },
            Err(_) => return Ok(()),
        }
    } else {
        None
    };
    match target {
        Some(t) if t == *app => Ok(()),
        Some(t) => Err(format!(
            "out of scope: this token is limited to app {app:?} and {what} concerns app {t:?}"
        )),
        None => Err(format!(
            "out of scope: this token is limited to app {app:?}; {what} is not about one app \
             (use the app's own routes, e.g. /api/v1/apps/{app}/runs)"
        )),
    }
}

use axum::extract::FromRequestParts as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_of_routes() {
        assert_eq!(
            action(&Method::GET, "/api/v1/runs/{run}"),
            Some(ScopeAction::Read)
        );
        assert_eq!(
            action(&Method::POST, "/api/v1/apps/{app}/runs"),
            Some(ScopeAction::Trigger)
        );
        assert_eq!(action(&Method::GET, "/api/v1/tokens"), None);
        assert_eq!(action(&Method::GET, "/api/v1/secrets"), None);
        assert_eq!(action(&Method::POST, "/api/v1/environments"), None);
        assert_eq!(action(&Method::DELETE, "/api/v1/tokens/{id}"), None);
    }

    #[test]
    fn validate_sorts_and_refuses_empty() {
        let s = validate(TokenScope {
            app: Some("etl".into()),
            actions: vec![ScopeAction::Trigger, ScopeAction::Read, ScopeAction::Read],
        })
        .unwrap();
        assert_eq!(s.actions, vec![ScopeAction::Read, ScopeAction::Trigger]);
        assert!(validate(TokenScope {
            app: None,
            actions: vec![]
        })
        .is_err());
        assert!(validate(TokenScope {
            app: Some("Bad App".into()),
            actions: vec![ScopeAction::Read]
        })
        .is_err());
    }
}
