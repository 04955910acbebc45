//! The RLM loop: the root model writes code, the REPL runs it, the output goes back,
//! until the model submits an answer or runs out of turns.

mod host;
mod parse;
mod prompt;
mod recorder;
mod repl_slot;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::config::SandboxConfig;
use crate::domain::{RunError, RunSpec};
use crate::events::EventBus;
use crate::providers::{prompt_chars, ChatModel, ChatRequest, Message, Providers};
use crate::repl::{ExecOutcome, ReplError};
use crate::store::{
    ClaimedRun, CodeBlockRecord, Finish, IterationRecord, Store, StoreError, Write,
};
use host::SubcallHost;
use parse::FinalMarker;
use recorder::CallInfo;
pub use recorder::Recorder;
use repl_slot::ReplSlot;

/// Runs claimed jobs. Cheap to clone; shared by all workers.
#[derive(Clone)]
pub struct Engine {
    pub store: Store,
    pub bus: EventBus,
    pub providers: Providers,
    pub sandbox: Arc<SandboxConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One run in progress: its spec, its conversation and its REPL.
struct RunState<'a> {
    recorder: Recorder,
    spec: &'a RunSpec,
    provider: Arc<dyn ChatModel>,
    repl: ReplSlot,
    messages: Vec<Message>,
}

impl Engine {
    /// Runs a claimed job to its end. Cancelling is dropping this future: the REPL child
    /// is killed and in-flight model calls are abandoned.
    #[tracing::instrument(skip_all, fields(run_id = %claimed.run.id, attempt = claimed.attempt))]
    pub async fn execute(&self, claimed: &ClaimedRun) -> Result<Finish, EngineError> {
        let run = &claimed.run;
        let spec = &run.spec;
        let recorder = Recorder::new(
            self.store.clone(),
            self.bus.clone(),
            run.id,
            run.root_id,
            run.depth,
            claimed.attempt,
        );
        let Some(provider) = self.providers.get(&spec.provider) else {
            return Ok(failed(
                "provider_not_configured",
                format!(
                    "provider {:?} is not configured on this server",
                    spec.provider
                ),
            ));
        };
        // The context can be tens of megabytes: it is shared, never copied.
        let context: Arc<str> = self.store.load_context(run.id).await?.into();
        let run_dir: PathBuf = self.sandbox.scratch_root.join(run.id.to_string());
        // Python boots in the child while the first model call is in flight.
        let mut repl = ReplSlot::new(self.sandbox.clone(), run_dir, context.clone());
        repl.start();
        let prompt = run.prompt.clone();
        let summary =
            tokio::task::spawn_blocking(move || prompt::context_summary(&context, &prompt))
                .await
                .unwrap_or_else(|_| String::from("The question could not be summarised."));
        let messages = vec![
            Message::system(prompt::system_prompt(
                spec.system_prompt.as_deref(),
                spec.limits.output_chars,
            )),
            Message::user(format!(
                "{summary}\n\n{}",
                prompt::turn_marker(1, spec.max_iterations)
            )),
        ];
        let mut state = RunState {
            recorder,
            spec,
            provider,
            repl,
            messages,
        };
        let finish = state.drive().await;
        let (flushed, ()) = tokio::join!(state.recorder.flush(), state.repl.shutdown());
        flushed?;
        finish
    }
}

impl RunState<'_> {
    async fn drive(&mut self) -> Result<Finish, EngineError> {
        let max = self.spec.max_iterations;
        for iteration in 1..=max {
            if let Some(finish) = self.iterate(iteration).await? {
                return Ok(finish);
            }
        }
        self.final_call(max).await
    }

    /// One turn: ask the root model, run its blocks, feed the output back. Returns the
    /// run's end when this turn produced an answer (or a fatal error).
    async fn iterate(&mut self, iteration: u32) -> Result<Option<Finish>, EngineError> {
        let started_at = crate::store::now_ms();
        self.recorder
            .emit("iteration.started", json!({"iteration": iteration}));
        let model_started = Instant::now();
        let reply = match self.root_call("root", Some(iteration)).await? {
            Ok(text) => text,
            Err(message) => return Ok(Some(failed("provider_error", message))),
        };
        let model_ms = model_started.elapsed().as_millis() as i64;
        let exec_started = Instant::now();
        let blocks = parse::repl_blocks(&reply);
        let mut reports = Vec::with_capacity(blocks.len());
        let mut answer = None;
        for (index, code) in blocks.iter().enumerate() {
            let (report, outcome) = self
                .run_block(iteration, index + 1, blocks.len(), code)
                .await?;
            reports.push(report);
            match outcome {
                BlockEnd::Answer(text) => {
                    answer = Some(text);
                    break;
                }
                BlockEnd::ReplReset => break,
                BlockEnd::Continue => {}
            }
        }
        if answer.is_none() {
            answer = self.final_marker_answer(&reply, &mut reports).await;
        }
        let exec_ms = exec_started.elapsed().as_millis() as i64;
        let record = IterationRecord {
            index: iteration,
            reply: reply.clone(),
            model_ms,
            exec_ms,
            started_at,
            finished_at: crate::store::now_ms(),
        };
        self.recorder.save(
            vec![Write::Iteration(record)],
            "iteration.finished",
            json!({"iteration": iteration, "reply": reply, "code_blocks": blocks.len(),
                   "model_ms": model_ms, "exec_ms": exec_ms, "answered": answer.is_some()}),
        );
        if let Some(answer) = answer {
            return Ok(Some(Finish::Succeeded {
                answer,
                finish_reason: "answer".into(),
            }));
        }
        let mut feedback = if reports.is_empty() {
            prompt::NO_CODE_NOTICE.to_string()
        } else {
            reports.join("\n\n")
        };
        feedback.push_str("\n\n");
        feedback.push_str(&prompt::turn_marker(
            iteration + 1,
            self.spec.max_iterations,
        ));
        self.messages.push(Message::assistant(reply));
        self.messages.push(Message::user(feedback));
        Ok(None)
    }

    /// Runs one block, records it, and says how the turn should go on.
    async fn run_block(
        &mut self,
        iteration: u32,
        index: usize,
        total: usize,
        code: &str,
    ) -> Result<(String, BlockEnd), EngineError> {
        let started = Instant::now();
        let host = SubcallHost {
            recorder: &self.recorder,
            provider_name: &self.spec.provider,
            provider: self.provider.clone(),
            default_model: self.spec.sub_model(),
            max_concurrent: self.spec.limits.max_concurrent_subcalls,
            iteration,
        };
        let limits = &self.spec.limits;
        let exec = self
            .repl
            .exec(code, limits.output_chars, limits.block_timeout(), &host);
        let result = self.recorder.flush_during(exec).await?;
        let duration_ms = started.elapsed().as_millis() as i64;
        let (outcome, timed_out, end) = match result {
            Ok(outcome) => {
                let end = match &outcome.answer {
                    Some(answer) => BlockEnd::Answer(answer.clone()),
                    None => BlockEnd::Continue,
                };
                (outcome, false, end)
            }
            Err(error) => {
                let timed_out = matches!(error, ReplError::Timeout(_));
                let reason = match &error {
                    ReplError::Timeout(limit) => format!(
                        "TimeoutError: the block was stopped after {:.1} s (the per-block limit).",
                        limit.as_secs_f64()
                    ),
                    other => format!("ReplError: {other}."),
                };
                tracing::warn!(%error, "REPL reset");
                self.repl.reset().await;
                self.recorder.emit(
                    "repl.reset",
                    json!({"iteration": iteration, "block": index, "reason": reason}),
                );
                let outcome = ExecOutcome {
                    stderr: prompt::repl_reset_notice(&reason),
                    error: Some(reason),
                    ..ExecOutcome::default()
                };
                (outcome, timed_out, BlockEnd::ReplReset)
            }
        };
        let record = CodeBlockRecord {
            iteration,
            index: index as u32,
            code: code.to_string(),
            stdout: outcome.stdout.clone(),
            stderr: outcome.stderr.clone(),
            error: outcome.error.clone(),
            timed_out,
            duration_ms,
        };
        self.recorder.save(
            vec![Write::CodeBlock(record)],
            "code.executed",
            json!({"iteration": iteration, "block": index, "code": code, "stdout": outcome.stdout,
                   "stderr": outcome.stderr, "error": outcome.error, "timed_out": timed_out,
                   "duration_ms": duration_ms}),
        );
        Ok((prompt::block_report(index, total, &outcome), end))
    }

    /// An answer given as `FINAL(...)` / `FINAL_VAR(...)` in the reply's prose.
    async fn final_marker_answer(
        &mut self,
        reply: &str,
        reports: &mut Vec<String>,
    ) -> Option<String> {
        match parse::final_marker(reply)? {
            FinalMarker::Text(text) => Some(text),
            FinalMarker::Var(name) => match self.repl.resolve(&name).await {
                Ok(Some(value)) => Some(value),
                Ok(None) => {
                    reports.push(format!("FINAL_VAR({name}): there is no variable named {name:?}; nothing was submitted."));
                    None
                }
                Err(error) => {
                    reports.push(format!("FINAL_VAR({name}) failed: {error}"));
                    None
                }
            },
        }
    }

    /// Out of turns: one last call for the best answer, which is taken as it comes.
    async fn final_call(&mut self, max: u32) -> Result<Finish, EngineError> {
        self.messages.push(Message::user(prompt::FINAL_CALL));
        self.recorder
            .emit("run.final_call", json!({"iterations": max}));
        let reply = match self.root_call("final", None).await? {
            Ok(text) => text,
            Err(message) => return Ok(failed("provider_error", message)),
        };
        let answer = match parse::final_marker(&reply) {
            Some(FinalMarker::Text(text)) => text,
            _ => reply.trim().to_string(),
        };
        Ok(Finish::Succeeded {
            answer,
            finish_reason: "max_iterations".into(),
        })
    }

    /// A call to the root model with the conversation so far, recorded. The inner error is
    /// the provider's failure, which ends the run.
    async fn root_call(
        &self,
        kind: &str,
        iteration: Option<u32>,
    ) -> Result<Result<String, String>, EngineError> {
        let started = Instant::now();
        let request = ChatRequest {
            model: &self.spec.model,
            messages: &self.messages,
        };
        let result = self
            .recorder
            .flush_during(self.provider.complete(request))
            .await?;
        let info = CallInfo {
            kind,
            iteration,
            provider: &self.spec.provider,
            model: &self.spec.model,
            prompt_chars: prompt_chars(&self.messages),
        };
        let record =
            self.recorder
                .call_record(&info, started.elapsed().as_millis() as i64, &result);
        let data = json!({"kind": kind, "iteration": iteration, "model": self.spec.model,
                          "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
                          "latency_ms": record.latency_ms, "error": record.error});
        self.recorder
            .save(vec![Write::LlmCall(record)], "llm.called", data);
        Ok(result.map(|c| c.text).map_err(|e| e.to_string()))
    }
}

enum BlockEnd {
    Continue,
    Answer(String),
    /// The REPL timed out or died: the rest of the reply is skipped.
    ReplReset,
}

fn failed(code: &str, message: impl Into<String>) -> Finish {
    Finish::Failed {
        error: RunError::new(code, message),
        partial_answer: None,
    }
}
