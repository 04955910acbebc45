//! The contexts resource: large contexts uploaded once (streamed to disk, stored by their
//! SHA-256) and then named by `context_id` in runs, turns, comparisons and chat requests.
//! Each API key sees only its own uploads.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::error::ApiError;
use super::guards;
use super::schema::ErrorBody;
use super::AppState;
use crate::contexts::{self, ContextFormat, ContextId, UploadError};
use crate::store::{now_ms, ContextEntry, KeyId};

const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;
const MAX_NAME_CHARS: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload, list))
        .routes(routes!(show, delete))
}

/// How to read an upload. Without `format`, the content type says: `application/json` is
/// JSON, `application/x-ndjson` / `application/jsonl` JSON Lines, anything else text.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// `text`, `json` or `jsonl`.
    format: Option<String>,
    /// A name to recognise it by in listings.
    name: Option<String>,
}

/// An uploaded context.
#[derive(ToSchema)]
#[allow(dead_code)] // Documents `ContextEntry`'s JSON.
struct Context {
    /// The SHA-256 of its bytes, in hex.
    id: String,
    format: ContextFormat,
    bytes: u64,
    /// What the root model is told `context` holds.
    description: String,
    name: Option<String>,
    created_at: i64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ContextList {
    contexts: Vec<Context>,
    /// The `offset` of the next page, when this one was full.
    next_offset: Option<u32>,
}

/// Upload a context: the raw bytes as the body (any size up to `RLM_MAX_CONTEXT_BYTES`,
/// streamed to disk). 201 when new to the key, 200 when the key had these bytes already.
#[utoipa::path(post, path = "/v1/contexts", operation_id = "upload_context", tag = "contexts",
    params(UploadQuery),
    request_body(content = String, description = "The context's bytes: UTF-8 text, one JSON document, or JSON Lines",
        content_type = "application/octet-stream"),
    responses((status = 201, body = Context), (status = 200, body = Context),
        (status = 400, description = "Not a context the REPL can load", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 413, description = "Larger than RLM_MAX_CONTEXT_BYTES", body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let format = format_of(query.format.as_deref(), &headers)?;
    let name = match query.name {
        Some(name) if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS => {
            return Err(ApiError::invalid(format!(
                "`name` must be 1 to {MAX_NAME_CHARS} characters"
            )))
        }
        other => other,
    };
    // An announced length over the limit was refused before this ran (guards.rs); a
    // chunked body is cut off at the limit as it streams in.
    let received = contexts::receive(
        &state.contexts,
        body.into_data_stream(),
        format,
        state.max_context_bytes,
    )
    .await
    .map_err(|error| match error {
        UploadError::TooLarge(max) => guards::context_too_large(max),
        UploadError::Invalid(why) => ApiError::bad_request("invalid_context", why),
        UploadError::Interrupted(why) => ApiError::bad_request(
            "upload_interrupted",
            format!("the upload was cut off: {why}"),
        ),
        UploadError::Storage(why) => ApiError::Internal(format!("storing a context: {why}")),
    })?;
    let scanned = received.scanned;
    let entry = ContextEntry {
        id: scanned.id,
        format,
        bytes: scanned.bytes,
        description: scanned.description,
        name,
        created_at: now_ms(),
    };
    let created = state.store.put_context(caller.owner(), &entry).await?;
    let entry = state
        .store
        .get_context(caller.owner(), &entry.id)
        .await?
        .ok_or_else(|| ApiError::Internal("an upload vanished as it was stored".into()))?;
    tracing::info!(id = %entry.id, bytes = entry.bytes, created, deduplicated = received.already_stored, "context uploaded");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)))
}

fn format_of(asked: Option<&str>, headers: &HeaderMap) -> Result<ContextFormat, ApiError> {
    if let Some(name) = asked {
        return ContextFormat::parse(name).ok_or_else(|| {
            ApiError::invalid(format!(
                "`format` must be text, json or jsonl (got {name:?})"
            ))
        });
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Ok(match essence.as_str() {
        "application/json" => ContextFormat::Json,
        "application/x-ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => ContextFormat::Jsonl,
        _ => ContextFormat::Text,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Items a page, 1 to 100 (default 20).
    limit: Option<String>,
    /// Items to skip.
    offset: Option<String>,
}

/// The caller's uploads, newest first.
#[utoipa::path(get, path = "/v1/contexts", operation_id = "list_contexts", tag = "contexts",
    params(PageQuery),
    responses((status = 200, body = ContextList), (status = 400, description = "Bad input", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = match query.limit.as_deref() {
        None | Some("") => DEFAULT_PAGE,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!("`limit` must be a number from 1 to {MAX_PAGE}"))
            })?,
    };
    let offset = match query.offset.as_deref() {
        None | Some("") => 0,
        Some(raw) => raw
            .parse::<u32>()
            .map_err(|_| ApiError::invalid("`offset` must be a number of items to skip"))?,
    };
    let entries = state
        .store
        .list_contexts(caller.owner(), limit, offset)
        .await?;
    let next_offset = (entries.len() == limit as usize).then_some(offset + limit);
    Ok(Json(
        json!({"contexts": entries, "next_offset": next_offset}),
    ))
}

/// One of the caller's uploads.
#[utoipa::path(get, path = "/v1/contexts/{id}", operation_id = "get_context", tag = "contexts",
    params(("id" = String, Path, description = "The context's SHA-256")),
    responses((status = 200, body = Context), (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(find(&state, caller.owner(), &raw).await?))
}

/// Forget an upload: it can no longer be named in new runs. Its bytes are deleted too,
/// unless another key uploaded them or a run was given them (its record needs them).
#[utoipa::path(delete, path = "/v1/contexts/{id}", operation_id = "delete_context", tag = "contexts",
    params(("id" = String, Path, description = "The context's SHA-256")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = find(&state, caller.owner(), &raw).await?.id;
    if !state.store.delete_context(caller.owner(), &id).await? {
        return Err(not_found(&raw));
    }
    if state.store.blob_bytes(&id).await?.is_none() {
        // This node's copy goes with the bytes (a REPL that has it open keeps it).
        state.contexts.forget(&id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The upload `raw` names, if the key has it.
pub async fn find(
    state: &AppState,
    owner: Option<KeyId>,
    raw: &str,
) -> Result<ContextEntry, ApiError> {
    let id = ContextId::parse(raw).ok_or_else(|| not_found(raw))?;
    state
        .store
        .get_context(owner, &id)
        .await?
        .ok_or_else(|| not_found(raw))
}

fn not_found(raw: &str) -> ApiError {
    ApiError::NotFound(format!("no context with id {raw:?}"))
}
