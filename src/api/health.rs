//! Liveness: the process answers and its database does too.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.store.ping().await {
        Ok(Json(json!({"status": "ok"})))
    } else {
        Err(ApiError::Unavailable("the database does not answer".into()))
    }
}

/// Readiness: the database answers and REPL children start; with what the sandbox enforces.
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
