//! The end of a resumed run's replay: from its first live root call on, it runs as new.

use serde_json::json;

use super::RunState;
use crate::engine::replay::RESTORED_NOTICE;

impl RunState<'_> {
    /// The first live root call of a resumed run (or its end): the replay is over. It is
    /// announced, and if the replayed code printed something else than before, the model
    /// is told.
    pub fn end_replay(&mut self) {
        let Some(report) = self.tape.finish() else {
            return;
        };
        if report.diverged {
            if let Some(last) = self.messages.last_mut() {
                last.content = format!("{RESTORED_NOTICE}\n\n{}", last.content);
            }
        }
        tracing::info!(
            iterations = report.iterations,
            diverged = report.diverged,
            replay_ms = report.replay_ms,
            "run resumed"
        );
        self.recorder.emit(
            "run.resumed",
            json!({"replayed_iterations": report.iterations, "diverged": report.diverged,
                   "replay_ms": report.replay_ms}),
        );
    }
}
