//! A submitted answer, accepted or sent back: with an answer schema, the run ends only
//! on an answer that fits it; the model is told what failed and tries again.

use serde_json::json;

use super::RunState;
use crate::answers::Candidate;
use crate::domain::RunError;
use crate::engine::parse::{self, FinalMarker};
use crate::store::Finish;

/// An answer the run may end with: its text (for a typed run, the value's JSON).
pub(super) struct Accepted {
    pub text: String,
    pub typed: bool,
}

impl RunState<'_> {
    /// `candidate` as the run's answer, or `None` when it does not fit the run's schema:
    /// then the model is told why (in `reports`) and the REPL's answer is no longer ready.
    /// `skipped` is how many blocks of the reply were not run after the submitting one.
    pub(super) async fn accept(
        &mut self,
        candidate: Candidate,
        iteration: u32,
        replayed: bool,
        skipped: usize,
        reports: &mut Vec<String>,
    ) -> Option<Accepted> {
        let Some(schema) = self.schema.as_ref() else {
            return Some(Accepted {
                text: candidate.text,
                typed: false,
            });
        };
        let rejection = match schema.check(&candidate) {
            Ok(value) => {
                return Some(Accepted {
                    text: value.to_string(),
                    typed: true,
                })
            }
            Err(rejection) => rejection,
        };
        if !replayed {
            crate::metrics::get().answer_rejected();
            self.recorder.emit(
                "answer.rejected",
                json!({"iteration": iteration, "candidate": candidate.shown(),
                       "failures": rejection.failures, "more_failures": rejection.more}),
            );
        }
        // The run's partial answer, should it end without a better one.
        *self.draft.lock().unwrap_or_else(|p| p.into_inner()) = Some(candidate.shown().into());
        // The code keeps its candidate to mend; only its readiness is taken back.
        let reset = json!({"content": candidate.value(), "ready": false});
        if let Err(error) = self.repl.set_var("answer", reset.to_string().into()).await {
            tracing::warn!(%error, "could not take back a rejected answer's readiness");
        }
        let mut feedback = rejection.feedback();
        if skipped > 0 {
            feedback.push_str(&format!(
                "\n({skipped} later block(s) of this reply were not run.)"
            ));
        }
        reports.push(feedback);
        None
    }

    /// An answer given as `FINAL(...)` / `FINAL_VAR(...)` in the reply's prose.
    pub(super) async fn final_marker_answer(
        &mut self,
        reply: &str,
        reports: &mut Vec<String>,
    ) -> Option<Candidate> {
        match parse::final_marker(reply)? {
            FinalMarker::Text(text) => Some(Candidate::text(text)),
            FinalMarker::Var(name) => match self.repl.resolve(&name).await {
                Ok(Some((text, json))) => Some(Candidate { text, json }),
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

    /// The run's end on the answer of its final call (out of turns): a typed run whose
    /// answer still does not fit fails with `invalid_answer` and its last candidate.
    pub(super) fn final_answer(&mut self, text: String) -> Finish {
        let candidate = Candidate::text(text);
        let Some(schema) = self.schema.as_ref() else {
            return succeeded(candidate.text, false, "max_iterations");
        };
        match schema.check(&candidate) {
            Ok(value) => succeeded(value.to_string(), true, "max_iterations"),
            Err(rejection) => {
                let message = format!(
                    "after {} iterations the answer still does not fit the answer schema ({})",
                    self.spec.max_iterations,
                    rejection.summary()
                );
                // The code's latest answer (its last candidate), else the final call's.
                let draft = self.draft.lock().unwrap_or_else(|p| p.into_inner()).take();
                let partial = draft.or(Some(candidate.text));
                Finish::Failed {
                    error: RunError::new("invalid_answer", message),
                    partial_answer: partial,
                }
            }
        }
    }
}

pub(super) fn succeeded(answer: String, typed: bool, finish_reason: &str) -> Finish {
    Finish::Succeeded {
        answer,
        typed,
        finish_reason: finish_reason.into(),
    }
}
