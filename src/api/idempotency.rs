//! The `Idempotency-Key` request header: a client that retries a request it is not sure
//! went through sends the same key, and gets what the first request made instead of a
//! second run (and a second bill). Keys are per API key and route, kept 24 hours.

use super::auth::Caller;
use super::error::ApiError;
use super::runs::load_run;
use super::{views, AppState};
use crate::store::{IdempotencyKey, NewRun, RunRecord, Submitted};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

pub const HEADER: &str = "idempotency-key";
/// Set on an answer given again for a retried request.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The request's key for `route`, if it sent one, with its body's hash: a retry sends the
/// same bytes. (The body is not parsed into a value to compare it: a context can be large
/// and deep, and is kept as the client wrote it.)
pub fn key_of(
    headers: &HeaderMap,
    caller: &Caller,
    route: &str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= 255)
        .filter(|key| key.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    let owner = caller
        .owner()
        .map_or_else(|| "open".to_string(), |k| k.0.to_string());
    Ok(Some(IdempotencyKey {
        scope: format!("{owner} {route}"),
        key: key.to_string(),
        body_hash: crate::keys::sha256_hex(&String::from_utf8_lossy(body)),
    }))
}

pub fn conflict() -> ApiError {
    ApiError::Conflict {
        code: "idempotency_conflict",
        message: "this Idempotency-Key was used for another request; use a new key".into(),
    }
}

/// `response`, marked as an answer given again for a retried request when `replayed`.
pub fn mark(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response.headers_mut().insert(
            HeaderName::from_static(REPLAYED_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// A run a request stored: new, or the one the first request with its key made.
pub enum Queued {
    New(RunRecord),
    /// As it is now.
    Replayed(RunRecord),
}

impl Queued {
    pub fn run(&self) -> &RunRecord {
        match self {
            Self::New(run) | Self::Replayed(run) => run,
        }
    }
}

/// Queues `run`, once per idempotency key: a new run is announced and a worker woken.
pub async fn queue_once(
    state: &AppState,
    caller: &Caller,
    run: &NewRun,
    key: Option<&IdempotencyKey>,
) -> Result<Queued, ApiError> {
    let runs = std::slice::from_ref(run);
    match state
        .store
        .insert_runs_once(runs, caller.max_queued_runs(), key)
        .await?
    {
        Submitted::New(mut inserted) => {
            let (run, event) = inserted.remove(0);
            state.bus.publish(event);
            state.wake.notify_waiters();
            Ok(Queued::New(run))
        }
        Submitted::Replayed(ids) => {
            let run = load_run(state, caller, &ids[0].to_string()).await?;
            Ok(Queued::Replayed(run))
        }
        Submitted::Conflict => Err(conflict()),
    }
}

/// `202 Accepted` with the run and its `Location`: a new run as stored (a worker may have
/// it already), a replayed one as it is now.
pub fn accepted(queued: &Queued) -> Response {
    let (view, replayed) = match queued {
        Queued::New(run) => (views::new_run(run), false),
        Queued::Replayed(run) => (views::run(run), true),
    };
    let location = format!("/v1/runs/{}", queued.run().id);
    let response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    );
    mark(response.into_response(), replayed)
}
