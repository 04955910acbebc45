//! Submitting, reading, listing and cancelling runs.

use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::contexts::{self, RunContext};
use super::events::{self, StoredEvent};
use super::keys::KeyId;
use super::page::Page;
use super::{json_text, now_ms, Store, StoreError, StoreResult};
use crate::domain::{RunError, RunId, RunSpec, RunStatus};

/// A run about to be queued.
pub struct NewRun {
    pub id: RunId,
    pub root_id: RunId,
    pub parent_id: Option<RunId>,
    pub depth: u32,
    pub prompt: String,
    pub spec: RunSpec,
    /// What its REPL gets as `context`.
    pub context: RunContext,
    /// The session this run is the next turn of.
    pub session_id: Option<RunId>,
    /// The API key it belongs to (a child's is its root's, a turn's its session's).
    pub owner: Option<KeyId>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    /// Model calls made (answers from the sub-call cache are not).
    pub llm_calls: i64,
    pub cost_usd: f64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: i64,
    /// USD the provider's prompt cache saved, less its writes' premium.
    pub cache_saved_usd: f64,
    /// Sub-calls answered from rlmd's sub-call cache.
    pub cache_hits: i64,
}

impl serde::Serialize for Usage {
    /// Shown with `total_tokens` (input + output), derived so it cannot disagree.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct View {
            input_tokens: i64,
            output_tokens: i64,
            total_tokens: i64,
            cached_tokens: i64,
            reasoning_tokens: i64,
            llm_calls: i64,
            cost_usd: f64,
            cache_write_tokens: i64,
            cache_saved_usd: f64,
            cache_hits: i64,
        }
        View {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            total_tokens: self.input_tokens + self.output_tokens,
            cached_tokens: self.cached_tokens,
            reasoning_tokens: self.reasoning_tokens,
            llm_calls: self.llm_calls,
            cost_usd: self.cost_usd,
            cache_write_tokens: self.cache_write_tokens,
            cache_saved_usd: self.cache_saved_usd,
            cache_hits: self.cache_hits,
        }
        .serialize(serializer)
    }
}

#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: RunId,
    pub root_id: RunId,
    pub parent_id: Option<RunId>,
    pub depth: u32,
    pub status: RunStatus,
    pub prompt: String,
    pub spec: RunSpec,
    pub answer: Option<String>,
    pub finish_reason: Option<String>,
    pub error: Option<RunError>,
    pub attempts: u32,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub usage: Usage,
    pub iterations: i64,
    pub session_id: Option<RunId>,
    /// 0-based turn within its session.
    pub turn: Option<u32>,
    pub owner: Option<KeyId>,
    /// The SHA-256 of the context it was given (`None`: none, or one stored before
    /// contexts were blobs).
    pub context_id: Option<String>,
}

/// A page of a listing, newest first: of runs, sessions or comparisons (`S`: its status).
#[derive(Debug, Clone, Default)]
pub struct ListFilter<S = RunStatus> {
    pub status: Option<S>,
    /// Only items created before this one (the page cursor; ids are time-ordered).
    pub before: Option<RunId>,
    pub limit: u32,
    /// Items to skip first (for clients that page by offset rather than by cursor).
    pub offset: u32,
    /// Only the items of this key; `None`: everyone's.
    pub owner: Option<KeyId>,
}

/// How many characters of a prompt a listing shows.
pub const PREVIEW_CHARS: usize = 200;

pub enum CancelOutcome {
    NotFound,
    /// The run was still queued: it is now cancelled, and this is its terminal event.
    CancelledQueued(StoredEvent),
    /// The run is running: its worker has been asked to stop it.
    Requested,
    AlreadyFinished(RunStatus),
}

impl Store {
    /// The columns `run_from_row` reads, from `runs r`. Usage is summed from the calls
    /// themselves, so it can never drift from them, in one pass over the run's calls.
    pub(super) fn run_columns(&self) -> String {
        format!(
            "r.id, r.root_id, r.parent_id, r.depth, r.status, r.prompt, r.spec, \
             r.answer, r.finish_reason, r.error_code, r.error_message, r.attempts, \
             r.cancel_requested, r.created_at, r.started_at, r.finished_at, r.session_id, r.turn, \
             r.owner_key, r.context_id, (SELECT COUNT(*) FROM iterations i WHERE i.run_id = r.id) AS iteration_count, \
             {} AS usage",
            self.sql.run_usage
        )
    }
}

impl Store {
    /// Stores a child run as already `running`: it runs inside its root's job, never
    /// through the queue.
    pub async fn insert_child_run(&self, run: &NewRun) -> StoreResult<(RunRecord, StoredEvent)> {
        let mut tx = self.write_tx().await?;
        let inserted = insert(&mut tx, run, RunStatus::Running).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn get_run(&self, id: RunId) -> StoreResult<Option<RunRecord>> {
        let sql = format!("SELECT {} FROM runs r WHERE r.id = $1", self.run_columns());
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Root runs, newest first. A listing shows a preview of each prompt, so `prompt` holds
    /// only its start (one character more than a preview, to tell that it goes on): a
    /// prompt can be megabytes.
    pub async fn list_runs(&self, filter: &ListFilter) -> StoreResult<Vec<RunRecord>> {
        let columns = self.run_columns().replace(
            "r.prompt,",
            &format!("SUBSTR(r.prompt, 1, {}) AS prompt,", PREVIEW_CHARS + 1),
        );
        let page = Page::new(Some("r.parent_id IS NULL"))
            .text_equals("r.status", filter.status.map(RunStatus::as_str))
            .text_below("r.id", filter.before.map(|id| id.to_string()))
            .int_equals("r.owner_key", filter.owner.map(|k| k.0));
        let sql = page.sql(&format!("SELECT {columns} FROM runs r"), "r.id");
        let rows = page
            .bind(&sql, filter.limit, filter.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    pub async fn request_cancel(&self, id: RunId) -> StoreResult<CancelOutcome> {
        let mut tx = self.write_tx().await?;
        let now = now_ms();
        let cancelled_queued = sqlx::query(
            "UPDATE runs SET status = 'cancelled', finished_at = $1, cancel_requested = 1, \
             error_code = 'cancelled', error_message = 'cancelled before it started' \
             WHERE id = $2 AND status = 'queued' RETURNING root_id",
        )
        .bind(now)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = cancelled_queued {
            let root_id = parse_id(row.try_get("root_id")?)?;
            let data = json!({"status": "cancelled"});
            let event = events::insert(&mut tx, root_id, id, "run.cancelled", &data).await?;
            tx.commit().await?;
            return Ok(CancelOutcome::CancelledQueued(event));
        }
        let requested = sqlx::query(
            "UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if requested == 1 {
            return Ok(CancelOutcome::Requested);
        }
        Ok(match self.get_run(id).await? {
            None => CancelOutcome::NotFound,
            Some(run) => CancelOutcome::AlreadyFinished(run.status),
        })
    }
}

/// Inserts one run, its context and its first event inside the caller's transaction.
pub(super) async fn insert(
    conn: &mut AnyConnection,
    run: &NewRun,
    status: RunStatus,
) -> StoreResult<(RunRecord, StoredEvent)> {
    let created_at = now_ms();
    let running = status == RunStatus::Running;
    let turn = match run.session_id {
        None => None,
        Some(session) => Some(next_turn(&mut *conn, session, created_at).await?),
    };
    if let RunContext::Inline { reference, json } = &run.context {
        contexts::put_inline(&mut *conn, &reference.id, json).await?;
    }
    let context = run.context.reference();
    sqlx::query(
        "INSERT INTO runs (id, root_id, parent_id, depth, status, prompt, spec, created_at, \
             started_at, attempts, session_id, turn, owner_key, webhook_state, context_id, \
             context_format, context_description) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(run.id.to_string())
    .bind(run.root_id.to_string())
    .bind(run.parent_id.map(|p| p.to_string()))
    .bind(run.depth as i64)
    .bind(status.as_str())
    .bind(&run.prompt)
    .bind(json_text(&run.spec))
    .bind(created_at)
    .bind(running.then_some(created_at))
    .bind(running as i64)
    .bind(run.session_id.map(|s| s.to_string()))
    .bind(turn.map(i64::from))
    .bind(run.owner.map(|k| k.0))
    .bind(run.spec.webhook.as_ref().map(|_| "pending"))
    .bind(context.map(|c| c.id.to_string()))
    .bind(context.map(|c| c.format.as_str()))
    .bind(context.map(|c| c.description.as_str()))
    .execute(&mut *conn)
    .await?;
    let data = json!({"status": status.as_str(), "depth": run.depth, "parent_id": run.parent_id});
    let kind = if running { "run.started" } else { "run.queued" };
    let event = events::insert(&mut *conn, run.root_id, run.id, kind, &data).await?;
    let record = RunRecord {
        id: run.id,
        root_id: run.root_id,
        parent_id: run.parent_id,
        depth: run.depth,
        status,
        prompt: run.prompt.clone(),
        spec: run.spec.clone(),
        answer: None,
        finish_reason: None,
        error: None,
        attempts: running as u32,
        cancel_requested: false,
        created_at,
        started_at: running.then_some(created_at),
        finished_at: None,
        usage: Usage::default(),
        iterations: 0,
        session_id: run.session_id,
        turn,
        owner: run.owner,
        context_id: context.map(|c| c.id.to_string()),
    };
    Ok((record, event))
}

pub(super) fn parse_id(text: String) -> StoreResult<RunId> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad run id {text:?}")))
}

pub(super) fn run_from_row(row: &AnyRow) -> StoreResult<RunRecord> {
    let status: String = row.try_get("status")?;
    let spec: String = row.try_get("spec")?;
    let error_code: Option<String> = row.try_get("error_code")?;
    let error_message: Option<String> = row.try_get("error_message")?;
    let parent: Option<String> = row.try_get("parent_id")?;
    Ok(RunRecord {
        id: parse_id(row.try_get("id")?)?,
        root_id: parse_id(row.try_get("root_id")?)?,
        parent_id: parent.map(parse_id).transpose()?,
        depth: row.try_get::<i64, _>("depth")? as u32,
        status: status.parse().map_err(StoreError::Corrupt)?,
        prompt: row.try_get("prompt")?,
        spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        answer: row.try_get("answer")?,
        finish_reason: row.try_get("finish_reason")?,
        error: error_code.map(|code| RunError {
            code,
            message: error_message.unwrap_or_default(),
        }),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        iterations: row.try_get("iteration_count")?,
        session_id: row
            .try_get::<Option<String>, _>("session_id")?
            .map(parse_id)
            .transpose()?,
        turn: row.try_get::<Option<i64>, _>("turn")?.map(|t| t as u32),
        owner: row.try_get::<Option<i64>, _>("owner_key")?.map(KeyId),
        context_id: row.try_get("context_id")?,
        usage: usage_from_json(&row.try_get::<String, _>("usage")?)?,
    })
}

/// The usage a run's one aggregate over its calls returns: `[input, output, cached,
/// reasoning, calls, cost, cache writes, cache savings, cache hits]`.
fn usage_from_json(text: &str) -> StoreResult<Usage> {
    let [input, output, cached, reasoning, calls, cost, written, saved, hits]: [f64; 9] =
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Usage {
        input_tokens: input as i64,
        output_tokens: output as i64,
        cached_tokens: cached as i64,
        reasoning_tokens: reasoning as i64,
        llm_calls: calls as i64,
        cost_usd: cost,
        cache_write_tokens: written as i64,
        cache_saved_usd: saved,
        cache_hits: hits as i64,
    })
}

/// Takes the next turn number of an open session (and marks it used).
async fn next_turn(conn: &mut AnyConnection, session: RunId, now: i64) -> StoreResult<u32> {
    let turn: Option<i64> = sqlx::query_scalar(
        "UPDATE sessions SET turns = turns + 1, last_used_at = $1 \
         WHERE id = $2 AND status = 'open' RETURNING turns - 1",
    )
    .bind(now)
    .bind(session.to_string())
    .fetch_optional(conn)
    .await?;
    turn.map(|t| t as u32).ok_or(StoreError::SessionNotOpen)
}
