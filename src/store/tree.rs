//! Reading a tree of runs: a run's descendants, and what a run or a whole tree spent.

use std::collections::BTreeMap;

use sqlx::Row;

use super::runs::{run_from_row, RunRecord, Usage};
use super::{Store, StoreResult};
use crate::domain::RunId;

impl Store {
    /// Every run below `id`, parents before their children, siblings in creation order.
    pub async fn descendants(&self, id: RunId) -> StoreResult<Vec<RunRecord>> {
        self.runs_where(
            "WITH RECURSIVE tree(id, depth) AS ( \
                 SELECT id, depth FROM runs WHERE parent_id = $1 \
                 UNION ALL SELECT r.id, r.depth FROM runs r JOIN tree t ON r.parent_id = t.id) ",
            "r.id IN (SELECT id FROM tree) ORDER BY r.depth, r.id",
            id,
        )
        .await
    }

    /// The children of `id`, oldest first.
    pub async fn children_of(&self, id: RunId) -> StoreResult<Vec<RunRecord>> {
        self.runs_where("", "r.parent_id = $1 ORDER BY r.id", id)
            .await
    }

    /// The runs `runs r` that `condition` (on `$1`, the id) picks, after a `with` clause.
    async fn runs_where(
        &self,
        with: &str,
        condition: &str,
        id: RunId,
    ) -> StoreResult<Vec<RunRecord>> {
        let sql = format!(
            "{with}SELECT {} FROM runs r WHERE {condition}",
            self.run_columns()
        );
        let rows = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Spending by model: of one run, or (`whole_tree`) of it and every run below it (a
    /// root's whole tree, or a child's subtree).
    pub async fn usage_by_model(
        &self,
        id: RunId,
        whole_tree: bool,
    ) -> StoreResult<BTreeMap<String, Usage>> {
        let (with, scope) = if whole_tree {
            (
                "WITH RECURSIVE tree(id) AS ( \
                     SELECT id FROM runs WHERE id = $1 \
                     UNION ALL SELECT r.id FROM runs r JOIN tree t ON r.parent_id = t.id) ",
                "c.run_id IN (SELECT id FROM tree)",
            )
        } else {
            ("", "c.run_id = $1")
        };
        let sql = format!(
            "{with}SELECT c.model, CAST(SUM(c.input_tokens) AS BIGINT) AS input_tokens, \
                 CAST(SUM(c.output_tokens) AS BIGINT) AS output_tokens, \
                 CAST(SUM(c.cached_tokens) AS BIGINT) AS cached_tokens, \
                 CAST(SUM(c.reasoning_tokens) AS BIGINT) AS reasoning_tokens, \
                 CAST(COUNT(*) - SUM(c.cache_hit) AS BIGINT) AS llm_calls, \
                 SUM(c.cost_usd) AS cost_usd, \
                 CAST(SUM(c.cache_write_tokens) AS BIGINT) AS cache_write_tokens, \
                 SUM(c.cache_saved_usd) AS cache_saved_usd, \
                 CAST(SUM(c.cache_hit) AS BIGINT) AS cache_hits \
             FROM llm_calls c WHERE {scope} GROUP BY c.model"
        );
        let rows = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut by_model = BTreeMap::new();
        for row in rows {
            let usage = Usage {
                input_tokens: row.try_get("input_tokens")?,
                output_tokens: row.try_get("output_tokens")?,
                cached_tokens: row.try_get("cached_tokens")?,
                reasoning_tokens: row.try_get("reasoning_tokens")?,
                llm_calls: row.try_get("llm_calls")?,
                cost_usd: row.try_get("cost_usd")?,
                cache_write_tokens: row.try_get("cache_write_tokens")?,
                cache_saved_usd: row.try_get("cache_saved_usd")?,
                cache_hits: row.try_get("cache_hits")?,
            };
            by_model.insert(row.try_get("model")?, usage);
        }
        Ok(by_model)
    }

    /// How many runs the tree rooted at `root_id` has, itself included.
    pub async fn tree_size(&self, root_id: RunId) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE root_id = $1")
                .bind(root_id.to_string())
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// The sum of several usages.
pub fn total(usages: impl IntoIterator<Item = Usage>) -> Usage {
    usages.into_iter().fold(Usage::default(), |mut sum, u| {
        sum.input_tokens += u.input_tokens;
        sum.output_tokens += u.output_tokens;
        sum.cached_tokens += u.cached_tokens;
        sum.reasoning_tokens += u.reasoning_tokens;
        sum.llm_calls += u.llm_calls;
        sum.cost_usd += u.cost_usd;
        sum.cache_write_tokens += u.cache_write_tokens;
        sum.cache_saved_usd += u.cache_saved_usd;
        sum.cache_hits += u.cache_hits;
        sum
    })
}
