//! The shapes of the API's answers, for the OpenAPI document (`/openapi.json`). Requests are
//! described by the types that parse them; answers built as JSON in `views` are described
//! here, and the schema-driven fuzzer in the test suite checks every answer against them,
//! so a view that drifts from its schema fails the suite.

#![allow(dead_code)] // Read by the OpenAPI derive only.

use serde_json::Value;
use utoipa::ToSchema;

/// Every error: `{"error": {...}}`, also in OpenAI's shape (`type`, `param`).
#[derive(ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `invalid_request`, `not_found`, `idempotency_conflict`, ...
    code: String,
    message: String,
    /// OpenAI's error class: `invalid_request_error`, `authentication_error`, ...
    #[schema(rename = "type")]
    kind: String,
    param: Option<String>,
}

/// Tokens, calls and money.
#[derive(ToSchema)]
pub struct Usage {
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    llm_calls: i64,
    cost_usd: f64,
}

#[derive(ToSchema)]
pub struct RunErrorView {
    code: String,
    message: String,
}

/// A run: what was asked, how, and how it went.
#[derive(ToSchema)]
pub struct Run {
    #[schema(format = Uuid)]
    id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    status: String,
    /// Not in listings (they carry `prompt_preview`).
    prompt: Option<String>,
    provider: String,
    model: String,
    sub_model: Option<String>,
    sub_provider: Option<String>,
    max_iterations: u32,
    max_depth: u32,
    limits: Value,
    sampling: Value,
    sub_sampling: Option<Value>,
    tools: Vec<Value>,
    sub_tools: Option<Vec<Value>>,
    compaction: Option<Value>,
    metadata: Value,
    /// `{url, signed}`; never the secret.
    webhook: Option<Value>,
    /// The answer; for a failed run, its partial answer, if any.
    answer: Option<String>,
    /// `answer` or `max_iterations`.
    finish_reason: Option<String>,
    error: Option<RunErrorView>,
    usage: Usage,
    cost_usd: f64,
    iterations: i64,
    attempts: u32,
    cancel_requested: bool,
    root_id: String,
    parent_id: Option<String>,
    depth: u32,
    session_id: Option<String>,
    turn: Option<u32>,
    /// The SHA-256 of the context it was given (an upload, or the inline JSON).
    context_id: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    /// In listings only: the prompt's first 200 characters.
    prompt_preview: Option<String>,
    /// In a run's detail: spending by model.
    usage_by_model: Option<Value>,
    /// In a root's detail: its tree's size and spending.
    tree: Option<Value>,
}

#[derive(ToSchema)]
pub struct RunList {
    runs: Vec<Run>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// A run's record: iterations with their code blocks, model calls, and child runs (nested).
#[derive(ToSchema)]
pub struct Trajectory {
    run: Run,
    iterations: Vec<Value>,
    llm_calls: Vec<Value>,
    children: Vec<Value>,
}

#[derive(ToSchema)]
pub struct Session {
    id: String,
    /// `open`, `closed` or `expired`.
    status: String,
    turns: u32,
    idle_timeout_s: f64,
    metadata: Value,
    created_at: String,
    last_used_at: String,
    expires_at: Option<String>,
    closed_at: Option<String>,
    /// In a session's detail: its runs by turn (`{turn, id, status}`).
    runs: Option<Vec<Value>>,
    /// In listings: the start of its latest turn's prompt.
    prompt_preview: Option<String>,
}

#[derive(ToSchema)]
pub struct SessionList {
    sessions: Vec<Session>,
    next_cursor: Option<String>,
}

/// A comparison just made: one run per target.
#[derive(ToSchema)]
pub struct ComparisonCreated {
    id: String,
    runs: Vec<Value>,
}

/// The targets side by side.
#[derive(ToSchema)]
pub struct Comparison {
    id: String,
    /// `running` or `finished`.
    status: String,
    results: Vec<Value>,
    fastest: Option<String>,
    cheapest: Option<String>,
}

#[derive(ToSchema)]
pub struct ComparisonSummary {
    id: String,
    status: String,
    created_at: String,
    prompt_preview: Option<String>,
    runs: Vec<Value>,
}

#[derive(ToSchema)]
pub struct ComparisonList {
    comparisons: Vec<ComparisonSummary>,
    next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct ProviderList {
    default_provider: String,
    providers: Vec<Value>,
}

#[derive(ToSchema)]
pub struct Health {
    status: String,
    sandbox: Option<Value>,
}

/// OpenAI's chat completion (see OpenAI's API reference); `id` is the run's.
#[derive(ToSchema)]
pub struct ChatCompletion {
    id: String,
    object: String,
    created: i64,
    model: String,
    choices: Vec<Value>,
    usage: Value,
    rlmd: Value,
}

#[derive(ToSchema)]
pub struct ModelList {
    object: String,
    data: Vec<Model>,
}

#[derive(ToSchema)]
pub struct Model {
    id: String,
    object: String,
    created: i64,
    owned_by: String,
}

/// One Server-Sent Event of a run's stream.
#[derive(ToSchema)]
pub struct StreamEvent {
    /// The event's number in its tree (what `Last-Event-ID` resumes after).
    id: String,
    /// Its type: `run.started`, `iteration.started`, `code.executed`, ...
    event: String,
    /// JSON: `{seq, type, run_id, created_at, data}`.
    data: String,
}

/// One Server-Sent Event of a streamed chat completion: a chunk in OpenAI's shape, an
/// `error`, or `[DONE]`.
#[derive(ToSchema)]
pub struct ChatStreamEvent {
    data: String,
}

/// One model call, with the exact messages it sent (`null` if they were not stored).
#[derive(ToSchema)]
pub struct Call {
    index: u32,
    attempt: u32,
    iteration: Option<u32>,
    /// `root`, `sub`, `final` or `compaction`.
    kind: String,
    provider: String,
    model: String,
    prompt_chars: i64,
    reply: Option<String>,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    cost_usd: f64,
    latency_ms: i64,
    error: Option<String>,
    created_at: String,
    block: Option<u32>,
    messages: Option<Vec<Value>>,
}
