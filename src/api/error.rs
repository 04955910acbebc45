//! The one error type of the HTTP layer: `{"error": {"code": ..., "message": ...}}` with a
//! fitting status. Internal errors are logged with their cause and answered opaquely.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        code: &'static str,
        message: String,
    },
    NotFound(String),
    Conflict {
        code: &'static str,
        message: String,
    },
    PayloadTooLarge(String),
    MethodNotAllowed(String),
    Unavailable(String),
    Internal(String),
    /// A missing, wrong or revoked API key (answered with `WWW-Authenticate: Bearer`).
    Unauthorized(String),
    /// A per-key limit is reached (answered with `Retry-After`).
    RateLimited(String),
}

/// The `Retry-After` of a full queue: queued runs leave the queue as runs finish, which no
/// one can predict, so this only paces the client's retries.
const RETRY_AFTER_S: u64 = 5;

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::bad_request("invalid_request", message)
    }

    /// Says which comparison target a client error is about.
    pub fn in_target(self, index: usize) -> Self {
        match self {
            Self::BadRequest { code, message } => Self::BadRequest {
                code,
                message: format!("targets[{index}]: {message}"),
            },
            other => other,
        }
    }

    pub fn run_not_found(id: &str) -> Self {
        Self::NotFound(format!("no run with id {id:?}"))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::QueueFull { limit } => Self::RateLimited(format!(
                "this API key already has {limit} runs queued; retry when some have started"
            )),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let extra_header = match &self {
            Self::Unauthorized(_) => {
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            Self::RateLimited(_) => Some((header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S))),
            _ => None,
        };
        let (status, code, message) = match self {
            Self::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message),
            Self::Conflict { code, message } => (StatusCode::CONFLICT, code, message),
            Self::PayloadTooLarge(message) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            Self::MethodNotAllowed(message) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message,
            ),
            Self::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
            Self::Unauthorized(message) => (StatusCode::UNAUTHORIZED, "unauthorized", message),
            Self::RateLimited(message) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", message),
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error answering a request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the server failed to handle this request; the cause is in its log".to_string(),
                )
            }
        };
        let mut response = (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if let Some((name, value)) = extra_header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
