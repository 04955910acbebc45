//! Answers given before any handler runs: a body announced over `RLM_MAX_BODY_BYTES` is
//! refused before a byte of it is read (a chunked body, which announces nothing, is cut
//! off at the limit as it is read: see `json::ApiBody`), and a method a path does not
//! have gets the error JSON like every other error.

use axum::extract::{Request, State};
use axum::http::{header, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

pub fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(
        "the request body is larger than this server accepts (RLM_MAX_BODY_BYTES)".into(),
    )
}

/// Middleware: answers 413 at once when the announced body is over the limit.
pub async fn refuse_announced(
    State(max_body_bytes): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    // An upload of a context streams to disk under its own limit (RLM_MAX_CONTEXT_BYTES).
    let streamed = request.method() == Method::POST && request.uri().path() == "/v1/contexts";
    if !streamed && announced.is_some_and(|length| length > max_body_bytes as u64) {
        return too_large().into_response();
    }
    next.run(request).await
}

/// The answer for a known path asked with a method it does not have (axum adds `Allow`).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
