//! Writes what a run does to the store and publishes its events, tagged with the run.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{write_through, Engine, Tree};
use crate::domain::RunId;
use crate::events::EventBus;
use crate::providers::{Completion, PriceTable, ProviderError};
use crate::store::{LlmCallRecord, RunRecord, Store, StoreResult, Write};
use tokio_util::task::TaskTracker;

/// Records are buffered and written in one transaction by `flush`, which the engine runs
/// alongside each wait on the outside world (a model call, a code block): the database
/// work overlaps that wait instead of adding to every turn, and events still go out while
/// the run waits. A flush, once started, always completes: it runs as a tracked task, so
/// a run stopped mid-flush (a limit, a cancel) neither loses the batch nor leaves a
/// transaction half-done.
pub struct Recorder {
    store: Store,
    bus: EventBus,
    prices: Arc<PriceTable>,
    writes: TaskTracker,
    pub run_id: RunId,
    pub root_id: RunId,
    pub attempt: u32,
    pending: Arc<Mutex<Vec<Write>>>,
    /// Flushes run one at a time, so events are numbered in the order they were recorded.
    flushing: Arc<tokio::sync::Mutex<()>>,
    /// Records nothing: the run is an ended turn replayed to rebuild a session's REPL.
    muted: bool,
}

impl Recorder {
    /// The recorder of `run` (on try `attempt`), writing through the engine's store.
    pub fn new(engine: &Engine, run: &RunRecord, attempt: u32, tree: &Tree) -> Self {
        Self {
            store: engine.store.clone(),
            bus: engine.bus.clone(),
            prices: engine.prices.clone(),
            writes: tree.writes.clone(),
            run_id: run.id,
            root_id: run.root_id,
            attempt,
            pending: Arc::default(),
            flushing: Arc::new(tokio::sync::Mutex::new(())),
            muted: false,
        }
    }

    /// A recorder that keeps nothing.
    pub fn muted(mut self) -> Self {
        self.muted = true;
        self
    }

    /// Queues an event (the store tags it with the run's depth).
    pub fn emit(&self, kind: &str, data: Value) {
        self.save(Vec::new(), kind, data);
    }

    /// Queues records of the run, followed by the event that announces them.
    pub fn save(&self, writes: Vec<Write>, kind: &str, data: Value) {
        if self.muted {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend(writes);
        pending.push(Write::Event {
            kind: kind.to_string(),
            data,
        });
    }

    /// Queues a row with no event of its own.
    pub fn keep(&self, write: Write) {
        if self.muted {
            return;
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(write);
    }

    /// Writes everything queued so far and publishes its events.
    pub async fn flush(&self) -> StoreResult<()> {
        write_through(&self.writes, self.flush_task()).await
    }

    /// Starts a flush without waiting for it (live output, which arrives while the run
    /// waits on its block).
    pub fn flush_soon(&self) {
        let flush = self.flush_task();
        self.writes.spawn(async move {
            if let Err(error) = flush.await {
                tracing::warn!(%error, "could not record live output");
            }
        });
    }

    /// One flush: batches are taken under the lock, so they are written in order.
    fn flush_task(&self) -> impl std::future::Future<Output = StoreResult<()>> + Send + 'static {
        let (store, bus) = (self.store.clone(), self.bus.clone());
        let (pending, flushing) = (self.pending.clone(), self.flushing.clone());
        let (root_id, run_id) = (self.root_id, self.run_id);
        async move {
            let _one_at_a_time = flushing.lock_owned().await;
            let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
            if batch.is_empty() {
                return Ok(());
            }
            for event in store.record(root_id, run_id, batch).await? {
                bus.publish(event);
            }
            Ok(())
        }
    }

    /// Runs `work` while flushing; a failed flush wins over the work's result.
    pub async fn flush_during<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> StoreResult<T> {
        let (flushed, output) = tokio::join!(self.flush(), work);
        flushed.map(|()| output)
    }

    /// The stored form of one model call's result.
    pub fn call_record(
        &self,
        call: &CallInfo<'_>,
        latency_ms: i64,
        result: &Result<Completion, ProviderError>,
    ) -> LlmCallRecord {
        let (reply, usage, reported_cost, error) = match result {
            Ok(c) => (Some(c.text.clone()), c.usage, c.cost_usd, None),
            Err(e) => (None, Default::default(), None, Some(e.to_string())),
        };
        // The provider's own figure wins; a model missing from the table costs 0.
        let cost_usd = reported_cost
            .or_else(|| self.prices.cost(call.model, &usage))
            .unwrap_or(0.0);
        LlmCallRecord {
            attempt: self.attempt,
            iteration: call.iteration,
            kind: call.kind.to_string(),
            provider: call.provider.to_string(),
            model: call.model.to_string(),
            prompt_chars: call.prompt_chars as i64,
            reply,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_tokens: usage.cached_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            cost_usd,
            latency_ms,
            error,
            created_at: crate::store::now_ms(),
            prompt_hash: call.prompt_hash.clone(),
            messages: call.messages.clone(),
            block: call.block,
            cache_hit: false,
            cache_write_tokens: usage.cache_write_tokens,
            cache_saved_usd: self.prices.cache_savings(call.model, &usage),
        }
    }
}

/// What is known about a model call before it is made.
pub struct CallInfo<'a> {
    pub kind: &'a str,
    pub iteration: Option<u32>,
    pub provider: &'a str,
    pub model: &'a str,
    pub prompt_chars: usize,
    /// A sub-call's prompt, hashed (see `replay::prompt_hash`).
    pub prompt_hash: Option<String>,
    /// What is stored of the messages sent (see `calls::messages_sent`).
    pub messages: Option<String>,
    /// The code block a sub-call comes from.
    pub block: Option<u32>,
}
