//! The in-process event bus: every stored event is published here so that open SSE
//! streams follow runs live. The database stays the source of truth; a subscriber that
//! falls behind re-reads what it missed from there.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::store::StoredEvent;

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<StoredEvent>>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        Self { sender }
    }

    pub fn publish(&self, event: StoredEvent) {
        // No subscribers is the common case, not an error.
        let _ = self.sender.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.sender.subscribe()
    }
}
