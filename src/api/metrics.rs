//! `GET /metrics`: the Prometheus exposition (see `crate::metrics` for what is counted).

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::ApiError;
use super::AppState;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics, in OpenMetrics text.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 401, body = super::schema::ErrorBody)))]
async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    state
        .auth
        .check_metrics_reader(&state.store, &headers)
        .await?;
    let metrics = crate::metrics::get();
    // The gauges that describe state rather than happenings are read now.
    metrics.queue_depth.set(state.store.queued_runs().await?);
    metrics.running_runs.set(state.jobs.count() as i64);
    metrics.provider_caps(state.providers.caps());
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()))
}
