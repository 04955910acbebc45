//! Queueing runs: one, several together (a comparison's), and once per idempotency key.

use super::events::StoredEvent;
use super::idempotency::{self, Earlier, IdempotencyKey};
use super::runs::{insert, NewRun, RunRecord};
use super::{Store, StoreError, StoreResult};
use crate::domain::{RunId, RunStatus};

/// What a submit did.
pub enum Submitted {
    New(Vec<(RunRecord, StoredEvent)>),
    /// The request had been made before with the same key: these are its runs.
    Replayed(Vec<RunId>),
    /// The key had been used for another request.
    Conflict,
}

impl Store {
    /// Stores a run as `queued`, with its context and its first event, in one transaction.
    /// Returns the run as stored (a worker may claim it the moment this commits).
    /// `max_queued` caps the runs its owner may have waiting ([`StoreError::QueueFull`]).
    pub async fn insert_run(
        &self,
        run: &NewRun,
        max_queued: Option<u32>,
    ) -> StoreResult<(RunRecord, StoredEvent)> {
        let mut inserted = self
            .insert_runs(std::slice::from_ref(run), max_queued)
            .await?;
        Ok(inserted.remove(0))
    }

    /// Queues several runs of one owner together: all of them, or none if its queue has no
    /// room for all (the count and the inserts share one write transaction).
    pub async fn insert_runs(
        &self,
        runs: &[NewRun],
        max_queued: Option<u32>,
    ) -> StoreResult<Vec<(RunRecord, StoredEvent)>> {
        match self.insert_runs_once(runs, max_queued, None).await? {
            Submitted::New(inserted) => Ok(inserted),
            _ => unreachable!("without a key every request is new"),
        }
    }

    /// `insert_runs` for a request that may carry an idempotency key: a retry of a request
    /// already stored gets its runs back, another request with the same key a conflict.
    pub async fn insert_runs_once(
        &self,
        runs: &[NewRun],
        max_queued: Option<u32>,
        key: Option<&IdempotencyKey>,
    ) -> StoreResult<Submitted> {
        self.submit(runs, max_queued, key, None).await
    }

    /// Queues a comparison's runs and records the comparison `id` in the same transaction,
    /// so a comparison never names runs that were not stored, nor runs without it.
    pub async fn insert_comparison_once(
        &self,
        id: RunId,
        runs: &[NewRun],
        max_queued: Option<u32>,
        key: Option<&IdempotencyKey>,
    ) -> StoreResult<Submitted> {
        self.submit(runs, max_queued, key, Some(id)).await
    }

    async fn submit(
        &self,
        runs: &[NewRun],
        max_queued: Option<u32>,
        key: Option<&IdempotencyKey>,
        comparison: Option<RunId>,
    ) -> StoreResult<Submitted> {
        let mut tx = self.write_tx().await?;
        if let Some(key) = key {
            match idempotency::earlier(&mut tx, key).await? {
                Earlier::None => {}
                Earlier::Same(ids) => return Ok(Submitted::Replayed(ids)),
                Earlier::Conflict => return Ok(Submitted::Conflict),
            }
        }
        if let (Some(limit), Some(owner)) = (max_queued, runs.first().and_then(|r| r.owner)) {
            let queued: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM runs WHERE owner_key = $1 AND status = 'queued'",
            )
            .bind(owner.0)
            .fetch_one(&mut *tx)
            .await?;
            if queued + runs.len() as i64 > i64::from(limit) {
                return Err(StoreError::QueueFull { limit });
            }
        }
        let mut inserted = Vec::with_capacity(runs.len());
        for run in runs {
            inserted.push(insert(&mut tx, run, RunStatus::Queued).await?);
        }
        let ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();
        if let Some(id) = comparison {
            let owner = runs.first().and_then(|run| run.owner);
            super::comparisons::insert(&mut tx, id, &ids, owner).await?;
        }
        if let Some(key) = key {
            match idempotency::remember(&mut tx, key, &ids).await {
                Ok(()) => {}
                // The same key, stored meanwhile by a request made at the same time (another
                // node's): this one is rolled back and answered as that one's retry.
                Err(StoreError::Database(sqlx::Error::Database(error)))
                    if error.is_unique_violation() =>
                {
                    drop(tx);
                    return Box::pin(self.submit(runs, max_queued, Some(key), comparison)).await;
                }
                Err(error) => return Err(error),
            }
        }
        tx.commit().await?;
        Ok(Submitted::New(inserted))
    }
}
