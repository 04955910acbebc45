//! Child runs: `rlm_query` from a parent's code starts a run one level deeper, in the
//! same tree, and hands its answer back to the code.

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::replay::Tape;
use super::{host, turn, write_through, Engine, Parent};
use crate::contexts::ContextRef;
use crate::domain::{RunError, RunId, RunStatus};
use crate::store::{Finish, NewRun, RunContext, RunRecord, StoreError};

/// The code block a call or child comes from: iteration, and block within it.
#[derive(Debug, Clone, Copy)]
pub struct CodeSite {
    pub iteration: u32,
    pub block: usize,
}

impl Engine {
    /// Starts a child run for `prompt` (its context) one level below `parent`, from the code
    /// at `from`, runs it to its end and returns its answer (with a `schema`, the value it
    /// stands for), or an `Error: ...` string the parent's code can read.
    /// A parent being resumed gets the child it started before for the same prompt: its
    /// answer if it had ended, else the child itself, resumed in turn.
    pub fn run_child<'a>(
        &'a self,
        parent: &'a Parent<'a>,
        prompt: String,
        model: Option<String>,
        schema: Option<Value>,
        from: CodeSite,
    ) -> BoxFuture<'a, Result<Value, StoreError>> {
        Box::pin(async move {
            let (child, tape) = match parent.tape.child(&prompt) {
                Some(child) if child.status.is_terminal() => return Ok(child_answer(&child)),
                Some(child) => {
                    let tape = Tape::load(&self.store, child.id).await?;
                    (child, tape)
                }
                None if parent.tape.is_sealed() => {
                    parent.tape.diverged();
                    return Ok(Value::String(host::NOT_REPLAYED.to_string()));
                }
                None => (
                    self.start_child(parent, prompt, model, schema, from)
                        .await?,
                    Tape::default(),
                ),
            };
            let finish = match self.execute_in_tree(&child, 1, parent.tree, tape).await {
                Ok(finish) => finish,
                Err(error) => {
                    tracing::error!(%error, child_id = %child.id, "child run failed on an internal error");
                    turn::failed(
                        "internal_error",
                        "the child run failed on an internal error",
                    )
                }
            };
            let (store, recorded) = (self.store.clone(), finish.clone());
            let finished = write_through(&parent.tree.writes, async move {
                store
                    .finish_run(child.id, child.root_id, None, &recorded)
                    .await
            })
            .await?;
            for event in finished {
                self.bus.publish(event);
            }
            let (status, text) = match finish {
                Finish::Succeeded { answer, typed, .. } => {
                    ("succeeded", answer_value(answer, typed))
                }
                Finish::Failed { error, .. } => {
                    tracing::warn!(run_id = %child.id, code = %error.code,
                        message = %error.message, "child run failed");
                    ("failed", Value::String(child_error_text(child.id, &error)))
                }
                Finish::Cancelled => ("cancelled", Value::String(child_cancelled_text(child.id))),
            };
            parent.recorder.emit(
                "child.finished",
                json!({"child_id": child.id, "status": status}),
            );
            Ok(text)
        })
    }

    /// Stores a new child run for `prompt` below `parent` and announces it.
    async fn start_child(
        &self,
        parent: &Parent<'_>,
        prompt: String,
        model: Option<String>,
        schema: Option<Value>,
        from: CodeSite,
    ) -> Result<RunRecord, StoreError> {
        let spec = parent.run.spec.for_child(model, schema);
        // A child's context is its prompt, as a JSON string (which always scans).
        let json: std::sync::Arc<str> =
            serde_json::Value::String(prompt.clone()).to_string().into();
        let context = match ContextRef::of_json(&json) {
            Ok(reference) => RunContext::Inline { reference, json },
            Err(_) => RunContext::Empty,
        };
        let new_run = NewRun {
            id: RunId::new(),
            root_id: parent.run.root_id,
            parent_id: Some(parent.run.id),
            depth: parent.run.depth + 1,
            context,
            prompt,
            spec,
            session_id: None,
            owner: parent.run.owner,
        };
        let store = self.store.clone();
        let (child, started) = write_through(&parent.tree.writes, async move {
            store.insert_child_run(&new_run).await
        })
        .await?;
        self.bus.publish(started);
        parent.recorder.emit(
            "child.started",
            json!({"child_id": child.id, "child_depth": child.depth, "model": child.spec.model,
                   "iteration": from.iteration, "block": from.block}),
        );
        Ok(child)
    }
}

/// What the code of a parent reads for a child that had ended before a restart.
fn child_answer(child: &RunRecord) -> Value {
    let error = child
        .error
        .clone()
        .unwrap_or_else(|| RunError::new("unknown", "no error was recorded"));
    match child.status {
        RunStatus::Succeeded => answer_value(
            child.answer.clone().unwrap_or_default(),
            child.spec.answer_schema.is_some(),
        ),
        RunStatus::Cancelled => Value::String(child_cancelled_text(child.id)),
        _ => Value::String(child_error_text(child.id, &error)),
    }
}

/// A child's answer as its parent's code gets it: a typed answer parsed, else the text.
fn answer_value(answer: String, typed: bool) -> Value {
    match typed {
        true => crate::answers::stored_value(&answer),
        false => Value::String(answer),
    }
}

fn child_error_text(id: RunId, error: &RunError) -> String {
    format!(
        "Error: the child run {id} failed ({}): {}",
        error.code, error.message
    )
}

fn child_cancelled_text(id: RunId) -> String {
    format!("Error: the child run {id} was cancelled")
}
