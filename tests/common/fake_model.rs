//! A scripted, OpenAI-compatible model server for tests and benchmarks. It answers
//! `POST /v1/chat/completions` from a script, after a fixed latency, and records every
//! request it saw.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub body: Value,
    pub authorization: Option<String>,
    pub received_at: std::time::Instant,
    /// When the fake sent its answer (after its latency).
    pub responded_at: Option<std::time::Instant>,
}

impl SeenRequest {
    /// Root-model calls carry rlmd's system prompt; sub-calls are a single user message.
    pub fn is_root(&self) -> bool {
        self.messages()
            .first()
            .map(|m| m["role"] == "system")
            .unwrap_or(false)
    }

    pub fn messages(&self) -> Vec<Value> {
        self.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Which turn of its run this root call is (1 for the first).
    pub fn turn(&self) -> usize {
        self.messages()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .count()
            + 1
    }

    pub fn last_user_text(&self) -> String {
        self.messages()
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// What the fake answers.
#[derive(Clone)]
pub enum Reply {
    Text(String),
    /// An HTTP error with a body in OpenAI's error shape.
    Error {
        status: u16,
        message: String,
    },
    /// Waits, then answers with the text (for cancel and timeout tests).
    Slow(Duration, String),
    /// Exactly this status, these headers and this body.
    Raw {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
}

pub fn text(s: impl Into<String>) -> Reply {
    Reply::Text(s.into())
}

/// A reply with one ```repl block.
pub fn code(src: &str) -> Reply {
    Reply::Text(format!("Let me run this.\n```repl\n{src}\n```"))
}

/// Usage reported for every successful call.
pub const PROMPT_TOKENS: i64 = 100;
pub const COMPLETION_TOKENS: i64 = 7;

type Script = dyn Fn(&SeenRequest, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct FakeState {
    script: Arc<Script>,
    latency: Duration,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    root_calls: Arc<Mutex<usize>>,
    /// Requests being answered now; above `capacity` the fake answers 429 at once.
    in_flight: Arc<AtomicUsize>,
    capacity: Option<usize>,
    refused: Arc<AtomicUsize>,
}

pub struct FakeModel {
    pub base_url: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    refused: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeModel {
    /// Root calls get `root_replies` in order (the last one repeats); sub-calls are
    /// answered by `sub(prompt)`.
    pub async fn start(
        root_replies: Vec<Reply>,
        sub: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let root_replies: Vec<Arc<Reply>> = root_replies.into_iter().map(Arc::new).collect();
        Self::with_script(Duration::ZERO, move |request, root_index| {
            if request.is_root() {
                root_replies[root_index.min(root_replies.len() - 1)]
                    .as_ref()
                    .clone()
            } else {
                sub(&request.last_user_text())
            }
        })
        .await
    }

    /// Full control: the script sees each request and the number of root calls before it.
    pub async fn with_script(
        latency: Duration,
        script: impl Fn(&SeenRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::launch(latency, None, script).await
    }

    /// A provider with a rate limit: a request arriving while `capacity` others are being
    /// answered gets 429 at once (and is not recorded as seen).
    pub async fn with_capacity(
        latency: Duration,
        capacity: usize,
        script: impl Fn(&SeenRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::launch(latency, Some(capacity), script).await
    }

    async fn launch(
        latency: Duration,
        capacity: Option<usize>,
        script: impl Fn(&SeenRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let state = FakeState {
            script: Arc::new(script),
            latency,
            seen: seen.clone(),
            root_calls: Arc::new(Mutex::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity,
            refused: refused.clone(),
        };
        // Real providers take requests of many megabytes; so does the fake.
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state);
        let (base, server) = serve(app).await;
        Self {
            base_url: format!("{base}/v1"),
            seen,
            refused,
            _server: server,
        }
    }

    /// Requests answered 429 for going over the capacity.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    pub fn root_requests(&self) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(SeenRequest::is_root)
            .collect()
    }

    pub fn sub_requests(&self) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_root())
            .collect()
    }
}

async fn complete(
    State(state): State<FakeState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let in_flight = InFlight::enter(&state.in_flight);
    if state
        .capacity
        .is_some_and(|capacity| in_flight.0 > capacity)
    {
        state.refused.fetch_add(1, Ordering::SeqCst);
        let body = json!({"error": {"message": "Rate limit reached: too many requests in flight",
                                    "type": "rate_limit_error", "code": "rate_limit_exceeded"}});
        return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    }
    let request = SeenRequest {
        body,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        received_at: std::time::Instant::now(),
        responded_at: None,
    };
    let root_index = {
        let mut count = state.root_calls.lock().unwrap();
        let index = *count;
        if request.is_root() {
            *count += 1;
        }
        index
    };
    let slot = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(request.clone());
        seen.len() - 1
    };
    let reply = (state.script)(&request, root_index);
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    if let Reply::Slow(wait, _) = &reply {
        tokio::time::sleep(*wait).await;
    }
    state.seen.lock().unwrap()[slot].responded_at = Some(std::time::Instant::now());
    let text = match reply {
        Reply::Text(text) | Reply::Slow(_, text) => text,
        Reply::Error { status, message } => {
            let body = json!({"error": {"message": message, "type": "invalid_request_error", "code": null}});
            return (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
        }
        Reply::Raw {
            status,
            headers,
            body,
        } => return raw_response(status, headers, body),
    };
    // Fixed counts make usage totals exact in assertions.
    let prompt_tokens = PROMPT_TOKENS;
    Json(json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": request.body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": COMPLETION_TOKENS, "total_tokens": prompt_tokens + COMPLETION_TOKENS,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    }))
    .into_response()
}

/// The most of `requests` that were being answered at once.
pub fn peak_in_flight(requests: &[SeenRequest]) -> i32 {
    let mut edges: Vec<(std::time::Instant, i32)> = Vec::new();
    for request in requests {
        edges.push((request.received_at, 1));
        edges.push((request.responded_at.expect("answered"), -1));
    }
    edges.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, step) in edges {
        now += step;
        peak = peak.max(now);
    }
    peak
}

/// Counts a request in flight until dropped; `.0` is the count with it.
struct InFlight<'a>(usize, &'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        Self(counter.fetch_add(1, Ordering::SeqCst) + 1, counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` on a free local port; its base URL and the server task.
pub async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://127.0.0.1:{port}"), server)
}

/// Exactly this status, these headers and this body.
pub fn raw_response(status: u16, headers: Vec<(&'static str, String)>, body: String) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A root model whose reply is its question as a code block: a run's (or a turn's) prompt
/// is the code it runs.
pub fn prompt_is_code() -> impl Fn(&SeenRequest, usize) -> Reply {
    |request, _| {
        let first = request.messages()[1]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let code_text = first
            .split("The question to answer:\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\nThis is").next())
            .and_then(|rest| rest.split("\n\nTurn ").next())
            .unwrap_or_default()
            .to_string();
        code(&code_text)
    }
}
