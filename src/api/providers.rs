//! `GET /v1/providers`: what this server can talk to (never a key).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Every provider: configured or not, default model, base URL, cap and calls in flight.
#[utoipa::path(get, path = "/v1/providers", operation_id = "list_providers", tag = "operations",
    responses((status = 200, body = super::schema::ProviderList),
        (status = 401, body = super::schema::ErrorBody)))]
async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "default_provider": state.defaults.provider,
        "providers": state.providers.describe(&state.prices),
    }))
}
