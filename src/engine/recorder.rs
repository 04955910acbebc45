//! Writes what a run does to the store and publishes its events, tagged with the run.

use serde_json::{json, Value};

use crate::domain::RunId;
use crate::events::EventBus;
use crate::providers::{Completion, ProviderError};
use crate::store::{LlmCallRecord, Store, StoreResult, Write};

#[derive(Clone)]
pub struct Recorder {
    store: Store,
    bus: EventBus,
    pub run_id: RunId,
    pub root_id: RunId,
    pub depth: u32,
    pub attempt: u32,
}

impl Recorder {
    pub fn new(
        store: Store,
        bus: EventBus,
        run_id: RunId,
        root_id: RunId,
        depth: u32,
        attempt: u32,
    ) -> Self {
        Self {
            store,
            bus,
            run_id,
            root_id,
            depth,
            attempt,
        }
    }

    /// Stores an event (tagged with the run's depth) and publishes it.
    pub async fn emit(&self, kind: &str, data: Value) -> StoreResult<()> {
        self.save(&[], kind, data).await
    }

    /// Stores records of the run together with the event that announces them.
    pub async fn save(&self, writes: &[Write<'_>], kind: &str, mut data: Value) -> StoreResult<()> {
        if let Value::Object(map) = &mut data {
            map.insert("depth".into(), json!(self.depth));
        }
        let event = self
            .store
            .record(self.root_id, self.run_id, writes, Some((kind, &data)))
            .await?;
        if let Some(event) = event {
            self.bus.publish(event);
        }
        Ok(())
    }

    /// The stored form of one model call's result.
    pub fn call_record(
        &self,
        call: &CallInfo<'_>,
        latency_ms: i64,
        result: &Result<Completion, ProviderError>,
    ) -> LlmCallRecord {
        let (reply, usage, error) = match result {
            Ok(c) => (Some(c.text.clone()), c.usage, None),
            Err(e) => (None, Default::default(), Some(e.to_string())),
        };
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
            latency_ms,
            error,
            created_at: crate::store::now_ms(),
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
}
