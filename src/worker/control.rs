//! Stopping running jobs from outside their worker: a cancel request, a shutdown, or a
//! lost lease. The first reason given wins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::domain::RunId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A user asked to cancel: the run ends as `cancelled`.
    Cancelled,
    /// The server is shutting down: the run goes back to the queue.
    Shutdown,
    /// Another worker took the run over: this one walks away without writing.
    LeaseLost,
}

#[derive(Default)]
pub struct JobControl {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl JobControl {
    pub fn stop(&self, reason: StopReason) {
        let mut current = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_none() {
            *current = Some(reason);
        }
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }
}

/// The jobs running in this process, so a cancel request reaches them at once.
#[derive(Clone, Default)]
pub struct RunningJobs {
    jobs: Arc<Mutex<HashMap<RunId, Arc<JobControl>>>>,
}

impl RunningJobs {
    pub fn register(&self, id: RunId) -> Arc<JobControl> {
        let control = Arc::new(JobControl::default());
        self.lock().insert(id, control.clone());
        control
    }

    pub fn remove(&self, id: RunId) {
        self.lock().remove(&id);
    }

    /// Stops the job if it runs here; true if it did.
    pub fn stop(&self, id: RunId, reason: StopReason) -> bool {
        match self.lock().get(&id) {
            Some(control) => {
                control.stop(reason);
                true
            }
            None => false,
        }
    }

    /// How many jobs run here now.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    pub fn stop_all(&self, reason: StopReason) {
        for control in self.lock().values() {
            control.stop(reason);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Arc<JobControl>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}
