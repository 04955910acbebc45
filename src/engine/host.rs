//! Model calls and child runs asked for by code in the REPL (`llm_query`, `rlm_query` and
//! their batched forms), served by the server under the tree's limits.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::calls::{charged_call, messages_sent};
use super::recorder::CallInfo;
use super::replay::prompt_hash;
use super::{CodeSite, Engine, Parent};
use crate::providers::{prompt_chars, Message, ProviderHandle};
use crate::repl::{Host, HostCall};
use crate::store::StoreError;

/// What replayed code gets for a call its turn did not make the first time.
pub const NOT_REPLAYED: &str =
    "Error: this call was not made when the turn first ran, so it is not made while replaying it";

pub struct SubcallHost<'a> {
    pub engine: &'a Engine,
    pub parent: &'a Parent<'a>,
    /// The client of the run's sub-provider.
    pub provider: Arc<ProviderHandle>,
    pub iteration: u32,
    /// The block running (1-based), for its live output.
    pub block: usize,
    /// Where the code's latest draft answer is kept.
    pub draft: &'a Mutex<Option<String>>,
    /// The block is a resumed run's recorded block, run again: its events went out the
    /// first time.
    pub replaying: bool,
}

impl Host for SubcallHost<'_> {
    async fn call(&self, call: HostCall) -> Result<Value, String> {
        let spec = &self.parent.run.spec;
        // A child would sit at depth + 1; at the cap, rlm_query is a plain llm_query.
        let may_recurse = self.parent.run.depth + 1 < spec.max_depth;
        let (prompts, model, single, children) = match call {
            HostCall::LlmQuery { prompt, model } => (vec![prompt], model, true, false),
            HostCall::LlmQueryBatched { prompts, model } => (prompts, model, false, false),
            HostCall::RlmQuery { prompt, model } => (vec![prompt], model, true, may_recurse),
            HostCall::RlmQueryBatched { prompts, model } => (prompts, model, false, may_recurse),
            HostCall::Draft { content } => {
                *self.draft.lock().unwrap_or_else(|p| p.into_inner()) = Some(content);
                return Ok(Value::Null);
            }
        };
        let mut replies = if children {
            self.children(prompts, model).await?
        } else {
            let model = model.unwrap_or_else(|| spec.sub_model().to_string());
            self.batch(prompts, &model).await?
        };
        Ok(if single {
            Value::String(replies.pop().unwrap_or_default())
        } else {
            Value::Array(replies.into_iter().map(Value::String).collect())
        })
    }

    fn output(&self, stream: &str, text: &str) {
        if self.replaying {
            return;
        }
        self.parent.recorder.emit(
            "code.output",
            json!({"iteration": self.iteration, "block": self.block, "stream": stream, "text": text}),
        );
        self.parent.recorder.flush_soon();
    }
}

impl SubcallHost<'_> {
    fn max_concurrent(&self) -> usize {
        self.parent.run.spec.limits.max_concurrent_subcalls.max(1)
    }

    /// Runs the prompts concurrently (up to the run's bound), keeping their order. A failed
    /// prompt becomes an `Error: ...` string in its slot; the others are unaffected.
    async fn batch(&self, prompts: Vec<String>, model: &str) -> Result<Vec<String>, String> {
        let recorder = self.parent.recorder;
        let started = Instant::now();
        let count = prompts.len();
        if !self.replaying {
            recorder.emit(
                "subcalls.started",
                json!({"iteration": self.iteration, "count": count, "model": model}),
            );
        }
        let calls = stream::iter(prompts)
            .map(|prompt| self.one(prompt, model))
            .buffered(self.max_concurrent())
            .collect::<Vec<String>>();
        let replies = recorder.flush_during(calls).await.map_err(internal)?;
        let failed = replies.iter().filter(|r| r.starts_with("Error: ")).count();
        let data = json!({
            "iteration": self.iteration,
            "count": count,
            "failed": failed,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        });
        if !self.replaying {
            recorder.emit("subcalls.finished", data);
        }
        Ok(replies)
    }

    /// One sub-call: its reply, or an `Error: ...` string. Its record is already queued.
    /// A resumed run gets the reply of the same call made before, if there is one.
    async fn one(&self, prompt: String, model: &str) -> String {
        let hash = prompt_hash(&prompt);
        if let Some(record) = self.parent.tape.sub_call(self.iteration, &hash, model) {
            return match (record.reply, record.error) {
                (Some(reply), _) => reply,
                (None, error) => format!("Error: {}", error.unwrap_or_default()),
            };
        }
        if self.parent.tape.is_sealed() {
            self.parent.tape.diverged();
            return NOT_REPLAYED.to_string();
        }
        let messages = [Message::user(prompt)];
        let info = CallInfo {
            kind: "sub",
            iteration: Some(self.iteration),
            provider: self.parent.run.spec.sub_provider(),
            model,
            prompt_chars: prompt_chars(&messages),
            prompt_hash: Some(hash),
            messages: Some(messages_sent(&[], &messages)),
            block: Some(self.block as u32),
        };
        let call = charged_call(
            self.parent.tree,
            self.parent.recorder,
            &self.provider,
            &info,
            &messages,
            self.parent.run.spec.sub_sampling(),
        );
        match call.await {
            Ok((Ok(completion), _)) => completion.text,
            Ok((Err(error), _)) => format!("Error: {error}"),
            Err(limit) => format!("Error: {} ({})", limit.message, limit.code),
        }
    }

    /// Child runs, concurrently up to the run's bound, answers in the order of the prompts.
    async fn children(
        &self,
        prompts: Vec<String>,
        model: Option<String>,
    ) -> Result<Vec<String>, String> {
        let runs = stream::iter(prompts)
            .map(|prompt| {
                let from = CodeSite {
                    iteration: self.iteration,
                    block: self.block,
                };
                self.engine
                    .run_child(self.parent, prompt, model.clone(), from)
            })
            .buffered(self.max_concurrent())
            .collect::<Vec<Result<String, StoreError>>>();
        let results = self
            .parent
            .recorder
            .flush_during(runs)
            .await
            .map_err(internal)?;
        results.into_iter().map(|r| r.map_err(internal)).collect()
    }
}

fn internal(error: StoreError) -> String {
    tracing::error!(%error, "could not record sub-calls");
    "rlmd could not record this call (internal error)".to_string()
}
