//! Liveness: the process answers and its database does too.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::ApiError;
use super::schema::{ErrorBody, Health};
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Liveness: the process and its database answer.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.store.ping().await {
        Ok(Json(json!({"status": "ok"})))
    } else {
        Err(ApiError::Unavailable("the database does not answer".into()))
    }
}

/// Readiness: the database answers and REPL children start; with what the sandbox enforces.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.store.ping().await {
        return Err(ApiError::Unavailable("the database does not answer".into()));
    }
    match state.sandbox.as_ref() {
        Ok(report) => Ok(Json(json!({"status": "ready", "sandbox": report}))),
        Err(error) => Err(ApiError::Unavailable(format!(
            "the REPL sandbox does not start: {error}"
        ))),
    }
}
