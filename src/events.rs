//! The in-process event bus: every stored event is published here so that open SSE
//! streams follow runs live. The database stays the source of truth; a subscriber that
//! falls behind re-reads what it missed from there.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::domain::RunId;
use crate::store::StoredEvent;

/// What the bus carries.
#[derive(Debug)]
pub enum Live {
    /// An event this node stored, whole.
    Event(StoredEvent),
    /// An event another node stored (PostgreSQL): which one; its data is in the store.
    Elsewhere {
        root_id: RunId,
        run_id: RunId,
        seq: i64,
    },
    /// Notices from other nodes may have been missed (the listening connection dropped):
    /// every stream should re-read the store.
    Resync,
}

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Live>>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        Self { sender }
    }

    pub fn publish(&self, event: StoredEvent) {
        // Every event this node stores passes here once: the place to count runs ending.
        crate::metrics::get().event(&event);
        self.send(Live::Event(event));
    }

    pub fn send(&self, live: Live) {
        // No subscribers is the common case, not an error.
        let _ = self.sender.send(Arc::new(live));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Live>> {
        self.sender.subscribe()
    }
}
