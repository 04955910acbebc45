//! `GET /v1/providers`: what this server can talk to (never a key).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/providers", get(list))
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "default_provider": state.defaults.provider,
        "providers": state.providers.describe(&state.prices),
    }))
}
