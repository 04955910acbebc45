//! Model calls made from code in the REPL (`llm_query` and friends), served by the server.

use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::recorder::{CallInfo, Recorder};
use crate::providers::{prompt_chars, ChatModel, ChatRequest, Message};
use crate::repl::{Host, HostCall};
use crate::store::Write;

pub struct SubcallHost<'a> {
    pub recorder: &'a Recorder,
    pub provider_name: &'a str,
    pub provider: Arc<dyn ChatModel>,
    pub default_model: &'a str,
    pub max_concurrent: usize,
    pub iteration: u32,
}

impl Host for SubcallHost<'_> {
    async fn call(&self, call: HostCall) -> Result<Value, String> {
        // Recursion is not available yet: rlm_query behaves as llm_query, as at the depth cap.
        let (prompts, model, single) = match call {
            HostCall::LlmQuery { prompt, model } | HostCall::RlmQuery { prompt, model } => {
                (vec![prompt], model, true)
            }
            HostCall::LlmQueryBatched { prompts, model }
            | HostCall::RlmQueryBatched { prompts, model } => (prompts, model, false),
        };
        let model = model.unwrap_or_else(|| self.default_model.to_string());
        let mut replies = self.batch(prompts, &model).await?;
        Ok(if single {
            Value::String(replies.pop().unwrap_or_default())
        } else {
            Value::Array(replies.into_iter().map(Value::String).collect())
        })
    }
}

impl SubcallHost<'_> {
    /// Runs the prompts concurrently (up to the run's bound), keeping their order. A failed
    /// prompt becomes an `Error: ...` string in its slot; the others are unaffected.
    async fn batch(&self, prompts: Vec<String>, model: &str) -> Result<Vec<String>, String> {
        let started = Instant::now();
        let count = prompts.len();
        self.recorder.emit(
            "subcalls.started",
            json!({"iteration": self.iteration, "count": count, "model": model}),
        );
        let calls = stream::iter(prompts)
            .map(|prompt| self.one(prompt, model))
            .buffered(self.max_concurrent.max(1))
            .collect::<Vec<(String, _)>>();
        let results = self.recorder.flush_during(calls).await.map_err(internal)?;
        let (replies, records): (Vec<String>, Vec<_>) = results.into_iter().unzip();
        let failed = records.iter().filter(|r| r.error.is_some()).count();
        let data = json!({
            "iteration": self.iteration,
            "count": count,
            "failed": failed,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        });
        let writes = records.into_iter().map(Write::LlmCall).collect();
        self.recorder.save(writes, "subcalls.finished", data);
        Ok(replies)
    }

    async fn one(&self, prompt: String, model: &str) -> (String, crate::store::LlmCallRecord) {
        let messages = [Message::user(prompt)];
        let started = Instant::now();
        let result = self
            .provider
            .complete(ChatRequest {
                model,
                messages: &messages,
            })
            .await;
        let info = CallInfo {
            kind: "sub",
            iteration: Some(self.iteration),
            provider: self.provider_name,
            model,
            prompt_chars: prompt_chars(&messages),
        };
        let record =
            self.recorder
                .call_record(&info, started.elapsed().as_millis() as i64, &result);
        let reply = match result {
            Ok(completion) => completion.text,
            Err(error) => format!("Error: {error}"),
        };
        (reply, record)
    }
}

fn internal(error: crate::store::StoreError) -> String {
    tracing::error!(%error, "could not record sub-calls");
    "rlmd could not record this call (internal error)".to_string()
}
