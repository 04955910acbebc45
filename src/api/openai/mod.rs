//! The OpenAI-compatible face of rlmd: `POST /v1/chat/completions` runs an RLM and answers
//! in OpenAI's shapes (a whole completion, or a stream of chunks whose `reasoning_content`
//! narrates the run), and `GET /v1/models` lists what `model` may name. Any client built on
//! OpenAI's SDKs works unchanged. The run is an ordinary run: `id` is its id, and it can be
//! read, streamed and exported like any other.

mod request;
mod stream;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::idempotency::{self, Queued};
use super::json::{self, ApiBody};
use super::schema::{self, ErrorBody};
use super::sse::Follower;
use super::AppState;
use crate::domain::{RunId, RunStatus};
use crate::store::{total_usage, RunRecord, Usage};
use crate::worker::StopReason;
use request::{parse_model, ChatRequest, RLM_MODEL};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    // A model's id holds a `/`: its route takes the rest of the path, which OpenAPI cannot
    // say, so it is documented as `{id}` beside the route.
    OpenApiRouter::with_openapi(ModelDoc::openapi())
        .routes(routes!(chat_completions))
        .routes(routes!(models))
        .route("/v1/models/{*id}", get(model))
}

#[derive(OpenApi)]
#[openapi(paths(model))]
struct ModelDoc;

/// Run an RLM, answered in OpenAI's chat-completion shapes (whole, or streamed as chunks).
#[utoipa::path(post, path = "/v1/chat/completions", operation_id = "create_chat_completion", tag = "openai",
    params(("Idempotency-Key" = Option<String>, Header, description = "As for POST /v1/runs")),
    request_body(content = ChatRequest, content_type = "application/json"),
    responses(
        (status = 200, content(
            (schema::ChatCompletion = "application/json"),
            (schema::ChatStreamEvent = "text/event-stream"))),
        (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "The run ended without an answer", body = ErrorBody),
        (status = 429, body = ErrorBody)))]
async fn chat_completions(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiBody(bytes): ApiBody,
) -> Result<Response, ApiError> {
    let request: ChatRequest = json::parse(&bytes)?;
    request.check_supported()?;
    let submit = request.to_submit(&state.providers)?;
    let key = idempotency::key_of(&headers, &caller, "POST /v1/chat/completions", &bytes)?;
    let new_run = submit.checked_run(&state, caller.owner()).await?;
    // Subscribed before the run exists, so its first events are not missed.
    let live = state.bus.subscribe();
    let run = match idempotency::queue_once(&state, &caller, &new_run, key.as_ref()).await? {
        Queued::New(run) | Queued::Replayed(run) => run,
    };
    let follower = Follower::new(&state, live, &run, 0);
    let guard = CancelOnDrop::new(&state, run.id);
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        return Ok(stream::respond(
            state,
            run,
            request.model,
            include_usage,
            follower,
            guard,
        ));
    }
    // Ended, or the server is stopping (the run resumes then): either way it stays.
    let ended = wait_for_end(&state, follower, run.id).await;
    guard.disarm();
    let run = ended?;
    let usage = tree_usage(&state, &run).await?;
    Ok(Json(completion(&run, &request.model, &usage)?).into_response())
}

/// Waits for the run's terminal event; the run as it ended.
async fn wait_for_end(
    state: &AppState,
    mut follower: Follower,
    id: RunId,
) -> Result<RunRecord, ApiError> {
    while follower.next().await.is_some() {}
    let run = state.store.get_run(id).await?;
    match run {
        Some(run) if run.status.is_terminal() => Ok(run),
        // The stream ended without the run ending: the server is shutting down.
        _ => Err(ApiError::Unavailable(
            "the server is shutting down; the run resumes on restart".into(),
        )),
    }
}

async fn tree_usage(state: &AppState, run: &RunRecord) -> Result<Usage, ApiError> {
    let by_model = state.store.usage_by_model(run.id, true).await?;
    Ok(total_usage(by_model.into_values()))
}

/// A whole completion for a run that ended; a run without an answer is an error.
fn completion(run: &RunRecord, model: &str, usage: &Usage) -> Result<Value, ApiError> {
    let answer = answer_of(run)?;
    Ok(json!({
        "id": run.id,
        "object": "chat.completion",
        "created": run.created_at / 1000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer, "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason(run),
        }],
        "usage": usage_view(usage),
        "system_fingerprint": null,
        "rlmd": rlmd_view(run, usage),
    }))
}

/// The answer of a run that succeeded, or the error a client of this endpoint gets.
fn answer_of(run: &RunRecord) -> Result<String, ApiError> {
    if run.status == RunStatus::Succeeded {
        return Ok(run.answer.clone().unwrap_or_default());
    }
    let (code, why) = match &run.error {
        Some(error) => (error.code.clone(), error.message.clone()),
        None => (
            run.status.as_str().to_string(),
            "the run ended without an answer".into(),
        ),
    };
    Err(ApiError::RunFailed {
        code,
        message: format!("run {} {}: {why}", run.id, run.status.as_str()),
    })
}

/// `stop` for an answer the code submitted; `length` when the run ran out of iterations
/// and its answer came from the final call.
fn finish_reason(run: &RunRecord) -> &'static str {
    match run.finish_reason.as_deref() {
        Some("max_iterations") => "length",
        _ => "stop",
    }
}

fn usage_view(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    })
}

/// What OpenAI's shape has no place for: the run behind the answer and what it cost.
fn rlmd_view(run: &RunRecord, usage: &Usage) -> Value {
    json!({
        "run_id": run.id,
        "status": run.status,
        "iterations": run.iterations,
        "llm_calls": usage.llm_calls,
        "cost_usd": usage.cost_usd,
    })
}

/// A client that goes away before its answer takes its run with it: nobody can read the
/// answer over this connection, so no more is paid for it.
struct CancelOnDrop {
    state: Option<AppState>,
    run_id: RunId,
}

impl CancelOnDrop {
    fn new(state: &AppState, run_id: RunId) -> Self {
        Self {
            state: Some(state.clone()),
            run_id,
        }
    }

    fn disarm(mut self) {
        self.state = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        let run_id = self.run_id;
        tokio::spawn(async move {
            match state.store.request_cancel(run_id).await {
                Ok(crate::store::CancelOutcome::CancelledQueued(event)) => state.bus.publish(event),
                Ok(_) => {
                    state.jobs.stop(run_id, StopReason::Cancelled);
                }
                Err(error) => tracing::warn!(%error, %run_id, "could not cancel an abandoned run"),
            }
        });
    }
}

/// `GET /v1/models`: `rlm`, and `rlm:<provider>/<model>` for each configured provider's
/// default model and the models the price table knows for it.
/// The models `model` may name: `rlm`, and `rlm:<provider>/<model>`.
#[utoipa::path(get, path = "/v1/models", operation_id = "list_models", tag = "openai",
    responses((status = 200, body = schema::ModelList), (status = 401, body = ErrorBody)))]
async fn models(State(state): State<AppState>) -> Json<Value> {
    let mut data = vec![model_entry(RLM_MODEL)];
    for provider in state.providers.describe(&state.prices) {
        if provider["configured"] != true {
            continue;
        }
        let name = provider["name"].as_str().unwrap_or_default();
        let default = provider["default_model"].as_str();
        let mut names: Vec<&str> = default.into_iter().collect();
        if let Some(models) = provider["models"].as_array() {
            let known = models.iter().filter_map(|m| m["model"].as_str());
            names.extend(known.filter(|m| Some(*m) != default));
        }
        data.extend(
            names
                .iter()
                .map(|model| model_entry(&format!("rlm:{name}/{model}"))),
        );
    }
    Json(json!({"object": "list", "data": data}))
}

#[utoipa::path(get, path = "/v1/models/{id}", operation_id = "get_model", tag = "openai",
    params(("id" = String, Path, description = "`rlm` or `rlm:<provider>/<model>`")),
    responses((status = 200, body = schema::Model), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    parse_model(&id, &state.providers)?;
    Ok(Json(model_entry(&id)))
}

fn model_entry(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "rlmd"})
}
