//! `stream: true`: the run narrated as `reasoning_content` deltas while it works (its
//! iterations, code, output, sub-calls and children, as reasoning models stream their
//! thinking), then the answer as `content` deltas, the finish reason, the usage when
//! `stream_options.include_usage` asks for it, and `[DONE]`. A run that fails ends the
//! stream with an `error` object, which OpenAI's SDKs raise.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::super::sse::Follower;
use super::super::AppState;
use super::{answer_of, finish_reason, tree_usage, usage_view, CancelOnDrop};
use crate::store::{RunRecord, StoredEvent};

/// Characters of a block's printed output narrated (the trajectory has all of it).
const OUTPUT_CHARS: usize = 2_000;
/// Characters of the answer per `content` delta.
const ANSWER_CHUNK_CHARS: usize = 1_000;

pub(super) fn respond(
    state: AppState,
    run: RunRecord,
    model: String,
    include_usage: bool,
    follower: Follower,
    guard: CancelOnDrop,
) -> Response {
    let chunks = Chunks {
        id: run.id.to_string(),
        created: run.created_at / 1000,
        model,
        include_usage,
    };
    let first = chunks.delta(json!({"role": "assistant", "content": ""}), None);
    let narration = stream::unfold(follower, |mut follower| async move {
        let event = follower.next().await?;
        Some((event, follower))
    })
    .filter_map(|event| std::future::ready(narrate(&event)));
    let chunks_end = chunks.clone();
    let ending = stream::once(async move { ending(&state, &run, &chunks_end, guard).await })
        .flat_map(stream::iter);
    let chunks_narrate = chunks.clone();
    let events = stream::iter([first])
        .chain(
            narration
                .map(move |text| chunks_narrate.delta(json!({"reasoning_content": text}), None)),
        )
        .chain(ending)
        .map(|data| Ok::<_, Infallible>(Event::default().data(data)));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The chunks after the run ended: its answer, finish reason, usage and `[DONE]`, or the
/// error it ended with.
async fn ending(
    state: &AppState,
    run: &RunRecord,
    chunks: &Chunks,
    guard: CancelOnDrop,
) -> Vec<String> {
    let ended = match state.store.get_run(run.id).await {
        Ok(Some(run)) if run.status.is_terminal() => run,
        Ok(_) => {
            // The events ended before the run did: the server is shutting down.
            guard.disarm();
            return vec![error_chunk(
                "unavailable",
                "the server is shutting down; the run resumes on restart",
            )];
        }
        Err(error) => {
            tracing::error!(%error, "could not read a streamed run's end");
            return vec![error_chunk(
                "internal_error",
                "the server could not read the run's end",
            )];
        }
    };
    guard.disarm();
    let answer = match answer_of(&ended) {
        Ok(answer) => answer,
        Err(super::ApiError::RunFailed { code, message }) => {
            return vec![error_chunk(&code, &message)]
        }
        Err(_) => return vec![error_chunk("run_failed", "the run ended without an answer")],
    };
    let mut out: Vec<String> = split_chars(&answer, ANSWER_CHUNK_CHARS)
        .map(|part| chunks.delta(json!({"content": part}), None))
        .collect();
    out.push(chunks.delta(json!({}), Some(finish_reason(&ended))));
    if chunks.include_usage {
        match tree_usage(state, &ended).await {
            Ok(usage) => out.push(chunks.usage(&usage_view(&usage))),
            Err(_) => out.push(error_chunk(
                "internal_error",
                "the server could not read the run's usage",
            )),
        }
    }
    out.push("[DONE]".to_string());
    out
}

#[derive(Clone)]
struct Chunks {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
}

impl Chunks {
    fn delta(&self, delta: Value, finish_reason: Option<&str>) -> String {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk.to_string()
    }

    /// The last chunk when usage is asked for: no choices, the whole tree's usage.
    fn usage(&self, usage: &Value) -> String {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        })
        .to_string()
    }
}

fn error_chunk(code: &str, message: &str) -> String {
    json!({"error": {"message": message, "type": "run_failed", "code": code, "param": null}})
        .to_string()
}

/// One event told as a line or two of reasoning; `None` for events not worth telling.
fn narrate(event: &StoredEvent) -> Option<String> {
    let data = &event.data;
    let depth = data["depth"].as_u64().unwrap_or(0);
    let indent = "  ".repeat(depth as usize);
    let field = |name: &str| data[name].clone();
    let text = match event.kind.as_str() {
        "run.started" if depth == 0 => "Starting the run.\n".to_string(),
        "iteration.started" => format!("{indent}Iteration {}\n", field("iteration")),
        "code.executed" => {
            let mut text = format!(
                "{indent}```python\n{}\n```\n",
                data["code"].as_str().unwrap_or_default()
            );
            let stdout = data["stdout"].as_str().unwrap_or_default();
            if !stdout.is_empty() {
                text.push_str(&format!(
                    "{indent}Output:\n{}\n",
                    clip(stdout, OUTPUT_CHARS)
                ));
            }
            if let Some(error) = data["error"].as_str().filter(|e| !e.is_empty()) {
                text.push_str(&format!("{indent}Error: {}\n", clip(error, OUTPUT_CHARS)));
            }
            text
        }
        "subcalls.started" => format!(
            "{indent}Asking {} {} sub-call(s)\n",
            field("model").as_str().unwrap_or("the sub-model"),
            field("count")
        ),
        "child.started" => format!(
            "{indent}Starting a child run at depth {} on {}\n",
            field("child_depth"),
            field("model").as_str().unwrap_or_default()
        ),
        "child.finished" => format!(
            "{indent}The child run {}\n",
            field("status").as_str().unwrap_or("ended")
        ),
        "repl.reset" => format!("{indent}The REPL was reset.\n"),
        "provider.retrying" => format!("{indent}The provider asked to retry; waiting.\n"),
        "run.final_call" => format!("{indent}Out of iterations: asking for a final answer.\n"),
        "answer.rejected" => {
            let failures = data["failures"].as_array().cloned().unwrap_or_default();
            let mut text = format!("{indent}The answer does not fit the schema:\n");
            for failure in &failures {
                let path = failure["path"]
                    .as_str()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("/");
                let message = failure["message"].as_str().unwrap_or_default();
                text.push_str(&format!("{indent}- at {path}: {}\n", clip(message, 200)));
            }
            text
        }
        _ => return None,
    };
    Some(text)
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// `text` in pieces of at most `size` characters (at least one piece).
fn split_chars(text: &str, size: usize) -> impl Iterator<Item = String> + '_ {
    let chars: Vec<char> = text.chars().collect();
    let pieces: Vec<String> = if chars.is_empty() {
        vec![String::new()]
    } else {
        chars.chunks(size).map(|c| c.iter().collect()).collect()
    };
    pieces.into_iter()
}
