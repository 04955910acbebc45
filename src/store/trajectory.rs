//! The record of what a run did: iterations, the code blocks each ran, every model call.

use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::events::{self, StoredEvent};
use super::{Store, StoreResult};
use crate::domain::RunId;

#[derive(Debug, Clone, Serialize)]
pub struct IterationRecord {
    pub index: u32,
    pub reply: String,
    pub model_ms: i64,
    pub exec_ms: i64,
    pub started_at: i64,
    pub finished_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeBlockRecord {
    pub iteration: u32,
    pub index: u32,
    pub code: String,
    pub stdout: String,
    pub stderr: String,
    pub error: Option<String>,
    pub timed_out: bool,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LlmCallRecord {
    pub attempt: u32,
    pub iteration: Option<u32>,
    /// `root` (a turn of the root model), `sub` (from code) or `final` (out of iterations).
    pub kind: String,
    pub provider: String,
    pub model: String,
    pub prompt_chars: i64,
    pub reply: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: f64,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub created_at: i64,
    /// A sub-call's prompt, as its hex SHA-256 (what a resumed run matches calls by).
    pub prompt_hash: Option<String>,
    /// What the call sent: `{"keep": n, "append": [messages]}`, the first `n` messages of
    /// the run's call before (of this attempt) and then these.
    #[serde(skip)]
    pub messages: Option<String>,
    /// The code block a sub-call was made from.
    pub block: Option<u32>,
    /// Answered from the sub-call cache: no model was called, nothing was paid.
    pub cache_hit: bool,
    /// Input tokens written to the provider's prompt cache (in `input_tokens`).
    pub cache_write_tokens: i64,
    /// USD the provider's prompt cache saved (reads) less its writes' premium.
    pub cache_saved_usd: f64,
}

impl CodeBlockRecord {
    /// The block cost the run its REPL (it timed out, or the REPL died under it): the next
    /// block started in a fresh one.
    pub fn lost_the_repl(&self) -> bool {
        self.timed_out
            || self
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("ReplError:"))
    }
}

/// Everything stored about one run's work, in order.
pub struct Trajectory {
    pub iterations: Vec<IterationRecord>,
    pub code_blocks: Vec<CodeBlockRecord>,
    pub llm_calls: Vec<LlmCallRecord>,
}

/// Events inserted by one statement at most (three parameters each).
const EVENTS_PER_STATEMENT: usize = 100;

/// Writes a run's records, then the events that announce them, inside the caller's
/// transaction; returns the events as stored.
pub(super) async fn write_records(
    conn: &mut AnyConnection,
    root_id: RunId,
    run_id: RunId,
    writes: &[Write],
) -> StoreResult<Vec<StoredEvent>> {
    let mut announced = Vec::new();
    for write in writes {
        match write {
            Write::Iteration(it) => insert_iteration(conn, run_id, it).await?,
            Write::CodeBlock(block) => insert_code_block(conn, run_id, block).await?,
            Write::LlmCall(call) => insert_llm_call(conn, run_id, call).await?,
            Write::CacheEntry(entry) => super::cache::insert(conn, entry).await?,
            // In order, after the rows (which no one sees before the commit anyway).
            Write::Event { kind, data } => announced.push((kind.as_str(), data)),
        }
    }
    let mut stored = Vec::with_capacity(announced.len());
    // Bounded statements: a flush after a long wait may hold many events.
    for batch in announced.chunks(EVENTS_PER_STATEMENT) {
        stored.extend(events::insert_many(conn, root_id, run_id, batch).await?);
    }
    Ok(stored)
}

/// One piece of a run's record: a row, or an event announcing progress.
#[derive(Debug, Clone)]
pub enum Write {
    Iteration(IterationRecord),
    CodeBlock(CodeBlockRecord),
    LlmCall(LlmCallRecord),
    /// A sub-call's reply, kept for the cache.
    CacheEntry(super::CacheEntry),
    Event {
        kind: String,
        data: Value,
    },
}

impl Store {
    /// Writes a run's records and events, in order, in one transaction, and returns the
    /// stored events (numbered) so they can be published. On SQLite the transaction may
    /// hold other runs' records too (see `group_commit`); it has committed when this
    /// returns.
    pub async fn record(
        &self,
        root_id: RunId,
        run_id: RunId,
        writes: Vec<Write>,
    ) -> StoreResult<Vec<StoredEvent>> {
        match &self.group_commit {
            Some(group) => group.record(root_id, run_id, writes).await,
            None => self.record_alone(root_id, run_id, &writes).await,
        }
    }

    /// [`Store::record`] in a transaction of its own.
    pub(super) async fn record_alone(
        &self,
        root_id: RunId,
        run_id: RunId,
        writes: &[Write],
    ) -> StoreResult<Vec<StoredEvent>> {
        let mut tx = self.write_tx().await?;
        let stored = write_records(&mut tx, root_id, run_id, writes).await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub async fn load_trajectory(&self, run_id: RunId) -> StoreResult<Trajectory> {
        let id = run_id.to_string();
        let iterations = sqlx::query(
            "SELECT idx, reply, model_ms, exec_ms, started_at, finished_at FROM iterations \
             WHERE run_id = $1 ORDER BY idx",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(iteration_from_row)
        .collect::<Result<_, _>>()?;
        let code_blocks = sqlx::query(
            "SELECT iteration, idx, code, stdout, stderr, error, timed_out, duration_ms \
             FROM code_blocks WHERE run_id = $1 ORDER BY iteration, idx",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(code_block_from_row)
        .collect::<Result<_, _>>()?;
        let llm_calls = self.llm_calls(run_id).await?;
        Ok(Trajectory {
            iterations,
            code_blocks,
            llm_calls,
        })
    }
}

impl Store {
    /// A run's model calls, in the order they were made.
    pub async fn llm_calls(&self, run_id: RunId) -> StoreResult<Vec<LlmCallRecord>> {
        let calls = sqlx::query(
            "SELECT attempt, iteration, kind, provider, model, prompt_chars, reply, input_tokens, \
                 output_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms, error, created_at, \
                 prompt_hash, messages, block, cache_hit, cache_write_tokens, cache_saved_usd \
             FROM llm_calls WHERE run_id = $1 ORDER BY id",
        )
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(llm_call_from_row)
        .collect::<Result<_, _>>()?;
        Ok(calls)
    }
}

fn iteration_from_row(row: &AnyRow) -> Result<IterationRecord, sqlx::Error> {
    Ok(IterationRecord {
        index: row.try_get::<i64, _>("idx")? as u32,
        reply: row.try_get("reply")?,
        model_ms: row.try_get("model_ms")?,
        exec_ms: row.try_get("exec_ms")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn code_block_from_row(row: &AnyRow) -> Result<CodeBlockRecord, sqlx::Error> {
    Ok(CodeBlockRecord {
        iteration: row.try_get::<i64, _>("iteration")? as u32,
        index: row.try_get::<i64, _>("idx")? as u32,
        code: row.try_get("code")?,
        stdout: row.try_get("stdout")?,
        stderr: row.try_get("stderr")?,
        error: row.try_get("error")?,
        timed_out: row.try_get::<i64, _>("timed_out")? != 0,
        duration_ms: row.try_get("duration_ms")?,
    })
}

fn llm_call_from_row(row: &AnyRow) -> Result<LlmCallRecord, sqlx::Error> {
    Ok(LlmCallRecord {
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        iteration: row
            .try_get::<Option<i64>, _>("iteration")?
            .map(|i| i as u32),
        kind: row.try_get("kind")?,
        provider: row.try_get("provider")?,
        model: row.try_get("model")?,
        prompt_chars: row.try_get("prompt_chars")?,
        reply: row.try_get("reply")?,
        input_tokens: row.try_get("input_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        cached_tokens: row.try_get("cached_tokens")?,
        reasoning_tokens: row.try_get("reasoning_tokens")?,
        cost_usd: row.try_get("cost_usd")?,
        latency_ms: row.try_get("latency_ms")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        prompt_hash: row.try_get("prompt_hash")?,
        messages: row.try_get("messages")?,
        block: row.try_get::<Option<i64>, _>("block")?.map(|b| b as u32),
        cache_hit: row.try_get::<i64, _>("cache_hit")? != 0,
        cache_write_tokens: row.try_get("cache_write_tokens")?,
        cache_saved_usd: row.try_get("cache_saved_usd")?,
    })
}

async fn insert_iteration(
    conn: &mut AnyConnection,
    run_id: RunId,
    it: &IterationRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO iterations (run_id, idx, reply, model_ms, exec_ms, started_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(run_id.to_string())
    .bind(it.index as i64)
    .bind(&it.reply)
    .bind(it.model_ms)
    .bind(it.exec_ms)
    .bind(it.started_at)
    .bind(it.finished_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_code_block(
    conn: &mut AnyConnection,
    run_id: RunId,
    block: &CodeBlockRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO code_blocks (run_id, iteration, idx, code, stdout, stderr, error, timed_out, duration_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(run_id.to_string())
    .bind(block.iteration as i64)
    .bind(block.index as i64)
    .bind(&block.code)
    .bind(&block.stdout)
    .bind(&block.stderr)
    .bind(&block.error)
    .bind(block.timed_out as i64)
    .bind(block.duration_ms)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_llm_call(
    conn: &mut AnyConnection,
    run_id: RunId,
    call: &LlmCallRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO llm_calls (run_id, attempt, iteration, kind, provider, model, prompt_chars, \
             reply, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms, \
             error, created_at, prompt_hash, messages, block, cache_hit, cache_write_tokens, \
             cache_saved_usd) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
             $20, $21, $22)",
    )
    .bind(run_id.to_string())
    .bind(call.attempt as i64)
    .bind(call.iteration.map(i64::from))
    .bind(&call.kind)
    .bind(&call.provider)
    .bind(&call.model)
    .bind(call.prompt_chars)
    .bind(&call.reply)
    .bind(call.input_tokens)
    .bind(call.output_tokens)
    .bind(call.cached_tokens)
    .bind(call.reasoning_tokens)
    .bind(call.cost_usd)
    .bind(call.latency_ms)
    .bind(&call.error)
    .bind(call.created_at)
    .bind(&call.prompt_hash)
    .bind(&call.messages)
    .bind(call.block.map(i64::from))
    .bind(call.cache_hit as i64)
    .bind(call.cache_write_tokens)
    .bind(call.cache_saved_usd)
    .execute(conn)
    .await?;
    Ok(())
}
