//! The runs resource: submit, read, list, cancel, trajectory.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::json::{self, ApiBody, ApiQuery};
use super::paging::{self, ListQuery};
use super::schema::{self, ErrorBody};
use super::submit::SubmitRun;
use super::{idempotency, views, AppState};
use crate::domain::{RunId, RunStatus};
use std::collections::HashMap;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::store::{CancelOutcome, RunRecord, Store};
use crate::worker::StopReason;

/// How long a cancel request waits for a running run to stop before answering 202.
const CANCEL_WAIT: Duration = Duration::from_secs(3);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit, list))
        .routes(routes!(show))
        .routes(routes!(trajectory))
        .routes(routes!(call))
        .routes(routes!(cancel))
}

/// Parses a run id from the path; a malformed id is simply a run that does not exist.
pub fn parse_run_id(raw: &str) -> Result<RunId, ApiError> {
    raw.parse().map_err(|_| ApiError::run_not_found(raw))
}

/// The run `raw` names, if the caller may see it: another key's run does not exist.
pub async fn load_run(state: &AppState, caller: &Caller, raw: &str) -> Result<RunRecord, ApiError> {
    let run_id = parse_run_id(raw)?;
    state
        .store
        .get_run(run_id)
        .await?
        .filter(|run| caller.can_see(run.owner))
        .ok_or_else(|| ApiError::run_not_found(raw))
}

/// Queue a run.
#[utoipa::path(post, path = "/v1/runs", operation_id = "submit_run", tag = "runs",
    request_body(content = SubmitRun, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Retries with the same key and body get the first request's run")),
    responses(
        (status = 202, description = "Queued; or, for a retried Idempotency-Key, the run it made", body = schema::Run),
        (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used for another body", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "The key's queue is full", body = ErrorBody)))]
async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiBody(bytes): ApiBody,
) -> Result<Response, ApiError> {
    let body: SubmitRun = json::parse(&bytes)?;
    let key = idempotency::key_of(&headers, &caller, "POST /v1/runs", &bytes)?;
    let new_run = body.checked_run(&state, caller.owner()).await?;
    let queued = idempotency::queue_once(&state, &caller, &new_run, key.as_ref()).await?;
    Ok(idempotency::accepted(&queued))
}

/// A run, with its spending by model (and its tree's, for a root).
#[utoipa::path(get, path = "/v1/runs/{id}", operation_id = "get_run", tag = "runs", params(("id" = String, Path, description = "The run's id")),
    responses((status = 200, body = schema::Run), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such run (or another key's)", body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = load_run(&state, &caller, &id).await?;
    Ok(Json(run_detail(&state.store, &run).await?))
}

/// A run with its spending by model and, for a root, its whole tree's.
pub async fn run_detail(store: &Store, run: &RunRecord) -> Result<Value, ApiError> {
    let own = store.usage_by_model(run.id, false).await?;
    if run.parent_id.is_some() {
        return Ok(views::run_detail(run, &own, None));
    }
    let by_model = store.usage_by_model(run.id, true).await?;
    let runs = store.tree_size(run.id).await?;
    Ok(views::run_detail(
        run,
        &own,
        Some(views::TreeSpending {
            runs,
            by_model: &by_model,
        }),
    ))
}

/// Root runs, newest first.
#[utoipa::path(get, path = "/v1/runs", operation_id = "list_runs", tag = "runs", params(ListQuery),
    responses((status = 200, body = schema::RunList), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = query.filter::<RunStatus>(caller.list_scope())?;
    let runs = state.store.list_runs(&filter).await?;
    let ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();
    let runs: Vec<Value> = runs
        .iter()
        .map(|run| {
            // The start of the prompt, not the whole of it (GET /v1/runs/{id} has that).
            let mut item = views::run(run);
            if let Some(view) = item.as_object_mut() {
                view.remove("prompt");
            }
            item["prompt_preview"] = paging::preview(&run.prompt);
            item
        })
        .collect();
    Ok(Json(
        json!({"runs": runs, "next_cursor": paging::next_cursor(&filter, &ids)}),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TrajectoryQuery {
    /// `json` (the default) or `rlms` (JSON Lines, as the rlms logger writes).
    format: Option<String>,
}

/// The whole tree's record: rlmd's JSON, or (`?format=rlms`) the `rlms` logger's JSONL.
#[utoipa::path(get, path = "/v1/runs/{id}/trajectory", operation_id = "get_trajectory", tag = "runs", params(("id" = String, Path, description = "The run's id"), TrajectoryQuery),
    responses(
        (status = 200, content(
            (schema::Trajectory = "application/json"),
            (String = "application/x-ndjson"))),
        (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn trajectory(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<TrajectoryQuery>,
) -> Result<Response, ApiError> {
    let run = load_run(&state, &caller, &id).await?;
    match query.format.as_deref() {
        None | Some("" | "json") => Ok(Json(trajectory_json(&state, &run).await?).into_response()),
        Some("rlms") => {
            let lines = super::export::rlms_jsonl(&state.store, &run).await?;
            Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response())
        }
        Some(other) => Err(ApiError::invalid(format!(
            "unknown `format` {other:?}: json or rlms"
        ))),
    }
}

async fn trajectory_json(state: &AppState, run: &RunRecord) -> Result<Value, ApiError> {
    let run_id = run.id;
    let descendants = state.store.descendants(run_id).await?;
    // Deepest first, so each run's children are built before it.
    let mut children_of: HashMap<RunId, Vec<Value>> = HashMap::new();
    for child in descendants.iter().rev() {
        let trajectory = state.store.load_trajectory(child.id).await?;
        let mut children = children_of.remove(&child.id).unwrap_or_default();
        children.reverse();
        let node = views::trajectory(views::run(child), &trajectory, children);
        if let Some(parent) = child.parent_id {
            children_of.entry(parent).or_default().push(node);
        }
    }
    let trajectory = state.store.load_trajectory(run_id).await?;
    let mut children = children_of.remove(&run_id).unwrap_or_default();
    children.reverse();
    let detail = run_detail(&state.store, run).await?;
    Ok(views::trajectory(detail, &trajectory, children))
}

/// One model call of a run, whole: what it sent (the exact messages) and what came back.
#[utoipa::path(get, path = "/v1/runs/{id}/calls/{index}", operation_id = "get_call", tag = "runs",
    params(("id" = String, Path, description = "The run's id"),
        ("index" = u32, Path, description = "The call's `index` in the run's trajectory")),
    responses((status = 200, body = schema::Call),
        (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such run or call", body = ErrorBody)))]
async fn call(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, index)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let run = load_run(&state, &caller, &id).await?;
    let not_found = || ApiError::NotFound(format!("run {id} has no call {index:?}"));
    let index: usize = index.parse().map_err(|_| not_found())?;
    let calls = state.store.llm_calls(run.id).await?;
    let record = calls.get(index).ok_or_else(not_found)?;
    let messages = super::export::sent_messages(&calls, Some(index))
        .pop()
        .map(|(_, messages)| messages);
    let mut view = views::call(index, record);
    view["block"] = json!(record.block);
    view["messages"] = json!(messages);
    Ok(Json(view))
}

/// Cancels a run: a queued one at once; a running one is stopped by its worker (its REPL
/// killed, its model calls dropped), which this waits a moment for.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", operation_id = "cancel_run", tag = "runs", params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Cancelled (or stopped)", body = schema::Run),
        (status = 202, description = "Asked to stop; not stopped yet", body = schema::Run),
        (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Already finished, or a child run", body = ErrorBody)))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let run = load_run(&state, &caller, &id).await?;
    let run_id = run.id;
    if run.parent_id.is_some() {
        // A child lives inside its root's job; its parent's code is waiting on it.
        return Err(ApiError::Conflict {
            code: "child_run",
            message: format!(
                "a child run ends with its tree: cancel its root run {}",
                run.root_id
            ),
        });
    }
    match state.store.request_cancel(run_id).await? {
        CancelOutcome::NotFound => return Err(ApiError::run_not_found(&id)),
        CancelOutcome::AlreadyFinished(status) => {
            return Err(ApiError::Conflict {
                code: "run_finished",
                message: format!("the run has already finished ({})", status.as_str()),
            })
        }
        CancelOutcome::CancelledQueued(event) => state.bus.publish(event),
        CancelOutcome::Requested => {
            state.jobs.stop(run_id, StopReason::Cancelled);
            let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
            loop {
                let run = state
                    .store
                    .get_run(run_id)
                    .await?
                    .ok_or_else(|| ApiError::run_not_found(&id))?;
                if run.status.is_terminal() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok((StatusCode::ACCEPTED, Json(views::run(&run))));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let run = state
        .store
        .get_run(run_id)
        .await?
        .ok_or_else(|| ApiError::run_not_found(&id))?;
    Ok((StatusCode::OK, Json(views::run(&run))))
}
