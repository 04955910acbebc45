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
use crate::answers::{self, AnswerSchema, Candidate};
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
        let (prompts, model, single, children, schema) = match call {
            HostCall::LlmQuery { prompt, model } => (vec![prompt], model, true, false, None),
            HostCall::LlmQueryBatched { prompts, model } => (prompts, model, false, false, None),
            HostCall::RlmQuery {
                prompt,
                model,
                schema,
            } => (vec![prompt], model, true, may_recurse, schema),
            HostCall::RlmQueryBatched {
                prompts,
                model,
                schema,
            } => (prompts, model, false, may_recurse, schema),
            HostCall::Draft { content } => {
                *self.draft.lock().unwrap_or_else(|p| p.into_inner()) = Some(content);
                return Ok(Value::Null);
            }
        };
        // The code's mistake, raised in the code before anything is paid for.
        let typed = match &schema {
            Some(schema) => Some(
                AnswerSchema::compile(schema)
                    .map_err(|why| format!("schema is not a usable JSON Schema: {why}"))?,
            ),
            None => None,
        };
        let mut replies = if children {
            self.children(prompts, model, schema).await?
        } else {
            let model = model.unwrap_or_else(|| spec.sub_model().to_string());
            let typed = schema.as_ref().zip(typed.as_ref());
            self.batch(prompts, &model, typed).await?
        };
        Ok(if single {
            replies.pop().unwrap_or_default()
        } else {
            Value::Array(replies)
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
    /// prompt becomes an `Error: ...` string in its slot; the others are unaffected. With a
    /// schema (an `rlm_query` at the depth cap), each reply is the value it stands for, or
    /// an `Error: ...` string if it does not fit.
    async fn batch(
        &self,
        prompts: Vec<String>,
        model: &str,
        typed: Option<(&Value, &AnswerSchema)>,
    ) -> Result<Vec<Value>, String> {
        let recorder = self.parent.recorder;
        let started = Instant::now();
        let count = prompts.len();
        if !self.replaying {
            recorder.emit(
                "subcalls.started",
                json!({"iteration": self.iteration, "count": count, "model": model}),
            );
        }
        let prompts: Vec<String> = match typed {
            Some((schema, _)) => prompts
                .iter()
                .map(|prompt| answers::plain_call_prompt(prompt, schema))
                .collect(),
            None => prompts,
        };
        // With the cache on, a prompt asked twice in one batch is asked once; its repeats
        // are cache hits.
        let scope = self.cache_scope();
        let (asked, slots) = match scope {
            Some(_) => unique_prompts(prompts),
            None => {
                let slots = (0..prompts.len()).collect();
                (prompts, slots)
            }
        };
        let mut uses = vec![0usize; asked.len()];
        slots.iter().for_each(|&slot| uses[slot] += 1);
        // The prompts asked more than once, for their repeats' records.
        let repeated: Vec<Option<String>> = asked
            .iter()
            .zip(&uses)
            .map(|(prompt, &n)| (n > 1).then(|| prompt.clone()))
            .collect();
        let calls = stream::iter(asked)
            .map(|prompt| self.one(prompt, model, scope.as_deref()))
            .buffered(self.max_concurrent())
            .collect::<Vec<(String, bool)>>();
        let mut answered = recorder.flush_during(calls).await.map_err(internal)?;
        let mut cache_hits = answered.iter().filter(|(_, hit)| *hit).count();
        let mut seen = vec![false; answered.len()];
        let mut replies = Vec::with_capacity(slots.len());
        for slot in slots {
            uses[slot] -= 1;
            let reply = match uses[slot] {
                0 => std::mem::take(&mut answered[slot].0),
                _ => answered[slot].0.clone(),
            };
            // A replayed block's repeats were recorded the first time.
            let repeat = std::mem::replace(&mut seen[slot], true);
            if let (true, Some(prompt)) = (repeat, &repeated[slot]) {
                if !reply.starts_with("Error: ") && !self.replaying {
                    let messages = [Message::user(prompt.clone())];
                    let info = self.sub_call_info(&messages, prompt_hash(prompt), model);
                    self.record_hit(&info, reply.clone(), Instant::now());
                    crate::metrics::get().cache_lookup(true);
                    cache_hits += 1;
                }
            }
            replies.push(reply);
        }
        let replies: Vec<Value> = replies
            .into_iter()
            .map(|reply| match typed {
                Some((_, schema)) if !reply.starts_with("Error: ") => {
                    match schema.check(&Candidate::text(&reply)) {
                        Ok(value) => value,
                        Err(rejection) => Value::String(format!(
                            "Error: the reply does not fit the schema: {}",
                            rejection.summary()
                        )),
                    }
                }
                _ => Value::String(reply),
            })
            .collect();
        let failed = replies
            .iter()
            .filter(|r| r.as_str().is_some_and(|r| r.starts_with("Error: ")))
            .count();
        let data = json!({
            "iteration": self.iteration,
            "count": count,
            "failed": failed,
            "cache_hits": cache_hits,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        });
        if !self.replaying {
            recorder.emit("subcalls.finished", data);
        }
        Ok(replies)
    }

    /// What is known of a sub-call sending `messages` (one prompt, whose hash is
    /// `prompt_hash`) before it is made.
    fn sub_call_info<'m>(
        &'m self,
        messages: &[Message],
        prompt_hash: String,
        model: &'m str,
    ) -> CallInfo<'m> {
        CallInfo {
            kind: "sub",
            iteration: Some(self.iteration),
            provider: self.parent.run.spec.sub_provider(),
            model,
            prompt_chars: prompt_chars(messages),
            prompt_hash: Some(prompt_hash),
            messages: Some(messages_sent(&[], messages)),
            block: Some(self.block as u32),
        }
    }

    /// One sub-call: its reply, or an `Error: ...` string, and whether the cache (in
    /// `scope`, if the run's sub-calls are cached) answered it. Its record is already
    /// queued. A resumed run gets the reply of the same call made before, if there is one.
    async fn one(&self, prompt: String, model: &str, scope: Option<&str>) -> (String, bool) {
        let hash = prompt_hash(&prompt);
        if let Some(record) = self.parent.tape.sub_call(self.iteration, &hash, model) {
            let reply = match (record.reply, record.error) {
                (Some(reply), _) => reply,
                (None, error) => format!("Error: {}", error.unwrap_or_default()),
            };
            return (reply, record.cache_hit);
        }
        if self.parent.tape.is_sealed() {
            self.parent.tape.diverged();
            return (NOT_REPLAYED.to_string(), false);
        }
        let messages = [Message::user(prompt)];
        let info = self.sub_call_info(&messages, hash, model);
        let slot = scope.map(|scope| self.cache_slot(scope, &messages, model));
        if let Some(slot) = &slot {
            if let Some(reply) = self.cached(slot, &info).await {
                return (reply, true);
            }
        }
        let call = charged_call(
            self.parent.tree,
            self.parent.recorder,
            &self.provider,
            &info,
            &messages,
            self.parent.run.spec.sub_sampling(),
        );
        let reply = match call.await {
            Ok((Ok(completion), _)) => {
                if let Some(slot) = slot {
                    self.keep(slot, &completion.text);
                }
                completion.text
            }
            Ok((Err(error), _)) => format!("Error: {error}"),
            Err(limit) => format!("Error: {} ({})", limit.message, limit.code),
        };
        (reply, false)
    }

    /// Child runs, concurrently up to the run's bound, answers in the order of the prompts.
    async fn children(
        &self,
        prompts: Vec<String>,
        model: Option<String>,
        schema: Option<Value>,
    ) -> Result<Vec<Value>, String> {
        let runs = stream::iter(prompts)
            .map(|prompt| {
                let from = CodeSite {
                    iteration: self.iteration,
                    block: self.block,
                };
                self.engine
                    .run_child(self.parent, prompt, model.clone(), schema.clone(), from)
            })
            .buffered(self.max_concurrent())
            .collect::<Vec<Result<Value, StoreError>>>();
        let results = self
            .parent
            .recorder
            .flush_during(runs)
            .await
            .map_err(internal)?;
        results.into_iter().map(|r| r.map_err(internal)).collect()
    }
}

/// The distinct prompts, in the order they first come, and for every prompt the index of
/// its distinct prompt in that list.
fn unique_prompts(prompts: Vec<String>) -> (Vec<String>, Vec<usize>) {
    let mut first: std::collections::HashMap<&str, usize> = Default::default();
    let slots: Vec<usize> = prompts
        .iter()
        .map(|prompt| {
            let next = first.len();
            *first.entry(prompt).or_insert(next)
        })
        .collect();
    drop(first);
    let mut taken = 0;
    let unique = prompts
        .into_iter()
        .zip(&slots)
        .filter(|&(_, &slot)| {
            let new = slot == taken;
            taken += new as usize;
            new
        })
        .map(|(prompt, _)| prompt)
        .collect();
    (unique, slots)
}

fn internal(error: StoreError) -> String {
    tracing::error!(%error, "could not record sub-calls");
    "rlmd could not record this call (internal error)".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_prompts_are_asked_once_in_the_order_they_first_come() {
        let prompts = ["b", "a", "b", "c", "a"].map(String::from).to_vec();
        let (unique, slots) = unique_prompts(prompts);
        assert_eq!(unique, ["b", "a", "c"]);
        assert_eq!(slots, [0, 1, 0, 2, 1]);
    }
}
