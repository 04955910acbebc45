//! `GET /v1/runs/{id}/events`: Server-Sent Events. Replays the stored events after
//! `Last-Event-ID` (or `?after=`), then follows live, and closes after the run's terminal
//! event (at once if the run had ended and the client already has that event). The
//! database is the source of truth: whenever the live feed skips a number, lags, reports
//! an event another node stored, or is quiet for a second, the stream re-reads from the
//! store, so no event is lost and none is sent twice.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::auth::Caller;
use super::error::ApiError;
use super::json::ApiQuery;
use super::runs::load_run;
use super::schema::ErrorBody;
use super::{views, AppState};
use crate::domain::RunId;
use crate::events::Live;
use crate::store::{RunRecord, Store, StoredEvent};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

const REPLAY_BATCH: u32 = 500;
const POLL_EVERY: Duration = Duration::from_secs(1);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Replay from after this event (as `Last-Event-ID` does).
    after: Option<i64>,
}

/// Server-Sent Events of a run (of its whole tree, for a root): replayed, then live.
#[utoipa::path(get, path = "/v1/runs/{id}/events", operation_id = "run_events", tag = "runs",
    params(("id" = String, Path, description = "The run's id"), EventsQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "`id:` the event number, `event:` its type, `data:` `{seq, type, run_id, created_at, data}`",
        content_type = "text/event-stream", body = super::schema::StreamEvent),
        (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before the first read, so nothing published in between is missed.
    let live = state.bus.subscribe();
    // Another key's run is a run that does not exist.
    let run = load_run(&state, &caller, &id).await?;
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| ApiError::invalid("Last-Event-ID must be an event number"))?,
        None => query.after.unwrap_or(0),
    };
    let follower = Follower::new(&state, live, &run, after);
    // Counted in `rlmd_sse_clients` for as long as the stream is open.
    let counted = crate::metrics::get().sse_client();
    let stream = stream::unfold((follower, counted), |(mut follower, counted)| async move {
        let event = follower.next().await?;
        Some((Ok(sse_event(&event)), (follower, counted)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse_event(event: &StoredEvent) -> Event {
    Event::default()
        .id(event.seq.to_string())
        .event(event.kind.clone())
        .data(views::event(event).to_string())
}

/// Reads a run's events (its whole tree's, for a root) in order, from the store and live.
pub(super) struct Follower {
    store: Store,
    live: broadcast::Receiver<Arc<Live>>,
    run_id: RunId,
    last_seq: i64,
    pending: VecDeque<StoredEvent>,
    /// The store may hold events this stream has not sent yet.
    reread: bool,
    done: bool,
    /// The run had ended when the stream opened: its terminal event is stored, so a read
    /// that finds nothing more means the client already has it (it resumed at the end).
    finished: bool,
    shutdown: CancellationToken,
}

impl Follower {
    /// Follows `run` from after event `after`. `live` must have been subscribed before the
    /// run was read, so that nothing published in between is missed.
    pub(super) fn new(
        state: &AppState,
        live: broadcast::Receiver<Arc<Live>>,
        run: &RunRecord,
        after: i64,
    ) -> Self {
        Self {
            store: state.store.clone(),
            live,
            run_id: run.id,
            last_seq: after.max(0),
            pending: VecDeque::new(),
            reread: true,
            done: false,
            finished: run.status.is_terminal(),
            shutdown: state.shutdown.clone(),
        }
    }

    /// Whether an event of `run_id`, in the tree `root_id`, belongs on this stream.
    fn follows(&self, root_id: RunId, run_id: RunId) -> bool {
        run_id == self.run_id || root_id == self.run_id
    }

    /// The next event; `None` after the run's terminal event (or at shutdown).
    pub(super) async fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if event.seq <= self.last_seq {
                    continue;
                }
                self.last_seq = event.seq;
                if event.run_id == self.run_id && event.is_terminal() {
                    self.done = true;
                }
                return Some(event);
            }
            if self.done {
                return None;
            }
            if self.reread {
                match self
                    .store
                    .events_after(self.run_id, self.last_seq, REPLAY_BATCH)
                    .await
                {
                    Ok(batch) => {
                        if batch.is_empty() && self.finished {
                            return None;
                        }
                        self.reread = batch.len() == REPLAY_BATCH as usize;
                        self.pending.extend(batch);
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(%error, "event stream could not read the store");
                        return None;
                    }
                }
            }
            tokio::select! {
                received = self.live.recv() => match received.as_deref() {
                    Ok(Live::Event(event)) if self.follows(event.root_id, event.run_id) => {
                        if event.seq == self.last_seq + 1 {
                            self.pending.push_back(event.clone());
                        } else if event.seq > self.last_seq {
                            self.reread = true;
                        }
                    }
                    Ok(Live::Elsewhere { root_id, run_id, seq }) => {
                        if self.follows(*root_id, *run_id) && *seq > self.last_seq {
                            self.reread = true;
                        }
                    }
                    Ok(Live::Resync) => self.reread = true,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.reread = true,
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(POLL_EVERY) => self.reread = true,
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }
}
