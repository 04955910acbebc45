//! Comparisons: one task run on several providers or models, remembered as its runs.

use sqlx::Row;

use super::keys::KeyId;
use super::{now_ms, Store, StoreError, StoreResult};
use crate::domain::RunId;

pub struct Comparison {
    /// Its runs, in the order of its targets.
    pub run_ids: Vec<RunId>,
    pub owner: Option<KeyId>,
}

impl Store {
    pub async fn insert_comparison(
        &self,
        id: RunId,
        runs: &[RunId],
        owner: Option<KeyId>,
    ) -> StoreResult<()> {
        let ids: Vec<String> = runs.iter().map(RunId::to_string).collect();
        sqlx::query(
            "INSERT INTO comparisons (id, run_ids, created_at, owner_key) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(serde_json::to_string(&ids).expect("strings serialize"))
        .bind(now_ms())
        .bind(owner.map(|k| k.0))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_comparison(&self, id: RunId) -> StoreResult<Option<Comparison>> {
        let row = sqlx::query("SELECT run_ids, owner_key FROM comparisons WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let ids: Vec<String> = serde_json::from_str(row.try_get("run_ids")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let run_ids = ids
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad run id {s:?}")))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(Comparison {
            run_ids,
            owner: row.try_get::<Option<i64>, _>("owner_key")?.map(KeyId),
        }))
    }
}
