//! The HTTP API (axum). Each module owns its routes; this file merges them.

mod auth;
mod comparisons;
mod console;
mod contexts;
mod error;
mod export;
mod guards;
mod health;
mod idempotency;
mod json;
mod metrics;
mod openai;
mod openapi;
mod paging;
mod preflight;
mod providers;
mod runs;
mod schema;
mod sessions;
mod sse;
mod submit;
mod views;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::Router;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

pub use auth::{Auth, Caller};
pub use error::ApiError;
pub use runs::run_detail;

use std::time::Duration;

use crate::config::RunDefaults;
use crate::contexts::ContextCache;
use crate::engine::SessionRepls;
use crate::events::EventBus;
use crate::providers::{PriceTable, Providers};
use crate::store::Store;
use crate::worker::RunningJobs;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub bus: EventBus,
    pub providers: Providers,
    pub prices: Arc<PriceTable>,
    pub defaults: Arc<RunDefaults>,
    pub jobs: RunningJobs,
    /// Rung on every submit so an idle worker claims the run at once.
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
    pub sessions: SessionRepls,
    pub session_idle_timeout: Duration,
    /// What the start-up probe found the REPL sandbox enforces (or why it failed).
    pub sandbox: Arc<Result<serde_json::Value, String>>,
    pub auth: Arc<Auth>,
    /// Stored contexts, and this node's copies of them.
    pub contexts: ContextCache,
    /// The largest context upload (`RLM_MAX_CONTEXT_BYTES`).
    pub max_context_bytes: u64,
}

pub fn router(state: AppState, max_body_bytes: usize, cors_origins: &[String]) -> Router {
    // Every route is registered with its documentation; the document is what they add up to.
    let (routes, document) = openapi::router()
        .merge(console::router())
        .merge(runs::router())
        .merge(sse::router())
        .merge(sessions::router())
        .merge(providers::router())
        .merge(comparisons::router())
        .merge(contexts::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(openai::router())
        .split_for_parts();
    openapi::publish(&document);
    let limits = guards::BodyLimits {
        body: max_body_bytes as u64,
        context: state.max_context_bytes,
    };
    let router = routes
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        // After every merge: it reaches only the routes already added.
        .method_not_allowed_fallback(guards::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(from_fn_with_state(limits, guards::refuse_announced));
    // Outside authentication, so a browser's preflight (which carries no key) is answered.
    let router = match auth::cors(cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(TraceLayer::new_for_http()).with_state(state)
}
