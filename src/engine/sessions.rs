//! Sessions: the REPLs of open sessions, kept between their turns in this process, and
//! the replay that rebuilds one wherever a turn runs without it (after a restart, or on
//! another node than the turn before).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::recorder::Recorder;
use super::repl_slot::ReplSlot;
use super::replay::Tape;
use super::tree::Tree;
use super::turn::RunState;
use super::{Engine, EngineError};
use crate::domain::RunId;
use crate::providers::ProviderHandle;
use crate::store::RunRecord;

/// A session's REPL, and the turn it is ready for (it has run every turn before it).
pub struct KeptRepl {
    pub repl: ReplSlot,
    pub next_turn: u32,
}

/// A session's REPL; `None` between a session's creation (or a lost REPL) and its next turn.
pub type SessionSlot = Arc<tokio::sync::Mutex<Option<KeptRepl>>>;

#[derive(Clone, Default)]
pub struct SessionRepls {
    slots: Arc<Mutex<HashMap<RunId, SessionSlot>>>,
}

impl SessionRepls {
    /// The slot of a session; a turn holds its lock while it runs, so turns never overlap.
    pub fn slot(&self, session: RunId) -> SessionSlot {
        self.lock().entry(session).or_default().clone()
    }

    /// Frees a session's REPL (the session was closed or expired). Waits for a running
    /// turn to let go of it first.
    pub async fn discard(&self, session: RunId) {
        let slot = self.lock().remove(&session);
        if let Some(slot) = slot {
            if let Some(mut kept) = slot.lock().await.take() {
                kept.repl.shutdown().await;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, SessionSlot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The kept REPL if it is ready for `turn`. One that is not (another node ran the turns
/// since) is shut down: the turn replays into a new one.
pub async fn take_current(slot: &mut Option<KeptRepl>, turn: u32) -> Option<ReplSlot> {
    let kept = slot.take()?;
    if kept.next_turn == turn {
        return Some(kept.repl);
    }
    let mut stale = kept.repl;
    stale.shutdown().await;
    None
}

impl Engine {
    /// Rebuilds the REPL of `run`'s session on a new one by replaying every earlier turn
    /// from its record, in order: its code runs again with its model calls and children
    /// answered from the record, nothing beyond it is done, and nothing is recorded again.
    pub(super) async fn restore_session(
        &self,
        run: &RunRecord,
        mut repl: ReplSlot,
        tree: &Arc<Tree>,
        provider: &Arc<ProviderHandle>,
    ) -> Result<ReplSlot, EngineError> {
        let (Some(session), Some(turn)) = (run.session_id, run.turn) else {
            return Ok(repl);
        };
        for (earlier, id, _) in self.store.session_runs(session).await? {
            if earlier >= turn {
                break;
            }
            let Some(record) = self.store.get_run(id).await? else {
                continue;
            };
            let context = match self.open_context(&record).await? {
                Ok(context) => context,
                Err(why) => {
                    tracing::warn!(%why, earlier, "a replayed turn's context is gone");
                    continue;
                }
            };
            if let Err(error) = repl.new_answer().await {
                tracing::warn!(%error, "could not reset the answer of a replayed turn");
            }
            if let Err(error) = repl.set_context(&["context".into()], &context.file).await {
                tracing::warn!(%error, "could not give a replayed turn its context");
            }
            let tape = Tape::load(&self.store, id).await?.sealed();
            let messages = self.opening_messages(&record, &context.description);
            let recorder = Recorder::new(self, &record, record.attempts, tree).muted();
            let mut state = RunState::new(
                self,
                &record,
                tree,
                recorder,
                provider.clone(),
                repl,
                messages,
            )
            .resuming(tape);
            // It ends where its record ends.
            state.drive().await?;
            let conversation = state.conversation_json();
            repl = state.repl;
            if let Err(error) = repl
                .set_var(&format!("history_{earlier}"), conversation)
                .await
            {
                tracing::warn!(%error, "could not keep a replayed turn's conversation");
            }
        }
        Ok(repl)
    }
}
