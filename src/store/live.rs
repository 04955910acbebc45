//! What is alive right now: runs that a worker holds (with the children inside their
//! jobs) and open sessions. Start-up uses it to tell which scratch directories are in use.

use super::runs::parse_id;
use super::{now_ms, Store, StoreResult};
use crate::domain::RunId;

impl Store {
    /// Running runs whose tree's lease has not run out: a worker (maybe on another node
    /// sharing this database) is running them. A dead worker's runs are not among them.
    pub async fn held_runs(&self) -> StoreResult<Vec<RunId>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT r.id FROM runs r JOIN runs root ON root.id = r.root_id \
             WHERE r.status = 'running' AND root.status = 'running' \
               AND root.lease_expires_at > $1",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(parse_id).collect()
    }

    pub async fn open_sessions(&self) -> StoreResult<Vec<RunId>> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT id FROM sessions WHERE status = 'open'")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(parse_id).collect()
    }
}
