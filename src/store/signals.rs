//! What other nodes on the same PostgreSQL database did, as they commit it: the database's
//! triggers `NOTIFY` (see migrations/postgres/0002_notify.sql), a `Signals` listens. SQLite
//! serves one node, which has nothing to hear.

use std::time::Duration;

use sqlx::postgres::PgListener;

use super::{Store, StoreResult};
use crate::domain::RunId;

const CHANNELS: [&str; 3] = ["rlmd_events", "rlmd_queued", "rlmd_cancel"];

#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Another node stored an event.
    Event {
        root_id: RunId,
        run_id: RunId,
        seq: i64,
    },
    /// A run became claimable.
    Queued,
    /// A cancel was asked for this running run.
    Cancel(RunId),
    /// The listening connection dropped and came back: notices may have been missed.
    Missed,
}

pub struct Signals {
    listener: PgListener,
    /// This node's name, which starts the payloads it sent itself.
    node: String,
}

impl Store {
    /// Starts listening to the other nodes; `None` on SQLite.
    pub async fn signals(&self) -> StoreResult<Option<Signals>> {
        let Some(node) = &self.node else {
            return Ok(None);
        };
        let mut listener = PgListener::connect(&self.url).await?;
        listener.listen_all(CHANNELS).await?;
        Ok(Some(Signals {
            listener,
            node: node.to_string(),
        }))
    }
}

impl Signals {
    /// The next signal from another node. Never ends: a lost connection is reconnected,
    /// and reported as [`Signal::Missed`].
    pub async fn next(&mut self) -> Signal {
        loop {
            match self.listener.try_recv().await {
                Ok(Some(notice)) => {
                    if let Some(signal) = parse(&self.node, notice.channel(), notice.payload()) {
                        return signal;
                    }
                }
                // `try_recv` reconnects on its next call.
                Ok(None) => return Signal::Missed,
                Err(error) => {
                    tracing::warn!(%error, "lost the database's notices; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// A notice's signal, unless this node sent it (or it does not parse).
fn parse(node: &str, channel: &str, payload: &str) -> Option<Signal> {
    let mut fields = payload.split(' ');
    if fields.next()? == node {
        return None;
    }
    match channel {
        "rlmd_events" => Some(Signal::Event {
            root_id: fields.next()?.parse().ok()?,
            run_id: fields.next()?.parse().ok()?,
            seq: fields.next()?.parse().ok()?,
        }),
        "rlmd_queued" => Some(Signal::Queued),
        "rlmd_cancel" => Some(Signal::Cancel(fields.next()?.parse().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_hears_others_and_not_itself() {
        let id = RunId::new();
        let event = format!("node-b {id} {id} 7");
        assert_eq!(
            parse("node-a", "rlmd_events", &event),
            Some(Signal::Event {
                root_id: id,
                run_id: id,
                seq: 7
            })
        );
        assert_eq!(parse("node-b", "rlmd_events", &event), None);
        assert_eq!(
            parse("node-a", "rlmd_cancel", &format!("node-b {id}")),
            Some(Signal::Cancel(id))
        );
        assert_eq!(
            parse("node-a", "rlmd_queued", "node-b"),
            Some(Signal::Queued)
        );
        assert_eq!(parse("node-a", "rlmd_events", "node-b garbage"), None);
    }
}
