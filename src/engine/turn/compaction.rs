//! Compaction: when the root's conversation nears the model's context window, the model
//! summarises it, the summary replaces it, and the full record stays in the REPL as
//! `history`.

use serde_json::json;

use super::RunState;
use crate::engine::prompt;
use crate::engine::EngineError;
use crate::providers::{prompt_chars, Message};
use crate::store::Finish;

/// Characters per token when nothing better is known.
const CHARS_PER_TOKEN: usize = 4;

const SUMMARISE: &str = "Your conversation is about to be shortened to fit the context window. Write a summary that lets you carry on without the earlier messages: the task, what you have learned about the context (exact figures, and the names of the REPL variables that hold your results), what you tried, what worked, and what remains to be done. Be complete but concise. Do not write code.";

impl RunState<'_> {
    /// The conversation's size in tokens: the provider's count for the last call plus an
    /// estimate for what was added since, or the estimate for the whole, if larger.
    fn estimated_tokens(&self) -> usize {
        let chars = prompt_chars(&self.messages);
        let by_chars = chars / CHARS_PER_TOKEN;
        let by_usage = self.last_call.map_or(0, |(tokens, chars_then)| {
            tokens.max(0) as usize + chars.saturating_sub(chars_then) / CHARS_PER_TOKEN
        });
        by_chars.max(by_usage)
    }

    fn context_window(&self) -> usize {
        let engine = self.engine;
        engine
            .prices
            .lookup(&self.spec.model)
            .and_then(|price| price.context_window)
            .unwrap_or(engine.default_context_window) as usize
    }

    /// Compacts the conversation if it has reached the run's threshold. Returns the run's
    /// end if the summary could not be had (a limit, a failing provider).
    pub(super) async fn compact_if_needed(
        &mut self,
        iteration: u32,
    ) -> Result<Option<Finish>, EngineError> {
        let Some(compaction) = self.spec.compaction else {
            return Ok(None);
        };
        let estimated = self.estimated_tokens();
        let window = self.context_window();
        let threshold = (window as f64 * compaction.threshold_pct) as usize;
        if estimated < threshold || self.messages.len() <= 2 {
            return Ok(None);
        }
        let mut request = self.messages.clone();
        request.push(Message::user(SUMMARISE));
        let summary = match self
            .call_model("compaction", Some(iteration), &request, None)
            .await?
        {
            (Ok(text), _) => text,
            (Err(failure), _) => return Ok(Some(self.call_failed(failure))),
        };
        self.compactions += 1;
        // Keep the system prompt and the task; everything after goes to `history`.
        let kept: Vec<Message> = self.messages.drain(..2).collect();
        self.archived.append(&mut self.messages);
        let history: Vec<_> = kept[1..]
            .iter()
            .chain(&self.archived)
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let archived_messages = history.len();
        let history = json!(history).to_string().into();
        if let Err(error) = self.repl.set_var("history", history).await {
            tracing::warn!(%error, "could not hand the compacted history to the REPL");
        }
        self.messages = kept;
        self.messages.push(Message::assistant(summary));
        self.messages.push(Message::user(format!(
            "The conversation so far was compacted ({} time{}) to stay within the context window; \
             the summary above is your own. Every earlier message is in the REPL variable `history` \
             (a list of {{\"role\", \"content\"}} dicts), and your REPL variables are unchanged. \
             Continue.\n\n{}",
            self.compactions,
            if self.compactions == 1 { "" } else { "s" },
            prompt::turn_marker(iteration, self.spec.max_iterations)
        )));
        self.last_call = None;
        self.recorder.emit(
            "compaction",
            json!({"iteration": iteration, "estimated_tokens": estimated, "context_window": window,
                   "threshold_pct": compaction.threshold_pct, "compactions": self.compactions,
                   "history_messages": archived_messages}),
        );
        Ok(None)
    }
}
