//! Comparisons (original example 07): the same task on several providers and/or models.
//! Each target is an ordinary run with its own trajectory; the comparison reads them side
//! by side: answer, wall time, tokens and cost.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::json::{self, ApiBody, ApiQuery};
use super::paging::{self, ListQuery, NoStatus};
use super::schema::{self, ErrorBody};
use super::submit::SubmitRun;
use super::{idempotency, preflight, views, AppState};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{RunId, RunStatus};
use crate::store::Submitted;

const MAX_TARGETS: usize = 16;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Target {
    provider: String,
    #[serde(default)]
    model: Option<String>,
}

/// The body of a comparison: a run's body without `provider` and `model`, plus `targets`.
#[derive(ToSchema)]
#[allow(dead_code)] // Documents the body, which is read as a map.
struct NewComparison {
    /// 1 to 16 targets.
    targets: Vec<Target>,
    prompt: String,
    /// Any JSON, as in a run.
    context: Option<Value>,
    /// Instead of `context`: an uploaded context's id, as in a run.
    context_id: Option<String>,
}

/// `{"targets": [{"provider", "model"?}, …], …}` where the rest is a run body (`prompt`,
/// `context`, `limits`, …) shared by every target.
#[utoipa::path(post, path = "/v1/comparisons", operation_id = "create_comparison", tag = "comparisons",
    params(("Idempotency-Key" = Option<String>, Header, description = "As for POST /v1/runs")),
    request_body(content = NewComparison, content_type = "application/json",
        description = "Also every other field of a run's body (limits, sampling, ...)"),
    responses((status = 202, body = schema::ComparisonCreated), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiBody(bytes): ApiBody,
) -> Result<Response, ApiError> {
    let mut body: serde_json::Map<String, Value> = json::parse(&bytes)?;
    let key = idempotency::key_of(&headers, &caller, "POST /v1/comparisons", &bytes)?;
    let targets = body
        .remove("targets")
        .ok_or_else(|| ApiError::invalid("missing field `targets`"))?;
    let targets: Vec<Target> = serde_json::from_value(targets)
        .map_err(|e| ApiError::invalid(format!("`targets`: {e}")))?;
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(ApiError::invalid(format!(
            "`targets` must hold 1 to {MAX_TARGETS} entries"
        )));
    }
    for field in ["provider", "model"] {
        if body.contains_key(field) {
            return Err(ApiError::invalid(format!(
                "`{field}` belongs in each target"
            )));
        }
    }
    // Every target is checked before any run is stored.
    let mut runs: Vec<crate::store::NewRun> = Vec::with_capacity(targets.len());
    for (index, target) in targets.iter().enumerate() {
        let mut run_body = body.clone();
        run_body.insert("provider".into(), json!(target.provider));
        if let Some(model) = &target.model {
            run_body.insert("model".into(), json!(model));
        }
        let submit: SubmitRun = serde_json::from_value(Value::Object(run_body))
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let (mut new_run, context) = submit
            .into_new_run(&state.defaults, &state.providers)
            .map_err(|e| e.in_target(index))?;
        // Targets differ only in provider and model: tools and context are checked once.
        match runs.first() {
            None => {
                new_run = preflight::check(new_run).await?;
                new_run.context = context.resolve(&state, caller.owner()).await?;
            }
            Some(first) => new_run.context = first.context.clone(),
        }
        runs.push(new_run);
    }
    let id = RunId::new();
    for new_run in &mut runs {
        new_run
            .spec
            .metadata
            .insert("comparison_id".into(), json!(id));
        new_run.owner = caller.owner();
    }
    // All targets are queued, or none (a full queue refuses them together).
    let submitted = state
        .store
        .insert_comparison_once(id, &runs, caller.max_queued_runs(), key.as_ref())
        .await?;
    let (id, created, replayed) = match submitted {
        Submitted::New(inserted) => {
            let mut created = Vec::with_capacity(inserted.len());
            for (run, event) in inserted {
                state.bus.publish(event);
                created.push(run);
            }
            state.wake.notify_waiters();
            (id, created, false)
        }
        Submitted::Replayed(ids) => {
            let mut created = Vec::with_capacity(ids.len());
            for run_id in ids {
                let run = super::runs::load_run(&state, &caller, &run_id.to_string()).await?;
                created.push(run);
            }
            let first = created
                .first()
                .and_then(|run| run.spec.metadata.get("comparison_id"));
            let id = first
                .and_then(|id| id.as_str()?.parse().ok())
                .ok_or_else(|| ApiError::Internal("a comparison's run lost its id".into()))?;
            (id, created, true)
        }
        Submitted::Conflict => return Err(idempotency::conflict()),
    };
    let targets: Vec<Value> = created
        .iter()
        .map(|r| json!({"provider": r.spec.provider, "model": r.spec.model, "run_id": r.id}))
        .collect();
    let response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/comparisons/{id}"))],
        Json(json!({"id": id, "runs": targets})),
    );
    Ok(idempotency::mark(response.into_response(), replayed))
}

/// Comparisons, newest first: their targets' states and the start of their prompt.
#[utoipa::path(get, path = "/v1/comparisons", operation_id = "list_comparisons", tag = "comparisons", params(ListQuery),
    responses((status = 200, body = schema::ComparisonList), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = query.filter::<NoStatus>(caller.list_scope())?;
    let comparisons = state.store.list_comparisons(&filter).await?;
    let ids: Vec<RunId> = comparisons.iter().map(|c| c.id).collect();
    let items: Vec<Value> = comparisons
        .iter()
        .map(|comparison| {
            let done = comparison.targets.iter().all(|t| t.status.is_terminal());
            let targets: Vec<Value> = comparison
                .targets
                .iter()
                .map(|t| {
                    json!({"provider": t.provider, "model": t.model, "run_id": t.run_id, "status": t.status})
                })
                .collect();
            json!({
                "id": comparison.id,
                "status": if done { "finished" } else { "running" },
                "created_at": views::timestamp(comparison.created_at),
                "prompt_preview": comparison.prompt_preview.as_deref().map(paging::preview),
                "runs": targets,
            })
        })
        .collect();
    Ok(Json(
        json!({"comparisons": items, "next_cursor": paging::next_cursor(&filter, &ids)}),
    ))
}

/// The targets side by side; `fastest` and `cheapest` once all have ended.
#[utoipa::path(get, path = "/v1/comparisons/{id}", operation_id = "get_comparison", tag = "comparisons", params(("id" = String, Path, description = "The comparison's id")),
    responses((status = 200, body = schema::Comparison), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no comparison with id {raw:?}"));
    let id: RunId = raw.parse().map_err(|_| not_found())?;
    let run_ids = state
        .store
        .get_comparison(id)
        .await?
        .filter(|comparison| caller.can_see(comparison.owner))
        .ok_or_else(not_found)?
        .run_ids;
    let mut results = Vec::with_capacity(run_ids.len());
    let mut finished = 0;
    for run_id in run_ids {
        let Some(run) = state.store.get_run(run_id).await? else {
            continue;
        };
        if run.status.is_terminal() {
            finished += 1;
        }
        let wall_ms = match (run.started_at, run.finished_at) {
            (Some(start), Some(end)) => Some(end - start),
            _ => None,
        };
        results.push(json!({
            "provider": run.spec.provider,
            "model": run.spec.model,
            "run_id": run.id,
            "status": run.status,
            "answer": views::answer(&run),
            "answer_text": run.answer,
            "error": run.error,
            "wall_ms": wall_ms,
            "usage": run.usage,
            "cost_usd": run.usage.cost_usd,
        }));
    }
    let done = finished == results.len();
    let best = |key: &str| {
        results
            .iter()
            .filter(|r| r["status"] == json!(RunStatus::Succeeded))
            .min_by(|a, b| {
                a[key]
                    .as_f64()
                    .partial_cmp(&b[key].as_f64())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|r| r["run_id"].clone())
    };
    let (fastest, cheapest) = if done {
        (best("wall_ms"), best("cost_usd"))
    } else {
        (None, None)
    };
    Ok(Json(json!({
        "id": id,
        "status": if done { "finished" } else { "running" },
        "results": results,
        "fastest": fastest,
        "cheapest": cheapest,
    })))
}
