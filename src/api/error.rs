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
    /// The OpenAI-compatible endpoint was asked for a model it does not serve.
    ModelNotFound(String),
    /// A run made for a request that waits for its answer ended without one. 422, not 5xx:
    /// the request was served, and a client that retries 5xx must not pay for it again.
    RunFailed {
        code: String,
        message: String,
    },
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
            // The session closed between its check and the turn's insert.
            StoreError::SessionNotOpen => Self::Conflict {
                code: "session_closed",
                message: "the session is closed; open a new one".into(),
            },
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
            Self::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code.into(), message),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "not_found".into(), message),
            Self::Conflict { code, message } => (StatusCode::CONFLICT, code.into(), message),
            Self::PayloadTooLarge(message) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large".into(),
                message,
            ),
            Self::MethodNotAllowed(message) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed".into(),
                message,
            ),
            Self::Unavailable(message) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into(), message)
            }
            Self::Unauthorized(message) => (StatusCode::UNAUTHORIZED, "unauthorized".into(), message),
            Self::RateLimited(message) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into(), message)
            }
            Self::ModelNotFound(model) => (
                StatusCode::NOT_FOUND,
                "model_not_found".into(),
                format!("no model {model:?}: use `rlm`, or `rlm:<provider>/<model>` (see GET /v1/models)"),
            ),
            Self::RunFailed { code, message } => (StatusCode::UNPROCESSABLE_ENTITY, code, message),
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error answering a request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error".into(),
                    "the server failed to handle this request; the cause is in its log".to_string(),
                )
            }
        };
        // `type` is OpenAI's error class, so that its SDKs (and any client of that shape)
        // read every error of this server.
        let body = json!({"error": {"code": code, "message": message, "type": error_type(status), "param": null}});
        let mut response = (status, Json(body)).into_response();
        if let Some((name, value)) = extra_header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// OpenAI's error type for a status.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 404 | 405 | 409 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "server_error",
    }
}
