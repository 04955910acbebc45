//! Size limits the server enforces on what a REPL sends it. The child bounds its own
//! output too, but it runs the model's code: nothing it says about sizes is trusted.

use super::protocol::{ExecOutcome, HostCall};
use crate::config::SandboxConfig;

/// Characters kept of an error message from the REPL (a tool's or a start's).
const MESSAGE_CHARS: usize = 4_000;
/// Room for the child's own truncation note past the limit (an honest child's output is
/// then passed on as it is; anything longer is cut by the server).
const NOTE_CHARS: usize = 100;

#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_frame_bytes: usize,
    pub max_prompt_chars: usize,
    pub max_answer_chars: usize,
}

impl Bounds {
    pub fn from_config(config: &SandboxConfig) -> Self {
        Self {
            max_frame_bytes: config.max_frame_bytes,
            max_prompt_chars: config.max_prompt_chars,
            max_answer_chars: config.max_answer_chars,
        }
    }

    /// The call, or why it is refused (raised in the code as a `RuntimeError`): a prompt
    /// over the limit is never sent. A draft answer over the limit is cut.
    pub fn check_call(&self, call: HostCall) -> Result<HostCall, String> {
        let call = match call {
            HostCall::Draft { content } => {
                return Ok(HostCall::Draft {
                    content: cut(content, self.max_answer_chars),
                })
            }
            other => other,
        };
        let prompts: &[String] = match &call {
            HostCall::LlmQuery { prompt, .. } | HostCall::RlmQuery { prompt, .. } => {
                std::slice::from_ref(prompt)
            }
            HostCall::LlmQueryBatched { prompts, .. }
            | HostCall::RlmQueryBatched { prompts, .. } => prompts,
            HostCall::Draft { .. } => &[],
        };
        for (index, prompt) in prompts.iter().enumerate() {
            let chars = prompt.chars().count();
            if chars > self.max_prompt_chars {
                return Err(format!(
                    "prompt {index} has {chars} characters; the limit is {} (RLM_MAX_PROMPT_CHARS). Hand the model a smaller slice.",
                    self.max_prompt_chars
                ));
            }
        }
        Ok(call)
    }

    /// A block's outcome cut to the run's output limit; an answer over the answer limit is
    /// not submitted, and the code is told why.
    pub fn outcome(&self, mut outcome: ExecOutcome, output_chars: usize) -> ExecOutcome {
        outcome.stdout = cut_output(outcome.stdout, output_chars);
        outcome.stderr = cut_output(outcome.stderr, output_chars);
        outcome.error = outcome.error.map(|e| cut_output(e, output_chars));
        outcome.draft = outcome.draft.map(|d| cut(d, self.max_answer_chars));
        if outcome.answer.is_none() {
            outcome.answer_json = None;
        }
        if let Some(answer) = &outcome.answer {
            // A typed answer's JSON counts too: it is what would be stored.
            let chars = answer.chars().count().max(
                outcome
                    .answer_json
                    .as_ref()
                    .map_or(0, |j| j.chars().count()),
            );
            if chars > self.max_answer_chars {
                outcome.answer = None;
                outcome.answer_json = None;
                outcome.error = Some(format!(
                    "ValueError: the answer has {chars} characters; the limit is {} (RLM_MAX_ANSWER_CHARS). Nothing was submitted.",
                    self.max_answer_chars
                ));
            }
        }
        outcome
    }
}

/// `text` cut to `limit` characters, with a note of how much was cut.
pub fn cut(text: String, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        None => text,
        Some((end, _)) => {
            let rest = text[end..].chars().count();
            format!(
                "{}\n... [output truncated: {rest} more characters not shown]",
                &text[..end]
            )
        }
    }
}

/// Output the child should already have cut at `limit` (with its note): cut here if longer.
fn cut_output(text: String, limit: usize) -> String {
    if text.chars().nth(limit + NOTE_CHARS).is_none() {
        return text;
    }
    cut(text, limit)
}

/// An error message from the REPL, cut to a readable size.
pub fn message(text: String) -> String {
    cut(text, MESSAGE_CHARS)
}

/// How much live output of one block may still go to subscribers.
pub struct Budget {
    left: usize,
}

impl Budget {
    pub fn new(chars: usize) -> Self {
        Self { left: chars }
    }

    /// The part of `text` that still fits, if any.
    pub fn admit<'a>(&mut self, text: &'a str) -> Option<&'a str> {
        if self.left == 0 || text.is_empty() {
            return None;
        }
        let end = text
            .char_indices()
            .nth(self.left)
            .map_or(text.len(), |(end, _)| end);
        let admitted = &text[..end];
        self.left -= admitted.chars().count();
        Some(admitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_on_character_boundaries_with_a_note() {
        assert_eq!(cut("héllo".into(), 10), "héllo");
        assert_eq!(
            cut("héllo".into(), 2),
            "hé\n... [output truncated: 3 more characters not shown]"
        );
    }

    #[test]
    fn an_oversized_prompt_is_refused_and_an_oversized_answer_not_submitted() {
        let bounds = Bounds {
            max_frame_bytes: 1 << 20,
            max_prompt_chars: 3,
            max_answer_chars: 2,
        };
        let call = HostCall::LlmQueryBatched {
            prompts: vec!["ok".into(), "long".into()],
            model: None,
        };
        assert!(bounds
            .check_call(call)
            .unwrap_err()
            .starts_with("prompt 1 has 4 characters"));
        let outcome = ExecOutcome {
            answer: Some("abc".into()),
            ..ExecOutcome::default()
        };
        let bounded = bounds.outcome(outcome, 100);
        assert_eq!(bounded.answer, None);
        assert!(bounded.error.unwrap().contains("RLM_MAX_ANSWER_CHARS"));
    }

    #[test]
    fn a_typed_answer_is_bounded_by_its_json_and_json_without_an_answer_is_dropped() {
        let bounds = Bounds {
            max_frame_bytes: 1 << 20,
            max_prompt_chars: 3,
            max_answer_chars: 5,
        };
        // A short text (a Python repr, say) does not let a long JSON through.
        let outcome = ExecOutcome {
            answer: Some("[...]".into()),
            answer_json: Some("[1, 2, 3]".into()),
            ..ExecOutcome::default()
        };
        let bounded = bounds.outcome(outcome, 100);
        assert_eq!((bounded.answer, bounded.answer_json), (None, None));
        assert!(bounded.error.unwrap().contains("has 9 characters"));
        let unsubmitted = ExecOutcome {
            answer_json: Some("1".into()),
            ..ExecOutcome::default()
        };
        assert_eq!(bounds.outcome(unsubmitted, 100).answer_json, None);
    }

    #[test]
    fn the_live_output_budget_runs_out() {
        let mut budget = Budget::new(5);
        assert_eq!(budget.admit("abc"), Some("abc"));
        assert_eq!(budget.admit("defg"), Some("de"));
        assert_eq!(budget.admit("h"), None);
    }
}
