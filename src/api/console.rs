//! The web console: a page and its scripts and style, embedded in the binary and served at
//! `/`. It is a client of the public API like any other (see console/console.js).

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;

/// Everything the page loads comes from this server; nothing inline runs or styles.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                      connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(script))
        .routes(routes!(run_script))
        .routes(routes!(style))
}

/// The console.
#[utoipa::path(get, path = "/", operation_id = "console", tag = "operations",
    responses((status = 200, content_type = "text/html", body = String)))]
async fn page() -> impl IntoResponse {
    asset(
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    )
}

#[utoipa::path(get, path = "/console/console.js", operation_id = "console_script", tag = "operations",
    responses((status = 200, content_type = "text/javascript", body = String)))]
async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    )
}

#[utoipa::path(get, path = "/console/run.js", operation_id = "console_run_script", tag = "operations",
    responses((status = 200, content_type = "text/javascript", body = String)))]
async fn run_script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("console/run.js"),
    )
}

#[utoipa::path(get, path = "/console/console.css", operation_id = "console_style", tag = "operations",
    responses((status = 200, content_type = "text/css", body = String)))]
async fn style() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Assets change with the binary: revalidate rather than keep a stale console.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
