//! The worker pool: `RLM_WORKERS` loops that claim queued runs from the database, run them
//! under a renewed lease, and record how they ended.

mod control;
mod signals;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use control::{JobControl, RunningJobs, StopReason};

use crate::domain::RunError;
use crate::engine::Engine;
use crate::store::{ClaimedRun, Finish, LeaseState, SessionStatus};

/// How often expired sub-call cache entries are deleted (a lookup never serves one anyway).
const CACHE_PURGE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub workers: usize,
    pub lease_ttl: Duration,
    pub max_attempts: u32,
    pub poll_interval: Duration,
    /// Root runs of one API key running at once, unless the key sets its own limit.
    pub max_running_per_key: Option<u32>,
}

#[derive(Clone)]
pub struct WorkerPool {
    engine: Engine,
    jobs: RunningJobs,
    wake: Arc<Notify>,
    settings: WorkerSettings,
    node: String,
}

impl WorkerPool {
    pub fn new(
        engine: Engine,
        jobs: RunningJobs,
        wake: Arc<Notify>,
        settings: WorkerSettings,
    ) -> Self {
        let node = format!("rlmd-{}", uuid::Uuid::now_v7().simple());
        Self {
            engine,
            jobs,
            wake,
            settings,
            node,
        }
    }

    /// Starts the workers and the reaper on `tracker`, and on PostgreSQL the listener
    /// to other nodes (`signals`); they stop claiming when `shutdown` fires, and finish (or
    /// hand back) what they hold.
    pub fn spawn(
        &self,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        signals: Option<crate::store::Signals>,
    ) {
        for index in 0..self.settings.workers {
            let pool = self.clone();
            let owner = format!("{}-{index}", self.node);
            tracker.spawn(pool.work(owner, shutdown.clone()));
        }
        if let Some(signals) = signals {
            tracker.spawn(self.clone().follow_other_nodes(signals, shutdown.clone()));
        }
        tracker.spawn(self.clone().reap(shutdown));
    }

    async fn work(self, owner: String, shutdown: CancellationToken) {
        loop {
            // Listen before looking, so a submit between the look and the wait is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if shutdown.is_cancelled() {
                break;
            }
            let store = &self.engine.store;
            let settings = &self.settings;
            match store
                .claim_run(
                    &owner,
                    settings.lease_ttl,
                    settings.max_attempts,
                    settings.max_running_per_key,
                )
                .await
            {
                Ok(Some(claimed)) => {
                    self.engine.bus.publish(claimed.started.clone());
                    self.run_job(&owner, claimed).await;
                    continue;
                }
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "could not claim a run"),
            }
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep(settings.poll_interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    #[tracing::instrument(skip_all, fields(run_id = %claimed.run.id))]
    async fn run_job(&self, owner: &str, claimed: ClaimedRun) {
        let run = &claimed.run;
        let control = self.jobs.register(run.id);
        tracing::info!(attempt = claimed.attempt, "run started");
        let writes = TaskTracker::new();
        let outcome = tokio::select! {
            result = self.engine.execute(&claimed, &writes) => Some(result),
            _ = control.stopped() => None,
            _ = self.heartbeat(&claimed, owner, &control) => None,
        };
        self.jobs.remove(run.id);
        // A stopped tree may still be writing its last records: they go before its end.
        writes.close();
        writes.wait().await;
        let store = &self.engine.store;
        let finish = match outcome {
            Some(Ok(finish)) => finish,
            Some(Err(error)) => {
                tracing::error!(%error, "run failed on an internal error");
                Finish::Failed {
                    error: RunError::new(
                        "internal_error",
                        "the run failed on an internal error; see the server log",
                    ),
                    partial_answer: None,
                }
            }
            None => match control.reason() {
                Some(StopReason::Shutdown) => {
                    match store.requeue_run(run.id, run.root_id, owner).await {
                        Ok(events) => events.into_iter().for_each(|e| self.engine.bus.publish(e)),
                        Err(error) => tracing::error!(%error, "could not hand the run back"),
                    }
                    tracing::info!("run handed back to the queue");
                    return;
                }
                Some(StopReason::LeaseLost) => {
                    tracing::warn!("lease lost; another worker owns the run now");
                    return;
                }
                Some(StopReason::Cancelled) | None => Finish::Cancelled,
            },
        };
        match store
            .finish_run(run.id, run.root_id, Some(owner), &finish)
            .await
        {
            Ok(events) if events.is_empty() => {
                tracing::warn!("run finished after its lease was lost; result dropped")
            }
            Ok(events) => {
                match &finish {
                    Finish::Failed { error, .. } => tracing::warn!(run_id = %run.id,
                        code = %error.code, message = %error.message, "run failed"),
                    _ => tracing::info!(status = finish.status().as_str(), "run finished"),
                }
                events.into_iter().for_each(|e| self.engine.bus.publish(e));
            }
            Err(error) => tracing::error!(%error, "could not record the end of the run"),
        }
    }

    /// Renews the lease and watches for a cancel asked on another node. Never returns:
    /// it stops the job through `control` instead.
    async fn heartbeat(&self, claimed: &ClaimedRun, owner: &str, control: &JobControl) {
        let ttl = self.settings.lease_ttl;
        let every = (ttl / 3).min(Duration::from_secs(1));
        loop {
            tokio::time::sleep(every).await;
            match self
                .engine
                .store
                .renew_lease(claimed.run.id, owner, ttl)
                .await
            {
                Ok(LeaseState::Held {
                    cancel_requested: true,
                }) => control.stop(StopReason::Cancelled),
                Ok(LeaseState::Held { .. }) => {}
                Ok(LeaseState::Lost) => control.stop(StopReason::LeaseLost),
                Err(error) => tracing::warn!(%error, "could not renew the lease"),
            }
        }
    }

    /// Ends runs abandoned by dead workers that may not be retried, and wakes the workers
    /// so that expired leases are picked up.
    async fn reap(self, shutdown: CancellationToken) {
        let every = self.settings.poll_interval.max(Duration::from_millis(100));
        let mut cache_purged = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => break,
            }
            match self
                .engine
                .store
                .reap_abandoned(self.settings.max_attempts)
                .await
            {
                Ok(events) => {
                    for event in events {
                        if event.kind == "run.failed" {
                            let field = |name: &str| {
                                event.data["error"][name]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string()
                            };
                            tracing::warn!(run_id = %event.run_id, code = %field("code"),
                                message = %field("message"), "run failed");
                        }
                        self.engine.bus.publish(event);
                    }
                }
                Err(error) => tracing::warn!(%error, "could not reap abandoned runs"),
            }
            self.expire_idle_sessions().await;
            if cache_purged.elapsed() >= CACHE_PURGE_EVERY {
                cache_purged = std::time::Instant::now();
                match self.engine.store.purge_expired_cache().await {
                    Ok(0) => {}
                    Ok(purged) => tracing::debug!(purged, "expired sub-call cache entries purged"),
                    Err(error) => tracing::warn!(%error, "could not purge the sub-call cache"),
                }
            }
        }
    }

    /// Closes sessions idle past their timeout and frees their REPLs.
    async fn expire_idle_sessions(&self) {
        let store = &self.engine.store;
        let idle = match store.idle_sessions().await {
            Ok(idle) => idle,
            Err(error) => return tracing::warn!(%error, "could not look for idle sessions"),
        };
        for session in idle {
            match store.close_session(session, SessionStatus::Expired).await {
                Ok(Some(events)) => {
                    events.into_iter().for_each(|e| self.engine.bus.publish(e));
                    self.engine.sessions.discard(session).await;
                    tracing::info!(%session, "idle session expired");
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "could not expire a session"),
            }
        }
    }
}
