//! The JSON shapes of runs and trajectories, as the API shows them.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use std::collections::BTreeMap;

use crate::store::{total_usage, LlmCallRecord, RunRecord, StoredEvent, Trajectory, Usage};

/// RFC 3339 with milliseconds, in UTC.
pub fn timestamp(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// ISO 8601 without a zone, in UTC, as Python's `datetime.isoformat()` writes (what the
/// `rlms` logger's timestamps look like).
pub fn local_timestamp(ms: i64) -> String {
    timestamp(ms).trim_end_matches('Z').to_string()
}

/// Spending of a run's whole tree, as a root's detail shows it.
pub struct TreeSpending<'a> {
    pub runs: i64,
    pub by_model: &'a BTreeMap<String, Usage>,
}

/// A run with its spending by model and, for a root, its tree's: what GET /v1/runs/{id}
/// (and every answer that creates a run) shows.
pub fn run_detail(
    run: &RunRecord,
    own: &BTreeMap<String, Usage>,
    tree: Option<TreeSpending<'_>>,
) -> Value {
    let mut view = self::run(run);
    view["usage_by_model"] = json!(own);
    if let Some(tree) = tree {
        view["tree"] = json!({
            "runs": tree.runs,
            "usage": total_usage(tree.by_model.values().cloned()),
            "usage_by_model": tree.by_model,
        });
    }
    view
}

/// A run just stored: nothing spent yet, a tree of one (roots) or none (children).
pub fn new_run(run: &RunRecord) -> Value {
    let none = BTreeMap::new();
    let tree = run.parent_id.is_none().then_some(TreeSpending {
        runs: 1,
        by_model: &none,
    });
    run_detail(run, &none, tree)
}

pub fn run(run: &RunRecord) -> Value {
    let spec = &run.spec;
    json!({
        "id": run.id,
        "status": run.status,
        "prompt": run.prompt,
        "provider": spec.provider,
        "model": spec.model,
        "sub_model": spec.sub_model,
        "max_iterations": spec.max_iterations,
        "max_depth": spec.max_depth,
        "limits": spec.limits,
        "sampling": spec.sampling,
        "sub_sampling": spec.sub_sampling,
        "sub_provider": spec.sub_provider,
        "tools": spec.tools,
        "compaction": spec.compaction,
        "sub_tools": spec.sub_tools,
        "metadata": spec.metadata,
        // Never its secret.
        "webhook": spec.webhook.as_ref().map(|w| json!({"url": w.url, "signed": w.secret.is_some()})),
        "answer_schema": spec.answer_schema,
        "cache": spec.cache,
        "answer": answer(run),
        "answer_text": run.answer,
        "finish_reason": run.finish_reason,
        "error": run.error,
        "usage": run.usage,
        "cost_usd": run.usage.cost_usd,
        "iterations": run.iterations,
        "attempts": run.attempts,
        "cancel_requested": run.cancel_requested,
        "root_id": run.root_id,
        "parent_id": run.parent_id,
        "depth": run.depth,
        "session_id": run.session_id,
        "turn": run.turn,
        "context_id": run.context_id,
        "created_at": timestamp(run.created_at),
        "started_at": run.started_at.map(timestamp),
        "finished_at": run.finished_at.map(timestamp),
    })
}

/// A run's answer as shown: a typed run's (one with an answer schema) as the JSON value it
/// is, once it succeeded; else the text (a failed run's partial answer).
pub fn answer(run: &RunRecord) -> Value {
    match (&run.answer, run.spec.answer_schema.is_some(), run.status) {
        (Some(text), true, crate::domain::RunStatus::Succeeded) => {
            crate::answers::stored_value(text)
        }
        (answer, _, _) => json!(answer),
    }
}

/// A run's trajectory: `run` is its view, `children` the trajectories of its child runs.
pub fn trajectory(run: Value, trajectory: &Trajectory, children: Vec<Value>) -> Value {
    let iterations: Vec<Value> = trajectory
        .iterations
        .iter()
        .map(|it| {
            let blocks: Vec<Value> = trajectory
                .code_blocks
                .iter()
                .filter(|b| b.iteration == it.index)
                .map(|b| {
                    json!({
                        "index": b.index,
                        "code": b.code,
                        "stdout": b.stdout,
                        "stderr": b.stderr,
                        "error": b.error,
                        "timed_out": b.timed_out,
                        "repl_reset": b.lost_the_repl(),
                        "duration_ms": b.duration_ms,
                    })
                })
                .collect();
            json!({
                "index": it.index,
                "reply": it.reply,
                "model_ms": it.model_ms,
                "exec_ms": it.exec_ms,
                "started_at": timestamp(it.started_at),
                "finished_at": timestamp(it.finished_at),
                "code_blocks": blocks,
            })
        })
        .collect();
    let calls: Vec<Value> = trajectory
        .llm_calls
        .iter()
        .enumerate()
        .map(|(index, c)| call(index, c))
        .collect();
    json!({
        "run": run,
        "iterations": iterations,
        "llm_calls": calls,
        "children": children,
    })
}

/// An event as streamed: its place in the tree's sequence, its run and its payload.
pub fn event(event: &StoredEvent) -> Value {
    json!({
        "seq": event.seq,
        "type": event.kind,
        "run_id": event.run_id,
        "created_at": timestamp(event.created_at),
        "data": event.data,
    })
}

/// A model call as a trajectory lists it; `index` is its place in its run's list.
pub fn call(index: usize, c: &LlmCallRecord) -> Value {
    json!({
        // What GET /v1/runs/{id}/calls/{index} shows whole, with its messages.
        "index": index,
        "attempt": c.attempt,
        "iteration": c.iteration,
        "kind": c.kind,
        "provider": c.provider,
        "model": c.model,
        "prompt_chars": c.prompt_chars,
        "reply": c.reply,
        "input_tokens": c.input_tokens,
        "output_tokens": c.output_tokens,
        "cached_tokens": c.cached_tokens,
        "cache_write_tokens": c.cache_write_tokens,
        "cache_saved_usd": c.cache_saved_usd,
        "reasoning_tokens": c.reasoning_tokens,
        "cost_usd": c.cost_usd,
        "latency_ms": c.latency_ms,
        "cache_hit": c.cache_hit,
        "error": c.error,
        "created_at": timestamp(c.created_at),
    })
}
