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

/// The limits an announced body is held to: a context upload streams to disk under its own.
#[derive(Clone, Copy)]
pub struct BodyLimits {
    /// `RLM_MAX_BODY_BYTES`.
    pub body: u64,
    /// `RLM_MAX_CONTEXT_BYTES`, for `POST /v1/contexts`.
    pub context: u64,
}

pub fn context_too_large(max: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the context is larger than this server accepts ({max} bytes, RLM_MAX_CONTEXT_BYTES)"
    ))
}

/// Middleware: answers 413 at once when the announced body is over its limit.
pub async fn refuse_announced(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let upload = request.method() == Method::POST && request.uri().path() == "/v1/contexts";
    match announced {
        Some(length) if upload && length > limits.context => {
            context_too_large(limits.context).into_response()
        }
        Some(length) if !upload && length > limits.body => too_large().into_response(),
        _ => next.run(request).await,
    }
}

/// The answer for a known path asked with a method it does not have (axum adds `Allow`).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
