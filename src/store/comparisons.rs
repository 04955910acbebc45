//! Comparisons: one task run on several providers or models, remembered as its runs.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::keys::KeyId;
use super::page::Page;
use super::runs::{parse_id, ListFilter, PREVIEW_CHARS};
use super::{now_ms, Store, StoreError, StoreResult};
use crate::domain::{RunId, RunStatus};

pub struct Comparison {
    /// Its runs, in the order of its targets.
    pub run_ids: Vec<RunId>,
    pub owner: Option<KeyId>,
}

/// A comparison as a listing shows it.
pub struct ComparisonSummary {
    pub id: RunId,
    pub created_at: i64,
    /// The start of the prompt its targets share.
    pub prompt_preview: Option<String>,
    pub targets: Vec<TargetSummary>,
}

pub struct TargetSummary {
    pub run_id: RunId,
    pub provider: String,
    pub model: String,
    pub status: RunStatus,
}

/// Records comparison `id` as its runs, inside the transaction that queues them.
pub(super) async fn insert(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    pub async fn get_comparison(&self, id: RunId) -> StoreResult<Option<Comparison>> {
        let row = sqlx::query("SELECT run_ids, owner_key FROM comparisons WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Comparison {
            run_ids: run_ids(&row)?,
            owner: row.try_get::<Option<i64>, _>("owner_key")?.map(KeyId),
        }))
    }

    /// Comparisons, newest first, with their targets' states and the prompt they share.
    pub async fn list_comparisons<S: Sync>(
        &self,
        filter: &ListFilter<S>,
    ) -> StoreResult<Vec<ComparisonSummary>> {
        let page = Page::new(None)
            .text_below("id", filter.before.map(|id| id.to_string()))
            .int_equals("owner_key", filter.owner.map(|k| k.0));
        let sql = page.sql("SELECT id, run_ids, created_at FROM comparisons", "id");
        let rows = page
            .bind(&sql, filter.limit, filter.offset)
            .fetch_all(&self.pool)
            .await?;
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            page.push((
                parse_id(row.try_get("id")?)?,
                row.try_get("created_at")?,
                run_ids(row)?,
            ));
        }
        // The runs of the whole page in one query.
        let all: Vec<String> = page
            .iter()
            .flat_map(|(_, _, ids)| ids.iter().map(RunId::to_string))
            .collect();
        let mut runs = HashMap::new();
        if !all.is_empty() {
            let marks: Vec<String> = (1..=all.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT id, status, spec, SUBSTR(prompt, 1, {}) AS preview \
                 FROM runs WHERE id IN ({})",
                PREVIEW_CHARS + 1,
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in &all {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                let (target, preview) = target_from_row(&row)?;
                runs.insert(target.run_id, (target, preview));
            }
        }
        Ok(page
            .into_iter()
            .map(|(id, created_at, ids)| {
                let mut prompt_preview = None;
                let targets = ids
                    .iter()
                    .filter_map(|run_id| runs.remove(run_id))
                    .map(|(target, preview)| {
                        prompt_preview = prompt_preview.take().or(preview);
                        target
                    })
                    .collect();
                ComparisonSummary {
                    id,
                    created_at,
                    prompt_preview,
                    targets,
                }
            })
            .collect())
    }
}

fn run_ids(row: &AnyRow) -> StoreResult<Vec<RunId>> {
    let ids: Vec<String> = serde_json::from_str(row.try_get("run_ids")?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    ids.into_iter().map(parse_id).collect()
}

fn target_from_row(row: &AnyRow) -> StoreResult<(TargetSummary, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Target {
        provider: String,
        model: String,
    }
    let spec: String = row.try_get("spec")?;
    let target: Target =
        serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let status: String = row.try_get("status")?;
    let summary = TargetSummary {
        run_id: parse_id(row.try_get("id")?)?,
        provider: target.provider,
        model: target.model,
        status: status.parse().map_err(StoreError::Corrupt)?,
    };
    Ok((summary, row.try_get("preview")?))
}
