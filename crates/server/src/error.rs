//! The one mapping from failures to HTTP status and the error envelope.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minitower_core::api::{ErrorBody, ErrorEnvelope};
use minitower_store::StoreError;

/// An error answer: status, snake_case code and a message for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400 `invalid_request`: malformed JSON, bad slug, bad parameter.
    pub fn invalid_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", m)
    }
    /// 400 `invalid_input`: run input fails the version's schema.
    pub fn invalid_input(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", m)
    }
    /// 400 `invalid_artifact`: unsafe or corrupt archive.
    pub fn invalid_artifact(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_artifact", m)
    }
    /// 400 `invalid_towerfile`.
    pub fn invalid_towerfile(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_towerfile", m)
    }
    /// 401: missing, unknown or wrong kind of token.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    /// 403: right kind of token, not allowed.
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    /// 404: no such object for this team.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    /// 405 for a known path with another method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        )
    }
    /// 409: duplicate or illegal transition.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", m)
    }
    /// 410: the lease token no longer names the active attempt.
    pub fn lease_gone() -> Self {
        Self::new(
            StatusCode::GONE,
            "lease_gone",
            "lease is no longer active (expired, reaped or superseded)",
        )
    }
    /// 413: body or artifact above the configured limit.
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m)
    }
    /// 429 `rate_limited` with `Retry-After` (whole seconds, at least 1).
    pub fn rate_limited(m: impl Into<String>, wait: std::time::Duration) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", m);
        e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        e
    }
    /// 500: our fault; details go to the log, not the client.
    pub fn internal(m: impl std::fmt::Display) -> Self {
        tracing::error!(error = %m, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }
    /// 503: a dependency (the database) is down.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::LeaseGone => ApiError::lease_gone(),
            StoreError::Database(m) => ApiError::internal(m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                ApiError::unavailable("the database is not reachable right now; try again")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = envelope(self.status, self.code, &self.message);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Builds an envelope response by hand (also used to wrap framework errors).
pub fn envelope(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorEnvelope {
        error: ErrorBody {
            code: code.to_string(),
            message: message.to_string(),
        },
    })
    .unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Code used when wrapping a bare framework error of this status.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        410 => "lease_gone",
        413 => "payload_too_large",
        429 => "rate_limited",
        415 => "invalid_request",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_503_with_the_envelope() {
        let e = ApiError::from(StoreError::Unavailable("connection reset".into()));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "unavailable");
        // The driver's text stays in the server's log, not in the answer.
        assert!(!e.message.contains("reset"));
        let e = ApiError::from(StoreError::Database("syntax".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
