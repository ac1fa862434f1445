//! The web UI, embedded at build time from `web/dist` so `minitowerd` ships
//! it with nothing else to deploy. Unknown non-API paths get `index.html`
//! (client-side routing); hashed assets are cached forever.

use crate::error::ApiError;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web/dist/"]
#[allow_missing = true]
struct Assets;

/// Fallback handler: UI files for browsers, the JSON 404 for API clients.
pub async fn serve(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || (method != Method::GET && method != Method::HEAD) {
        return ApiError::not_found(&format!("route {} {}", method, path)).into_response();
    }
    let file = path.trim_start_matches('/');
    if let Some(asset) = (!file.is_empty()).then(|| Assets::get(file)).flatten() {
        let immutable = file.starts_with("assets/");
        return asset_response(file, asset.data.into_owned(), immutable);
    }
    // Paths that look like files but are missing stay 404s.
    let last = file.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return ApiError::not_found(&format!("file /{file}")).into_response();
    }
    match Assets::get("index.html") {
        Some(index) => asset_response("index.html", index.data.into_owned(), false),
        None => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><title>MiniTower</title><p>The web UI was not built into this binary. \
             The API is at <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>",
        )
            .into_response(),
    }
}

fn asset_response(name: &str, data: Vec<u8>, immutable: bool) -> Response {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let mut resp = (StatusCode::OK, data).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}
