//! SQLite: the records of every run that is recording at once, written in one transaction.
//!
//! Runs record at each step (a model call, a code block), and on SQLite each record was a
//! transaction of its own: a BEGIN and a COMMIT, each a round trip to the writer's thread,
//! and a commit that appends every page it touched to the WAL. Runs recording at the same
//! moment touch the same pages (the last page of `events` and its index, the tree
//! counters), so one commit for all of them writes those pages once.
//!
//! A record still returns only once its transaction has committed. If a group fails, its
//! records are written again one transaction each, so that a record that cannot be
//! written fails alone.
//!
//! Not on PostgreSQL: a record locks its tree's event counter until it commits, and two
//! nodes grouping the same trees in different orders would deadlock.

use tokio::sync::{mpsc, oneshot};

use super::events::StoredEvent;
use super::trajectory::{write_records, Write};
use super::{Store, StoreError, StoreResult};
use crate::domain::RunId;

/// Records written by one transaction at most: a transaction holds the only writer
/// connection, so claims and ends wait for it.
const MOST_PER_COMMIT: usize = 64;

pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
}

struct Pending {
    root_id: RunId,
    run_id: RunId,
    writes: Vec<Write>,
    done: oneshot::Sender<StoreResult<Vec<StoredEvent>>>,
}

impl GroupCommit {
    /// Starts the task that writes through `store`, which must not group its own writes.
    /// It ends when the last handle to this is dropped.
    pub fn start(store: Store) -> Self {
        debug_assert!(store.group_commit.is_none());
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(store, pending));
        Self { queue }
    }

    pub async fn record(
        &self,
        root_id: RunId,
        run_id: RunId,
        writes: Vec<Write>,
    ) -> StoreResult<Vec<StoredEvent>> {
        let (done, result) = oneshot::channel();
        let pending = Pending {
            root_id,
            run_id,
            writes,
            done,
        };
        let stopped = || StoreError::Task("the writer of records has stopped".into());
        self.queue.send(pending).map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

async fn commit_loop(store: Store, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut group = Vec::with_capacity(MOST_PER_COMMIT);
    // Whatever arrived while the last group was being written forms the next one.
    while queue.recv_many(&mut group, MOST_PER_COMMIT).await > 0 {
        match write_group(&store, &group).await {
            Ok(stored) => {
                for (pending, events) in group.drain(..).zip(stored) {
                    let _ = pending.done.send(Ok(events));
                }
            }
            Err(_) => {
                for pending in group.drain(..) {
                    let written = store
                        .record_alone(pending.root_id, pending.run_id, &pending.writes)
                        .await;
                    let _ = pending.done.send(written);
                }
            }
        }
    }
}

async fn write_group(store: &Store, group: &[Pending]) -> StoreResult<Vec<Vec<StoredEvent>>> {
    let mut tx = store.write_tx().await?;
    let mut stored = Vec::with_capacity(group.len());
    for pending in group {
        stored
            .push(write_records(&mut tx, pending.root_id, pending.run_id, &pending.writes).await?);
    }
    tx.commit().await?;
    Ok(stored)
}
