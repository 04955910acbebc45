//! One run's turns: ask the model, run its code, feed the output back, watch the limits.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

use super::calls::{charged_call, messages_sent};
use super::parse::{self, FinalMarker};
use super::prompt;
use super::recorder::{CallInfo, Recorder};
use super::repl_slot::ReplSlot;
use super::replay::Tape;
use super::tree::Tree;
use super::{Engine, EngineError};
use crate::answers::{AnswerSchema, Candidate};
use crate::domain::{RunError, RunSpec};
use crate::providers::{prompt_chars, Message, ProviderHandle};
use crate::store::{Finish, IterationRecord, RunRecord, Write};

/// One run in progress: its conversation, its REPL, and what it would answer if stopped now.
pub struct RunState<'a> {
    engine: &'a Engine,
    run: &'a RunRecord,
    spec: &'a RunSpec,
    tree: &'a Arc<Tree>,
    pub recorder: Recorder,
    provider: Arc<ProviderHandle>,
    pub repl: ReplSlot,
    messages: Vec<Message>,
    /// What the run's last live root call sent (each call stores what it adds to it).
    sent: Vec<Message>,
    /// `answer["content"]` as the code last left it, submitted or not (the REPL reports
    /// each change as it happens).
    draft: Mutex<Option<String>>,
    consecutive_errors: u32,
    /// Tokens the provider counted for the last root call, and the characters of the
    /// conversation then (its request and reply): the base of the size estimate.
    last_call: Option<(i64, usize)>,
    /// Messages that compactions took out of the conversation, oldest first.
    archived: Vec<Message>,
    compactions: u32,
    /// What the run recorded before it was taken over (empty for a fresh run).
    pub tape: Tape,
    /// The answer schema, compiled: an answer must fit it to end the run.
    schema: Option<Arc<AnswerSchema>>,
}

mod answer;
mod block;
mod compaction;
mod resume;

/// Tokens the provider counted for a call, and the characters it sent.
#[derive(Default)]
struct CallSize {
    tokens: i64,
    prompt_chars: usize,
}

/// Why a root call produced no reply.
enum CallFailure {
    Provider(String),
    Limit(RunError),
}

impl<'a> RunState<'a> {
    pub fn new(
        engine: &'a Engine,
        run: &'a RunRecord,
        tree: &'a Arc<Tree>,
        recorder: Recorder,
        provider: Arc<ProviderHandle>,
        repl: ReplSlot,
        messages: Vec<Message>,
    ) -> Self {
        Self {
            engine,
            run,
            spec: &run.spec,
            tree,
            recorder,
            provider,
            repl,
            messages,
            sent: Vec::new(),
            draft: Mutex::new(None),
            consecutive_errors: 0,
            last_call: None,
            archived: Vec::new(),
            compactions: 0,
            tape: Tape::default(),
            schema: None,
        }
    }

    /// A typed run: it ends only on an answer that fits `schema`.
    pub fn with_schema(mut self, schema: Option<Arc<AnswerSchema>>) -> Self {
        self.schema = schema;
        self
    }

    /// A run taken over: it resumes from what it recorded.
    pub fn resuming(mut self, tape: Tape) -> Self {
        self.tape = tape;
        self
    }

    /// The whole conversation (compacted parts included), without the system prompt, as
    /// JSON: a session keeps it as `history_N`.
    pub fn conversation_json(&self) -> Arc<str> {
        let messages: Vec<_> = self.messages[1..]
            .iter()
            .take(1)
            .chain(&self.archived)
            .chain(self.messages.iter().skip(2))
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        json!(messages).to_string().into()
    }

    /// The run's end when a limit stops it: failed, with the code's draft answer if it
    /// wrote one. The model's reply is never passed off as an answer: it is prose and code,
    /// and it stays readable in the trajectory.
    pub fn stopped_by(&self, error: RunError) -> Finish {
        Finish::Failed {
            error,
            partial_answer: self.draft.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    pub async fn drive(&mut self) -> Result<Finish, EngineError> {
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
        // A replayed iteration was announced and recorded the first time.
        let replayed = self.tape.has_iteration(iteration);
        if !replayed {
            self.recorder
                .emit("iteration.started", json!({"iteration": iteration}));
        }
        if let Some(stop) = self.compact_if_needed(iteration).await? {
            return Ok(Some(stop));
        }
        let model_started = Instant::now();
        let reply = match self.root_call("root", Some(iteration)).await? {
            Ok(text) => text,
            Err(failure) => return Ok(Some(self.call_failed(failure))),
        };
        let model_ms = model_started.elapsed().as_millis() as i64;
        let exec_started = Instant::now();
        let blocks = parse::repl_blocks(&reply);
        let mut reports = Vec::with_capacity(blocks.len());
        let mut candidate = None;
        let mut skipped = 0;
        let mut errored = false;
        let mut fatal = None;
        for (index, code) in blocks.iter().enumerate() {
            let (report, outcome, failed) = self
                .run_block(iteration, index + 1, blocks.len(), code)
                .await?;
            reports.push(report);
            errored |= failed;
            match outcome {
                BlockEnd::Answer(submitted) => {
                    candidate = Some(submitted);
                    skipped = blocks.len() - index - 1;
                    break;
                }
                BlockEnd::ReplReset => break,
                BlockEnd::Fatal(error) => {
                    fatal = Some(error);
                    break;
                }
                BlockEnd::Continue => {}
            }
        }
        if candidate.is_none() && fatal.is_none() {
            candidate = self.final_marker_answer(&reply, &mut reports).await;
        }
        let answer = match candidate {
            Some(candidate) => {
                self.accept(candidate, iteration, replayed, skipped, &mut reports)
                    .await
            }
            None => None,
        };
        let exec_ms = exec_started.elapsed().as_millis() as i64;
        let record = IterationRecord {
            index: iteration,
            reply: reply.clone(),
            model_ms,
            exec_ms,
            started_at,
            finished_at: crate::store::now_ms(),
        };
        if !replayed {
            self.recorder.save(
                vec![Write::Iteration(record)],
                "iteration.finished",
                json!({"iteration": iteration, "reply": reply, "code_blocks": blocks.len(),
                       "model_ms": model_ms, "exec_ms": exec_ms, "answered": answer.is_some()}),
            );
        }
        // The reply joins the conversation even when it ends the run (a session keeps it).
        self.messages.push(Message::assistant(reply));
        // The iteration is recorded even when its code cannot go on: the trajectory shows
        // the reply that was paid for and the block that failed.
        if let Some(error) = fatal {
            return Ok(Some(self.stopped_by(error)));
        }
        if let Some(answer) = answer {
            return Ok(Some(answer::succeeded(answer.text, answer.typed, "answer")));
        }
        self.consecutive_errors = if errored {
            self.consecutive_errors + 1
        } else {
            0
        };
        if let Some(max) = self.spec.limits.max_errors {
            if self.consecutive_errors >= max {
                let error = RunError::new(
                    "errors",
                    format!("{max} consecutive iterations ended with an error in their code"),
                );
                self.recorder.emit(
                    "limit.tripped",
                    json!({"code": error.code, "message": error.message}),
                );
                return Ok(Some(self.stopped_by(error)));
            }
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
        self.messages.push(Message::user(feedback));
        Ok(None)
    }

    /// Out of turns: one last call for the best answer, which is taken as it comes.
    async fn final_call(&mut self, max: u32) -> Result<Finish, EngineError> {
        let ask = match self.schema {
            Some(_) => prompt::FINAL_CALL_TYPED,
            None => prompt::FINAL_CALL,
        };
        self.messages.push(Message::user(ask));
        self.recorder
            .emit("run.final_call", json!({"iterations": max}));
        let reply = match self.root_call("final", None).await? {
            Ok(text) => text,
            Err(failure) => return Ok(self.call_failed(failure)),
        };
        let answer = match parse::final_marker(&reply) {
            Some(FinalMarker::Text(text)) => text,
            _ => reply.trim().to_string(),
        };
        Ok(self.final_answer(answer))
    }

    /// A call to the root model with the conversation so far, charged and recorded.
    async fn root_call(
        &mut self,
        kind: &str,
        iteration: Option<u32>,
    ) -> Result<Result<String, CallFailure>, EngineError> {
        // A live call stores what it sends beyond what the run's last live call sent.
        let sent = (!self.tape.has_root_call(kind, iteration)).then(|| {
            self.end_replay();
            let sent = messages_sent(&self.sent, &self.messages);
            self.sent.clone_from(&self.messages);
            sent
        });
        let (reply, size) = self
            .call_model(kind, iteration, &self.messages, sent)
            .await?;
        if let Ok(text) = &reply {
            self.last_call = Some((size.tokens, size.prompt_chars + text.chars().count()));
        }
        Ok(reply)
    }

    /// A call to the run's model with `messages`; also how big the call was. A resumed run
    /// gets the call it made before, if its record holds it.
    async fn call_model(
        &self,
        kind: &str,
        iteration: Option<u32>,
        messages: &[Message],
        sent: Option<String>,
    ) -> Result<(Result<String, CallFailure>, CallSize), EngineError> {
        if self.tape.is_sealed() && !self.tape.has_root_call(kind, iteration) {
            let end = RunError::new("replayed", "the record of the turn ends here");
            return Ok((Err(CallFailure::Limit(end)), CallSize::default()));
        }
        if let Some(record) = self.tape.root_call(kind, iteration) {
            let size = CallSize {
                tokens: record.input_tokens + record.output_tokens,
                prompt_chars: record.prompt_chars as usize,
            };
            let reply = match (record.reply, record.error) {
                (Some(text), _) => Ok(text),
                (None, error) => Err(CallFailure::Provider(error.unwrap_or_default())),
            };
            return Ok((reply, size));
        }
        let info = CallInfo {
            kind,
            iteration,
            provider: &self.spec.provider,
            model: &self.spec.model,
            prompt_chars: prompt_chars(messages),
            prompt_hash: None,
            messages: sent,
            block: None,
        };
        let call = charged_call(
            self.tree,
            &self.recorder,
            &self.provider,
            &info,
            messages,
            &self.spec.sampling,
        );
        let (result, record) = match self.recorder.flush_during(call).await? {
            Ok(made) => made,
            Err(limit) => return Ok((Err(CallFailure::Limit(limit)), CallSize::default())),
        };
        let data = json!({"kind": kind, "iteration": iteration, "model": self.spec.model,
                          "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
                          "cost_usd": record.cost_usd, "latency_ms": record.latency_ms,
                          "error": record.error});
        self.recorder.emit("llm.called", data);
        let size = CallSize {
            tokens: record.input_tokens + record.output_tokens,
            prompt_chars: info.prompt_chars,
        };
        let reply = result
            .map(|c| c.text)
            .map_err(|e| CallFailure::Provider(e.to_string()));
        Ok((reply, size))
    }

    fn call_failed(&self, failure: CallFailure) -> Finish {
        match failure {
            CallFailure::Provider(message) => failed("provider_error", message),
            CallFailure::Limit(error) => self.stopped_by(error),
        }
    }
}

enum BlockEnd {
    Continue,
    Answer(Candidate),
    /// The REPL timed out or died: the rest of the reply is skipped.
    ReplReset,
    /// The run cannot go on (its tools do not load).
    Fatal(RunError),
}

pub fn failed(code: &str, message: impl Into<String>) -> Finish {
    Finish::Failed {
        error: RunError::new(code, message),
        partial_answer: None,
    }
}
