//! A fake provider of any API shape: it records each request whole (method, path with
//! query, headers, body) and answers from a script, so tests can check the exact wire.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

use super::fake_model::{raw_response, serve, Reply};

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, e.g. `/openai/deployments/d/chat/completions?api-version=2024-02-01`.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body exactly as sent.
    pub raw: String,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct State_ {
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub struct FakeHttp {
    pub base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeHttp {
    /// The script sees each request and how many came before it.
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = State_ {
            script: Arc::new(script),
            seen: seen.clone(),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let (base_url, server) = serve(app).await;
        Self {
            base_url,
            seen,
            _server: server,
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(state): State<State_>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        target: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let index = {
        let mut all = state.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    match (state.script)(&seen, index) {
        Reply::Raw {
            status,
            headers,
            body,
        } => raw_response(status, headers, body),
        Reply::Text(text) => (StatusCode::OK, text).into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "unsupported reply").into_response(),
    }
}
