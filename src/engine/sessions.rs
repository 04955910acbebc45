//! The REPLs of open sessions, kept between their turns in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::repl_slot::ReplSlot;
use crate::domain::RunId;

/// A session's REPL; `None` between a session's creation (or a lost REPL) and its next turn.
pub type SessionSlot = Arc<tokio::sync::Mutex<Option<ReplSlot>>>;

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
            if let Some(mut repl) = slot.lock().await.take() {
                repl.shutdown().await;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, SessionSlot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}
