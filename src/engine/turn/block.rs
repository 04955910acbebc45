//! One code block of a turn: run it in the REPL (serving the model calls it makes), record
//! it, and decide how the turn goes on.

use std::time::Instant;

use serde_json::json;

use super::{BlockEnd, RunState};
use crate::answers::Candidate;
use crate::domain::RunError;
use crate::engine::host::SubcallHost;
use crate::engine::{prompt, EngineError, Parent};
use crate::repl::{ExecOutcome, ReplError};
use crate::store::{CodeBlockRecord, Write};

impl RunState<'_> {
    /// Runs one block, records it, and says how the turn should go on.
    pub(super) async fn run_block(
        &mut self,
        iteration: u32,
        index: usize,
        total: usize,
        code: &str,
    ) -> Result<(String, BlockEnd, bool), EngineError> {
        let started = Instant::now();
        let Some(sub_provider) = self.engine.providers.get(self.spec.sub_provider()) else {
            let reason = format!("provider {:?} is not configured", self.spec.sub_provider());
            return Ok((reason, BlockEnd::Continue, true));
        };
        // A resumed run's recorded block runs again to rebuild the REPL, quietly: it was
        // announced and recorded the first time.
        let recorded = self.tape.block(iteration, index as u32).cloned();
        if let Some(record) = recorded.as_ref().filter(|r| r.lost_the_repl()) {
            // It lost the REPL the first time: the REPL starts empty again, as it did then.
            self.repl.reset().await;
            let seen = recorded_outcome(record, ExecOutcome::default());
            return Ok((
                prompt::block_report(index, total, &seen),
                BlockEnd::ReplReset,
                true,
            ));
        }
        let parent = Parent {
            run: self.run,
            recorder: &self.recorder,
            tree: self.tree,
            tape: &self.tape,
        };
        let host = SubcallHost {
            engine: self.engine,
            parent: &parent,
            provider: sub_provider,
            iteration,
            block: index,
            draft: &self.draft,
            replaying: recorded.is_some(),
        };
        let limits = &self.spec.limits;
        let exec = self
            .repl
            .exec(code, limits.output_chars, limits.block_timeout(), &host);
        let result = self.recorder.flush_during(exec).await?;
        let duration_ms = started.elapsed().as_millis() as i64;
        if recorded.is_none() {
            crate::metrics::get().block_ran(started.elapsed().as_secs_f64());
        }
        let (outcome, timed_out, end) = match result {
            Ok(outcome) => {
                if outcome.draft.is_some() {
                    *self.draft.lock().unwrap_or_else(|p| p.into_inner()) = outcome.draft.clone();
                }
                let end = match &outcome.answer {
                    Some(answer) => BlockEnd::Answer(Candidate {
                        text: answer.clone(),
                        json: outcome.answer_json.clone(),
                    }),
                    None => BlockEnd::Continue,
                };
                (outcome, false, end)
            }
            Err(ReplError::Tools(message)) => {
                let error = RunError::new("tool_error", message);
                return Ok((error.message.clone(), BlockEnd::Fatal(error), true));
            }
            // Without a REPL the run cannot make progress: fail now rather than pay for
            // turns whose code cannot run.
            Err(error @ (ReplError::Spawn(_) | ReplError::Init(_))) => {
                let error = RunError::new("repl_error", error.to_string());
                tracing::warn!(message = %error.message, "the run's REPL cannot run code");
                return Ok((error.message.clone(), BlockEnd::Fatal(error), true));
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
                // A REPL that cannot be started again ends the run now, before another
                // turn is paid for.
                let end = match self.repl.start_error() {
                    Some(why) => BlockEnd::Fatal(RunError::new("repl_error", why)),
                    None => BlockEnd::ReplReset,
                };
                let outcome = ExecOutcome {
                    stderr: prompt::repl_reset_notice(&reason),
                    error: Some(reason),
                    ..ExecOutcome::default()
                };
                (outcome, timed_out, end)
            }
        };
        if let Some(record) = recorded {
            if outcome.stdout != record.stdout || outcome.error != record.error {
                tracing::info!(
                    iteration,
                    block = index,
                    "the replayed block printed something else"
                );
                self.tape.diverged();
            }
            // The conversation goes on with what the model saw the first time.
            let failed = record.error.is_some();
            let seen = recorded_outcome(&record, outcome);
            return Ok((prompt::block_report(index, total, &seen), end, failed));
        }
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
        let failed = outcome.error.is_some();
        Ok((prompt::block_report(index, total, &outcome), end, failed))
    }
}

/// What a block printed the first time, with what its replay submitted.
fn recorded_outcome(record: &CodeBlockRecord, replayed: ExecOutcome) -> ExecOutcome {
    ExecOutcome {
        stdout: record.stdout.clone(),
        stderr: record.stderr.clone(),
        error: record.error.clone(),
        ..replayed
    }
}
