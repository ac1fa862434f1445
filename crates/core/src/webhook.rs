//! Webhook signing and endpoint checks, per the Standard Webhooks scheme
//! (standardwebhooks.com): every delivery carries `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`, which is
//! `v1,` followed by the base64 HMAC-SHA256 of `"{id}.{timestamp}.{body}"`
//! under the endpoint's secret, written `whsec_<base64 of the key>`.
//!
//! Design note. This module has one job: make and check those three
//! headers, and say whether an endpoint URL or a resolved address may be
//! delivered to. Invariants, each held by a test in `webhook/tests.rs`:
//!
//! - [`sign`] reproduces the reference libraries' published test vector, so
//!   any Standard Webhooks verifier accepts our deliveries;
//! - [`verify`] accepts exactly what [`sign`] produced for the same id,
//!   timestamp, body and secret, compares in constant time, and refuses a
//!   changed byte, another secret or a timestamp outside the tolerance;
//! - [`validate_endpoint_url`] lets through only absolute `http`/`https`
//!   URLs with a host, without credentials or a fragment, at most
//!   [`MAX_URL_LEN`] bytes; [`is_refused_address`] flags loopback,
//!   unspecified, link-local (cloud metadata lives at 169.254.169.254) and
//!   the control plane's own addresses, in IPv4, IPv6 and IPv4-mapped IPv6
//!   forms. The server resolves the host and checks every address when an
//!   endpoint is saved and again before each delivery (a name can be
//!   re-pointed after it was saved).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;

/// Prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest key accepted, in bytes (the spec's lower bound).
pub const MIN_SECRET_BYTES: usize = 24;
/// Longest key accepted, in bytes (the spec's upper bound).
pub const MAX_SECRET_BYTES: usize = 64;
/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Default clock skew a verifier allows (the reference libraries' 5 min).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;
/// Longest `webhook-signature` header a verifier reads; a sender may list
/// several signatures (key rotation), never thousands.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 4096;

/// Header names, lower-case as HTTP/2 sends them.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

type HmacSha256 = Hmac<Sha256>;

/// An endpoint's signing key. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Why a secret, signature or URL was refused. [`WebhookError::field`]
/// names the input field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("secret: {0}")]
    Secret(String),
    #[error("url: {0}")]
    Url(String),
}

impl WebhookError {
    /// `secret` or `url`.
    pub fn field(&self) -> &'static str {
        match self {
            WebhookError::Secret(_) => "secret",
            WebhookError::Url(_) => "url",
        }
    }
}

impl Secret {
    /// A key from raw bytes (the server draws them from the OS RNG).
    pub fn from_bytes(bytes: &[u8]) -> Result<Secret, WebhookError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(WebhookError::Secret(format!(
                "key must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Secret(bytes.to_vec()))
    }

    /// Reads `whsec_<base64>`; like the reference libraries, the prefix may
    /// be left off.
    pub fn parse(text: &str) -> Result<Secret, WebhookError> {
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        // 64 bytes encode to 88 characters; refuse more before decoding.
        if b64.len() > 4 * MAX_SECRET_BYTES.div_ceil(3) {
            return Err(WebhookError::Secret("secret is too long".into()));
        }
        let bytes = B64.decode(b64).map_err(|e| {
            WebhookError::Secret(format!(
                "write the secret as whsec_ followed by standard base64 ({e})"
            ))
        })?;
        Secret::from_bytes(&bytes)
    }

    /// The text form, `whsec_<base64>`, shown to the user once.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; new_from_slice cannot fail.
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

fn signed_content(mac: &mut HmacSha256, msg_id: &str, timestamp: i64, body: &[u8]) {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
}

/// The `webhook-signature` value for one delivery: `v1,<base64 HMAC>`.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = secret.mac();
    signed_content(&mut mac, msg_id, timestamp, body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The three headers of one delivery, in the order the spec lists them.
pub fn headers(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        (HEADER_ID, msg_id.to_string()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, sign(secret, msg_id, timestamp, body)),
    ]
}

/// Why a delivery failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is too old")]
    TooOld,
    #[error("webhook-timestamp is too far in the future")]
    TooNew,
    #[error("webhook-signature is longer than {MAX_SIGNATURE_HEADER_LEN} bytes")]
    HeaderTooLong,
    #[error("no v1 signature in webhook-signature matches")]
    NoMatch,
}

/// Checks one delivery as a receiver would: the timestamp within
/// `tolerance_secs` of `now` (Unix seconds) and at least one `v1,`
/// signature in the space-separated `signature_header` matching.
pub fn verify(
    secret: &Secret,
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if ts < now.saturating_sub(tolerance_secs) {
        return Err(VerifyError::TooOld);
    }
    if ts > now.saturating_add(tolerance_secs) {
        return Err(VerifyError::TooNew);
    }
    if signature_header.len() > MAX_SIGNATURE_HEADER_LEN {
        return Err(VerifyError::HeaderTooLong);
    }
    for sig in signature_header.split(' ') {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = B64.decode(b64) else { continue };
        let mut mac = secret.mac();
        signed_content(&mut mac, msg_id, ts, body);
        // verify_slice compares in constant time.
        if mac.verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

/// Checks an endpoint URL: absolute `http` or `https`, a host, no
/// `user:password@`, no `#fragment`, at most [`MAX_URL_LEN`] bytes.
/// Returns the parsed URL; whether its host resolves to a refused address
/// is the server's check ([`is_refused_address`]).
pub fn validate_endpoint_url(text: &str) -> Result<url::Url, WebhookError> {
    let bad = |m: String| Err(WebhookError::Url(m));
    if text.len() > MAX_URL_LEN {
        return bad(format!("longer than {MAX_URL_LEN} bytes"));
    }
    if text.trim() != text || text.is_empty() {
        return bad("must be a non-empty URL without surrounding spaces".into());
    }
    let u = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => return bad(format!("{text:?} is not a valid URL: {e}")),
    };
    if u.scheme() != "http" && u.scheme() != "https" {
        return bad(format!(
            "scheme {:?} is not allowed; use http or https",
            u.scheme()
        ));
    }
    match u.host_str() {
        None | Some("") => return bad("has no host".into()),
        Some(_) => {}
    }
    if !u.username().is_empty() || u.password().is_some() {
        return bad(
            "must not carry credentials (user:password@); sign with the secret instead".into(),
        );
    }
    if u.fragment().is_some() {
        return bad("must not have a #fragment (it is never sent)".into());
    }
    Ok(u)
}

/// Whether a delivery to `ip` must be refused unless configuration allows
/// it: loopback, unspecified (which reaches this host), link-local
/// (includes cloud metadata services) or one of `own`, the control plane's
/// own addresses. IPv4-mapped IPv6 addresses are judged as their IPv4 form
/// so `::ffff:127.0.0.1` cannot slip past.
pub fn is_refused_address(ip: IpAddr, own: &[IpAddr]) -> bool {
    let ip = canonical(ip);
    let special = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                // fe80::/10, link-local unicast.
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    special || own.iter().any(|o| canonical(*o) == ip)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
