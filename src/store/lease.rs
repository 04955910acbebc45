//! What a worker does to a job: claim it, keep its lease alive, finish it or hand it back.
//! Every change after the claim is fenced by the lease owner and checks the rows it touched,
//! so a worker that lost its lease can never overwrite the work of the one that took over.

use std::time::Duration;

use serde_json::json;
use sqlx::{AnyConnection, Row};

use super::events::{self, StoredEvent};
use super::runs::{parse_id, RunRecord};
use super::{now_ms, Store, StoreError, StoreResult};
use crate::domain::{RunError, RunId, RunStatus};

pub struct ClaimedRun {
    pub run: RunRecord,
    /// 1 for the first try; more when an earlier worker died holding the run.
    pub attempt: u32,
    /// It had started before: its new owner resumes it from its record.
    pub resumed: bool,
    pub started: StoredEvent,
}

pub enum LeaseState {
    Held { cancel_requested: bool },
    Lost,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Finish {
    Succeeded {
        /// For a typed run (one with an answer schema), the answer's JSON text.
        answer: String,
        typed: bool,
        finish_reason: String,
    },
    Failed {
        error: RunError,
        partial_answer: Option<String>,
    },
    Cancelled,
}

impl Finish {
    pub fn status(&self) -> RunStatus {
        match self {
            Self::Succeeded { .. } => RunStatus::Succeeded,
            Self::Failed { .. } => RunStatus::Failed,
            Self::Cancelled => RunStatus::Cancelled,
        }
    }
}

impl Store {
    /// Runs waiting in the queue, on every node.
    pub async fn queued_runs(&self) -> StoreResult<i64> {
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    /// Atomically takes a claimable run: the oldest running one whose worker's lease ran
    /// out (and that has tries left), else the oldest queued one. A run whose API key
    /// already has its limit of root runs running (the key's own, else
    /// `max_running_per_key`) waits.
    pub async fn claim_run(
        &self,
        owner: &str,
        ttl: Duration,
        max_attempts: u32,
        max_running_per_key: Option<u32>,
    ) -> StoreResult<Option<ClaimedRun>> {
        let mut tx = self.write_tx().await?;
        if let Some(serialize) = self.sql.serialize_claims {
            sqlx::query(serialize).fetch_one(&mut *tx).await?;
        }
        // Taken once the claim holds its lock, so that times follow the order of the writes
        // (a run that waited for another's end to be claimed starts after that end).
        let now = now_ms();
        // Two probes, each walking `runs_by_status` in id order and stopping at the first
        // claimable run: a lease that ran out first (its worker is gone), else the oldest
        // queued run. One probe for both statuses (`status = 'queued' OR ...`) had to
        // gather and sort every queued run on each claim.
        let claimable = "q.attempts < $4 AND q.cancel_requested = 0 \
             AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.session_id = q.session_id \
                 AND p.turn < q.turn AND p.status IN ('queued', 'running')) \
             AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = q.owner_key \
                 AND COALESCE(k.max_concurrent_runs, $5) <= \
                     (SELECT COUNT(*) FROM runs p WHERE p.owner_key = k.id \
                      AND p.status = 'running' AND p.parent_id IS NULL AND p.id <> q.id))";
        let skip_locked = self.sql.skip_locked;
        let claimed = sqlx::query(&format!(
            "UPDATE runs SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
                 attempts = attempts + 1, started_at = COALESCE(started_at, $3) \
             WHERE id = COALESCE( \
                 (SELECT q.id FROM runs q WHERE q.status = 'running' AND q.lease_expires_at < $3 \
                    AND {claimable} ORDER BY q.id LIMIT 1{skip_locked}), \
                 (SELECT q.id FROM runs q WHERE q.status = 'queued' \
                    AND {claimable} ORDER BY q.id LIMIT 1{skip_locked})) \
             RETURNING id, root_id, attempts, CASE WHEN started_at < $3 THEN 1 ELSE 0 END AS tried_before"
        ))
        .bind(owner)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .bind(max_attempts as i64)
        .bind(max_running_per_key.map(i64::from))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = claimed else {
            return Ok(None);
        };
        let id = parse_id(row.try_get("id")?)?;
        let root_id = parse_id(row.try_get("root_id")?)?;
        let attempt = row.try_get::<i64, _>("attempts")? as u32;
        // A run that ran before keeps everything it recorded, children included: its new
        // owner resumes it by replaying that record (see engine/replay.rs). This is keyed on
        // the run having started, not on `attempt`: a try handed back on shutdown does not
        // count (see `requeue_run`), yet it left records.
        let resumed = row.try_get::<i64, _>("tried_before")? != 0;
        let data = json!({"status": "running", "attempt": attempt, "resumed": resumed});
        let started = events::insert(&mut tx, root_id, id, "run.started", &data).await?;
        tx.commit().await?;
        let run = self
            .get_run(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("claimed run {id} vanished")))?;
        Ok(Some(ClaimedRun {
            run,
            attempt,
            resumed,
            started,
        }))
    }

    pub async fn renew_lease(
        &self,
        id: RunId,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<LeaseState> {
        let row = sqlx::query(
            "UPDATE runs SET lease_expires_at = $1 \
             WHERE id = $2 AND lease_owner = $3 AND status = 'running' RETURNING cancel_requested",
        )
        .bind(now_ms() + ttl.as_millis() as i64)
        .bind(id.to_string())
        .bind(owner)
        .fetch_optional(&self.writer)
        .await?;
        Ok(match row {
            None => LeaseState::Lost,
            Some(row) => LeaseState::Held {
                cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
            },
        })
    }

    /// Records how a run ended, if this worker still holds it (`owner`; `None` for a child
    /// run, which lives inside its root's job), and ends its descendants that are still
    /// running with it. Returns the terminal events, the run's own last; none if the run
    /// was not this worker's to finish.
    pub async fn finish_run(
        &self,
        id: RunId,
        root_id: RunId,
        owner: Option<&str>,
        finish: &Finish,
    ) -> StoreResult<Vec<StoredEvent>> {
        let status = finish.status();
        let (answer, finish_reason, error) = match finish {
            Finish::Succeeded {
                answer,
                finish_reason,
                ..
            } => (Some(answer.clone()), Some(finish_reason.clone()), None),
            Finish::Failed {
                error,
                partial_answer,
            } => (partial_answer.clone(), None, Some(error.clone())),
            Finish::Cancelled => (
                None,
                None,
                Some(RunError::new("cancelled", "the run was cancelled")),
            ),
        };
        let mut tx = self.write_tx().await?;
        self.lock_tree(&mut tx, root_id).await?;
        let updated = sqlx::query(
            "UPDATE runs SET status = $1, answer = $2, finish_reason = $3, error_code = $4, \
                 error_message = $5, finished_at = $6, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $7 AND lease_owner IS NOT DISTINCT FROM $8 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(&answer)
        .bind(&finish_reason)
        .bind(error.as_ref().map(|e| e.code.as_str()))
        .bind(error.as_ref().map(|e| e.message.as_str()))
        .bind(now_ms())
        .bind(id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(Vec::new());
        }
        let (descendant_status, descendant_error) = match (status, &error) {
            (RunStatus::Failed, Some(error)) => (RunStatus::Failed, error.clone()),
            _ => (
                RunStatus::Cancelled,
                RunError::new("cancelled", "the parent run ended first"),
            ),
        };
        let mut events =
            close_descendants(&mut tx, id, descendant_status, &descendant_error).await?;
        // A typed answer goes out as the value it is.
        let shown = match (finish, &answer) {
            (Finish::Succeeded { typed: true, .. }, Some(text)) => {
                crate::answers::stored_value(text)
            }
            _ => json!(answer),
        };
        let data = json!({
            "status": status.as_str(),
            "answer": shown,
            "finish_reason": finish_reason,
            "error": error,
        });
        let kind = format!("run.{}", status.as_str());
        events.push(events::insert(&mut tx, root_id, id, &kind, &data).await?);
        tx.commit().await?;
        Ok(events)
    }

    /// Hands a run back to the queue (on shutdown). The try does not count against it, and
    /// its children stay as they are: whoever takes the run over resumes them with it.
    pub async fn requeue_run(
        &self,
        id: RunId,
        root_id: RunId,
        owner: &str,
    ) -> StoreResult<Vec<StoredEvent>> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(Vec::new());
        }
        let data = json!({"status": "queued", "reason": "server shutting down"});
        let requeued = events::insert(&mut tx, root_id, id, "run.requeued", &data).await?;
        tx.commit().await?;
        Ok(vec![requeued])
    }

    /// Ends runs whose worker died and that may not be tried again: those out of tries
    /// fail, those whose cancel was asked for are cancelled.
    pub async fn reap_abandoned(&self, max_attempts: u32) -> StoreResult<Vec<StoredEvent>> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(&format!(
            "UPDATE runs SET \
                 status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'failed' END, \
                 error_code = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'worker_lost' END, \
                 error_message = CASE WHEN cancel_requested = 1 THEN 'the run was cancelled' \
                     ELSE 'the worker running this run stopped responding too many times' END, \
                 finished_at = $1, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id IN (SELECT q.id FROM runs q WHERE q.status = 'running' \
                 AND q.lease_expires_at < $1 AND (q.attempts >= $2 OR q.cancel_requested = 1){}) \
             RETURNING id, root_id, status, error_code, error_message",
            self.sql.skip_locked
        ))
        .bind(now)
        .bind(max_attempts as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut reaped = Vec::with_capacity(rows.len());
        for row in rows {
            let id = parse_id(row.try_get("id")?)?;
            let root_id = parse_id(row.try_get("root_id")?)?;
            let status: String = row.try_get("status")?;
            let error = RunError {
                code: row.try_get("error_code")?,
                message: row.try_get("error_message")?,
            };
            let data = json!({"status": status, "answer": null, "error": error});
            let kind = format!("run.{status}");
            reaped.push(events::insert(&mut tx, root_id, id, &kind, &data).await?);
        }
        tx.commit().await?;
        Ok(reaped)
    }
}

/// Ends every still-running descendant of `id` (children live inside their root's job, so
/// when a run ends, whatever it started ends too), with a terminal event each.
async fn close_descendants(
    conn: &mut AnyConnection,
    id: RunId,
    status: RunStatus,
    error: &RunError,
) -> StoreResult<Vec<StoredEvent>> {
    let rows = sqlx::query(
        "WITH RECURSIVE tree(id) AS ( \
             SELECT id FROM runs WHERE parent_id = $1 \
             UNION ALL SELECT r.id FROM runs r JOIN tree t ON r.parent_id = t.id) \
         UPDATE runs SET status = $2, error_code = $3, error_message = $4, finished_at = $5 \
         WHERE id IN (SELECT id FROM tree) AND status = 'running' \
         RETURNING id, root_id",
    )
    .bind(id.to_string())
    .bind(status.as_str())
    .bind(&error.code)
    .bind(&error.message)
    .bind(now_ms())
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let run_id = parse_id(row.try_get("id")?)?;
        let root_id = parse_id(row.try_get("root_id")?)?;
        let data = json!({"status": status.as_str(), "answer": null, "error": error});
        let kind = format!("run.{}", status.as_str());
        events.push(events::insert(conn, root_id, run_id, &kind, &data).await?);
    }
    Ok(events)
}
