//! The `Idempotency-Key` request header: a client that retries a request it is not sure
//! went through sends the same key, and gets what the first request made instead of a
//! second run (and a second bill). Keys are per API key and route, kept 24 hours.

use super::auth::Caller;
use super::error::ApiError;
use crate::store::IdempotencyKey;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;

pub const HEADER: &str = "idempotency-key";
/// Set on an answer given again for a retried request.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The request's key for `route`, if it sent one, with its body's hash: a retry sends the
/// same bytes. (The body is not parsed into a value to compare it: a context can be large
/// and deep, and is kept as the client wrote it.)
pub fn key_of(
    headers: &HeaderMap,
    caller: &Caller,
    route: &str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= 255)
        .filter(|key| key.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    let owner = caller
        .owner()
        .map_or_else(|| "open".to_string(), |k| k.0.to_string());
    Ok(Some(IdempotencyKey {
        scope: format!("{owner} {route}"),
        key: key.to_string(),
        body_hash: crate::keys::sha256_hex(&String::from_utf8_lossy(body)),
    }))
}

pub fn conflict() -> ApiError {
    ApiError::Conflict {
        code: "idempotency_conflict",
        message: "this Idempotency-Key was used for another request; use a new key".into(),
    }
}

/// `response`, marked as an answer given again for a retried request when `replayed`.
pub fn mark(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response.headers_mut().insert(
            HeaderName::from_static(REPLAYED_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    response
}
