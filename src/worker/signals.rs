//! Several nodes on one PostgreSQL database: what another node did reaches this one at
//! once, instead of at the next poll (which stays as the fallback).

use tokio_util::sync::CancellationToken;

use super::{StopReason, WorkerPool};
use crate::events::Live;
use crate::store::{Signal, Signals};

impl WorkerPool {
    /// Acts on other nodes' notices until `shutdown`: their events go to this node's open
    /// streams, a newly queued run wakes the workers, a cancel stops the job if it runs here.
    pub(super) async fn follow_other_nodes(
        self,
        mut signals: Signals,
        shutdown: CancellationToken,
    ) {
        loop {
            let signal = tokio::select! {
                signal = signals.next() => signal,
                _ = shutdown.cancelled() => return,
            };
            let bus = &self.engine.bus;
            match signal {
                Signal::Event {
                    root_id,
                    run_id,
                    seq,
                } => bus.send(Live::Elsewhere {
                    root_id,
                    run_id,
                    seq,
                }),
                Signal::Queued => self.wake.notify_waiters(),
                Signal::Cancel(run_id) => {
                    self.jobs.stop(run_id, StopReason::Cancelled);
                }
                Signal::Missed => {
                    bus.send(Live::Resync);
                    self.wake.notify_waiters();
                }
            }
        }
    }
}
