//! `GET /v1/runs/{id}/trajectory?format=rlms`: a run as the `rlms` library's logger writes
//! it, JSON Lines its visualizer opens: a `metadata` line, then one `iteration` line per
//! turn with the exact messages sent to the root model, its reply, and each code block's
//! output with the sub-calls (`rlm_calls`) made from it; a child run's calls carry the
//! child's own trajectory under `metadata`. `locals` stays empty: rlmd does not copy the
//! REPL's namespace (the context among it) into the record.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::views::local_timestamp;
use crate::domain::RunId;
use crate::store::{LlmCallRecord, RunRecord, Store, StoredEvent, Trajectory};

/// The JSON Lines of `root` and its tree.
pub async fn rlms_jsonl(store: &Store, root: &RunRecord) -> Result<String, ApiError> {
    let mut runs: HashMap<RunId, RunRecord> = HashMap::new();
    for run in store.descendants(root.id).await? {
        runs.insert(run.id, run);
    }
    let tree = Tree { store, runs };
    let (metadata, iterations) = tree.run_lines(root).await?;
    let mut lines = Vec::with_capacity(iterations.len() + 1);
    lines.push(metadata.to_string());
    lines.extend(iterations.iter().map(Value::to_string));
    Ok(lines.join("\n") + "\n")
}

struct Tree<'a> {
    store: &'a Store,
    runs: HashMap<RunId, RunRecord>,
}

impl Tree<'_> {
    /// A run's metadata line and iteration lines; its children's inside them.
    fn run_lines<'s>(
        &'s self,
        run: &'s RunRecord,
    ) -> futures_util::future::BoxFuture<'s, Result<(Value, Vec<Value>), ApiError>> {
        Box::pin(async move {
            let trajectory = self.store.load_trajectory(run.id).await?;
            let events = self.store.run_events(run.id, "child.started").await?;
            let prompts = root_prompts(&trajectory.llm_calls);
            let mut lines = Vec::with_capacity(trajectory.iterations.len());
            let last = trajectory.iterations.last().map(|it| it.index);
            for it in &trajectory.iterations {
                let mut blocks = Vec::new();
                for block in trajectory
                    .code_blocks
                    .iter()
                    .filter(|b| b.iteration == it.index)
                {
                    let mut calls: Vec<Value> = sub_calls(&trajectory, it.index, block.index);
                    for child in children_of(&events, it.index, block.index) {
                        if let Some(child) = self.runs.get(&child) {
                            calls.push(self.child_call(child).await?);
                        }
                    }
                    blocks.push(json!({
                        "code": block.code,
                        "result": {
                            "stdout": block.stdout,
                            "stderr": stderr_of(block.stderr.as_str(), block.error.as_deref()),
                            "locals": {},
                            "execution_time": block.duration_ms as f64 / 1000.0,
                            "rlm_calls": calls,
                        },
                    }));
                }
                let answered =
                    Some(it.index) == last && run.finish_reason.as_deref() == Some("answer");
                lines.push(json!({
                    "type": "iteration",
                    "iteration": it.index,
                    "timestamp": local_timestamp(it.started_at),
                    "prompt": prompts.get(&it.index).cloned().unwrap_or_default(),
                    "response": it.reply,
                    "code_blocks": blocks,
                    "final_answer": if answered { run.answer.clone() } else { None },
                    "iteration_time": (it.finished_at - it.started_at) as f64 / 1000.0,
                }));
            }
            Ok((metadata(run), lines))
        })
    }

    /// A child run as one of its parent's `rlm_calls`, with its trajectory.
    async fn child_call(&self, child: &RunRecord) -> Result<Value, ApiError> {
        let (metadata, iterations) = self.run_lines(child).await?;
        let usage: Map<String, Value> = self
            .store
            .usage_by_model(child.id, true)
            .await?
            .into_iter()
            .map(|(model, u)| {
                let entry = usage_entry(u.llm_calls, u.input_tokens, u.output_tokens, u.cost_usd);
                (model, entry)
            })
            .collect();
        let response = match (&child.answer, &child.error) {
            (Some(answer), _) => answer.clone(),
            (None, Some(error)) => format!("Error: {}: {}", error.code, error.message),
            (None, None) => String::new(),
        };
        let seconds = match (child.started_at, child.finished_at) {
            (Some(start), Some(end)) => (end - start) as f64 / 1000.0,
            _ => 0.0,
        };
        let mut run_metadata = metadata;
        if let Some(map) = run_metadata.as_object_mut() {
            map.remove("type");
            map.remove("timestamp");
        }
        Ok(json!({
            "root_model": child.spec.model,
            "prompt": child.prompt,
            "response": response,
            "usage_summary": {"model_usage_summaries": usage},
            "execution_time": seconds,
            "metadata": {"run_metadata": run_metadata, "iterations": iterations},
        }))
    }
}

/// The `metadata` line of a run: its model and settings, never a key or its context.
fn metadata(run: &RunRecord) -> Value {
    let spec = &run.spec;
    let mut backend_kwargs = json!({"model_name": spec.model});
    if let Value::Object(sampling) = json!(spec.sampling) {
        backend_kwargs
            .as_object_mut()
            .expect("an object")
            .extend(sampling);
    }
    let other = (spec.sub_provider() != spec.provider || spec.sub_model() != spec.model)
        .then(|| json!([spec.sub_provider()]));
    json!({
        "type": "metadata",
        "timestamp": local_timestamp(run.created_at),
        "root_model": spec.model,
        "max_depth": spec.max_depth,
        "max_iterations": spec.max_iterations,
        "backend": spec.provider,
        "backend_kwargs": backend_kwargs,
        "environment_type": "rlmd",
        "environment_kwargs": {
            "run_id": run.id,
            "depth": run.depth,
            "sub_model": spec.sub_model(),
            "limits": spec.limits,
        },
        "other_backends": other,
    })
}

/// The messages of each iteration's root call.
fn root_prompts(calls: &[LlmCallRecord]) -> HashMap<u32, Vec<Value>> {
    let mut by_iteration = HashMap::new();
    for (index, messages) in sent_messages(calls, None) {
        if let Some(iteration) = calls[index]
            .iteration
            .filter(|_| calls[index].kind == "root")
        {
            by_iteration.insert(iteration, messages);
        }
    }
    by_iteration
}

/// The messages each call sent (or only call `only`), by index in `calls`, rebuilt from what
/// each stored: how many of the run's previous root-model call's messages it kept, and
/// those it added. Calls that stored nothing (older runs, compaction) are left out.
pub(super) fn sent_messages(
    calls: &[LlmCallRecord],
    only: Option<usize>,
) -> Vec<(usize, Vec<Value>)> {
    let mut conversation: Vec<Value> = Vec::new();
    let mut sent = Vec::new();
    let wanted = |index: usize| only.is_none_or(|only| only == index);
    let last = only.unwrap_or(usize::MAX);
    for (index, call) in calls
        .iter()
        .enumerate()
        .take_while(|(index, _)| *index <= last)
    {
        let Some(delta) = call
            .messages
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
        else {
            continue;
        };
        let keep = delta["keep"].as_u64().unwrap_or(0) as usize;
        let added = delta["append"].as_array().cloned().unwrap_or_default();
        if matches!(call.kind.as_str(), "root" | "final") {
            // The conversation goes on from the root-model call before.
            conversation.truncate(keep);
            conversation.extend(added);
            if wanted(index) {
                sent.push((index, conversation.clone()));
            }
        } else if wanted(index) {
            sent.push((index, added));
        }
    }
    sent
}

/// The sub-calls code block `block` of iteration `iteration` made.
fn sub_calls(trajectory: &Trajectory, iteration: u32, block: u32) -> Vec<Value> {
    trajectory
        .llm_calls
        .iter()
        .filter(|c| c.kind == "sub" && c.iteration == Some(iteration) && c.block == Some(block))
        .map(|c| {
            let prompt = c
                .messages
                .as_deref()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
                .and_then(|m| m["append"].as_array()?.last()?.get("content").cloned())
                .unwrap_or(Value::Null);
            let mut call = json!({
                "root_model": c.model,
                "prompt": prompt,
                "response": c.reply.clone().unwrap_or_default(),
                "usage_summary": {"model_usage_summaries": {
                    c.model.clone(): usage_entry(1, c.input_tokens, c.output_tokens, c.cost_usd)}},
                "execution_time": c.latency_ms as f64 / 1000.0,
            });
            if let Some(error) = &c.error {
                call["error"] = json!(error);
            }
            call
        })
        .collect()
}

fn usage_entry(calls: i64, input: i64, output: i64, cost: f64) -> Value {
    json!({"total_calls": calls, "total_input_tokens": input, "total_output_tokens": output,
           "total_cost": cost})
}

/// The children a block started, from the parent's `child.started` events.
fn children_of(events: &[StoredEvent], iteration: u32, block: u32) -> Vec<RunId> {
    events
        .iter()
        .filter(|e| {
            e.data["iteration"].as_u64() == Some(iteration.into())
                && e.data["block"].as_u64() == Some(block.into())
        })
        .filter_map(|e| e.data["child_id"].as_str()?.parse().ok())
        .collect()
}

/// rlms puts an exception's traceback in stderr; rlmd keeps the error apart.
fn stderr_of(stderr: &str, error: Option<&str>) -> String {
    match error {
        Some(error) if stderr.is_empty() => error.to_string(),
        Some(error) => format!("{stderr}\n{error}"),
        None => stderr.to_string(),
    }
}
