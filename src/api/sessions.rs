//! The sessions resource: runs that share one REPL namespace, turn after turn.

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
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::RunId;
use crate::store::{SessionRecord, SessionStatus};
use crate::worker::StopReason;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, close))
        .routes(routes!(submit_turn))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewSession {
    idle_timeout_s: Option<f64>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
}

fn parse_session_id(raw: &str) -> Result<RunId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no session with id {raw:?}")))
}

/// The session `raw` names, if the caller may see it: another key's does not exist.
async fn load(state: &AppState, caller: &Caller, raw: &str) -> Result<SessionRecord, ApiError> {
    let id = parse_session_id(raw)?;
    state
        .store
        .get_session(id)
        .await?
        .filter(|session| caller.can_see(session.owner))
        .ok_or_else(|| ApiError::NotFound(format!("no session with id {raw:?}")))
}

/// Open a session (the body is optional).
#[utoipa::path(post, path = "/v1/sessions", operation_id = "create_session", tag = "sessions",
    request_body(content = Option<NewSession>, content_type = "application/json"),
    responses((status = 201, body = schema::Session), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiBody(body): ApiBody,
) -> Result<impl IntoResponse, ApiError> {
    // The body is optional: an empty POST opens a session with the defaults.
    let settings: NewSession = if body.iter().all(u8::is_ascii_whitespace) {
        NewSession::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(e.to_string()))?
    };
    let idle = settings
        .idle_timeout_s
        .unwrap_or(state.session_idle_timeout.as_secs_f64());
    if !(idle > 0.0 && idle <= 7.0 * 24.0 * 3600.0) {
        return Err(ApiError::invalid(
            "`idle_timeout_s` must be above 0 and at most 604800",
        ));
    }
    let metadata = Value::Object(settings.metadata.unwrap_or_default());
    let session = state
        .store
        .create_session((idle * 1000.0) as i64, &metadata, caller.owner())
        .await?;
    let location = format!("/v1/sessions/{}", session.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view(&session, &[])),
    ))
}

/// A session and its runs by turn.
#[utoipa::path(get, path = "/v1/sessions/{id}", operation_id = "get_session", tag = "sessions", params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, body = schema::Session), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let session = load(&state, &caller, &id).await?;
    let runs = state.store.session_runs(session.id).await?;
    Ok(Json(view(&session, &runs)))
}

/// Sessions, newest first; each with a preview of its latest turn's prompt.
#[utoipa::path(get, path = "/v1/sessions", operation_id = "list_sessions", tag = "sessions", params(ListQuery),
    responses((status = 200, body = schema::SessionList), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = query.filter::<SessionStatus>(caller.list_scope())?;
    let sessions = state.store.list_sessions(&filter).await?;
    let ids: Vec<RunId> = sessions.iter().map(|(session, _)| session.id).collect();
    let items: Vec<Value> = sessions
        .iter()
        .map(|(session, preview)| {
            let mut item = view(session, &[]);
            if let Some(map) = item.as_object_mut() {
                map.remove("runs");
            }
            item["prompt_preview"] = preview.as_deref().map_or(Value::Null, paging::preview);
            item
        })
        .collect();
    Ok(Json(
        json!({"sessions": items, "next_cursor": paging::next_cursor(&filter, &ids)}),
    ))
}

/// Submits the session's next turn: a run like any other (same body as POST /v1/runs) that
/// runs in the session's REPL once the turns before it have ended.
#[utoipa::path(post, path = "/v1/sessions/{id}/runs", operation_id = "submit_session_turn", tag = "sessions", params(("id" = String, Path, description = "The session's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "As for POST /v1/runs")),
    request_body(content = SubmitRun, content_type = "application/json"),
    responses((status = 202, body = schema::Run), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The session is closed, or the key was used for another body", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn submit_turn(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiBody(bytes): ApiBody,
) -> Result<Response, ApiError> {
    let session = load(&state, &caller, &id).await?;
    let body: SubmitRun = json::parse(&bytes)?;
    let route = format!("POST /v1/sessions/{}/runs", session.id);
    let key = idempotency::key_of(&headers, &caller, &route, &bytes)?;
    if session.status != SessionStatus::Open && key.is_none() {
        return Err(closed(&session));
    }
    // A turn is its session's, even when an admin submits it.
    let mut new_run = body.checked_run(&state, session.owner).await?;
    new_run.session_id = Some(session.id);
    // A retried turn is answered even once its session has closed: it was accepted.
    let queued = idempotency::queue_once(&state, &caller, &new_run, key.as_ref()).await?;
    Ok(idempotency::accepted(&queued))
}

/// Closes a session: its queued turns are cancelled, a running one is stopped, its REPL
/// is freed. Closing a closed session changes nothing.
#[utoipa::path(delete, path = "/v1/sessions/{id}", operation_id = "close_session", tag = "sessions", params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, body = schema::Session), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let session = load(&state, &caller, &id).await?;
    if let Some(cancelled) = state
        .store
        .close_session(session.id, SessionStatus::Closed)
        .await?
    {
        cancelled.into_iter().for_each(|e| state.bus.publish(e));
        for (_, run_id, status) in state.store.session_runs(session.id).await? {
            if status == "running" {
                state.store.request_cancel(run_id).await?;
                state.jobs.stop(run_id, StopReason::Cancelled);
            }
        }
        state.sessions.discard(session.id).await;
    }
    let session = load(&state, &caller, &id).await?;
    let runs = state.store.session_runs(session.id).await?;
    Ok(Json(view(&session, &runs)))
}

fn closed(session: &SessionRecord) -> ApiError {
    let status = match session.status {
        SessionStatus::Expired => "expired",
        _ => "closed",
    };
    ApiError::Conflict {
        code: "session_closed",
        message: format!("the session is {status}; open a new one"),
    }
}

fn view(session: &SessionRecord, runs: &[(u32, RunId, String)]) -> Value {
    let open = session.status == SessionStatus::Open;
    let runs: Vec<Value> = runs
        .iter()
        .map(|(turn, id, status)| json!({"turn": turn, "id": id, "status": status}))
        .collect();
    json!({
        "id": session.id,
        "status": session.status,
        "turns": session.turns,
        "idle_timeout_s": session.idle_timeout_ms as f64 / 1000.0,
        "metadata": session.metadata,
        "created_at": views::timestamp(session.created_at),
        "last_used_at": views::timestamp(session.last_used_at),
        "expires_at": open.then(|| views::timestamp(session.last_used_at + session.idle_timeout_ms)),
        "closed_at": session.closed_at.map(views::timestamp),
        "runs": runs,
    })
}
