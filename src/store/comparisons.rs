//! Comparisons: one task run on several providers or models, remembered as its runs.

use super::{now_ms, Store, StoreError, StoreResult};
use crate::domain::RunId;

impl Store {
    pub async fn insert_comparison(&self, id: RunId, runs: &[RunId]) -> StoreResult<()> {
        let ids: Vec<String> = runs.iter().map(RunId::to_string).collect();
        sqlx::query("INSERT INTO comparisons (id, run_ids, created_at) VALUES (?, ?, ?)")
            .bind(id.to_string())
            .bind(serde_json::to_string(&ids).expect("strings serialize"))
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The runs of a comparison, in the order of its targets.
    pub async fn comparison_runs(&self, id: RunId) -> StoreResult<Option<Vec<RunId>>> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT run_ids FROM comparisons WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let Some(text) = row else { return Ok(None) };
        let ids: Vec<String> =
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        ids.iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad run id {s:?}")))
            })
            .collect::<StoreResult<Vec<_>>>()
            .map(Some)
    }
}
