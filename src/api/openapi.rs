//! `GET /openapi.json`: the OpenAPI 3.1 document of this API, generated from the handlers'
//! annotations and the types that parse requests (a route is registered through the same
//! `routes!` that documents it, so none can be left out); and `GET /docs`, a page that
//! reads it, with nothing loaded from outside this binary.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, SecurityRequirement};
use utoipa::{Modify, OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::schema::ErrorBody;
use super::AppState;

/// The document, serialized once: it is the same for every server of this build.
static DOCUMENT: OnceLock<String> = OnceLock::new();

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rlmd",
        description = "Recursive Language Model tasks as durable jobs. Every error is \
                       `{\"error\": {\"code\", \"message\", \"type\", \"param\"}}`."
    ),
    tags(
        (name = "runs", description = "Submit, read, follow, cancel and export runs"),
        (name = "sessions", description = "Runs that share one REPL, turn after turn"),
        (name = "contexts", description = "Large contexts, uploaded once and named by id"),
        (name = "comparisons", description = "One task on several providers or models"),
        (name = "openai", description = "OpenAI-compatible chat completions"),
        (name = "operations", description = "Providers, health, metrics, this document"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerKeys)
)]
pub struct ApiDoc;

/// API keys go as `Authorization: Bearer <key>`; without keys on, none is needed.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("api_key", SecurityScheme::Http(scheme));
        document.security = Some(vec![
            SecurityRequirement::new("api_key", Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(document))
        .routes(routes!(docs))
}

/// Keeps the finished document for `/openapi.json`.
pub fn publish(document: &Document) {
    DOCUMENT.get_or_init(|| document.to_json().expect("the document serializes"));
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi_document", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
async fn document() -> impl IntoResponse {
    let text = DOCUMENT.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], text)
}

/// A readable page of this document.
#[utoipa::path(get, path = "/docs", operation_id = "docs", tag = "operations",
    responses((status = 200, content_type = "text/html", body = String)))]
async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
