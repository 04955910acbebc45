//! The delivery state of runs' webhooks, kept on the run row so that any node can deliver
//! it: `pending` once the run is stored, `delivering` while a node holds a claim (which
//! lapses if that node dies), then `delivered` or `failed`.

use serde_json::Value;

use super::events::{self, StoredEvent};
use super::runs::parse_id;
use super::{now_ms, Store, StoreResult};
use crate::domain::RunId;

impl Store {
    /// Claims up to `limit` deliveries that are due: runs that ended with a webhook not yet
    /// delivered, whose claim (if any) has lapsed. Each is held for `hold_ms`.
    pub async fn claim_webhooks(&self, limit: u32, hold_ms: i64) -> StoreResult<Vec<RunId>> {
        let now = now_ms();
        // The state is checked again by the UPDATE itself, so that of two nodes claiming at
        // once only one gets a run.
        let due = "(webhook_state = 'pending' OR (webhook_state = 'delivering' AND webhook_claimed_until < $1))";
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "UPDATE runs SET webhook_state = 'delivering', webhook_claimed_until = $2 \
             WHERE id IN (SELECT id FROM runs WHERE webhook_state IN ('pending', 'delivering') \
                            AND status IN ('succeeded', 'failed', 'cancelled') AND {due} LIMIT $3) \
               AND {due} \
             RETURNING id"
        ))
        .bind(now)
        .bind(now + hold_ms)
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await?;
        ids.into_iter().map(parse_id).collect()
    }

    /// Keeps this node's claim on a delivery for `hold_ms` more.
    pub async fn hold_webhook(&self, id: RunId, hold_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE runs SET webhook_claimed_until = $1 WHERE id = $2 AND webhook_state = 'delivering'",
        )
        .bind(now_ms() + hold_ms)
        .bind(id.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Ends a delivery: `delivered`, `failed`, or `pending` again (given back at shutdown).
    pub async fn set_webhook_state(&self, id: RunId, state: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE runs SET webhook_state = $1, webhook_claimed_until = NULL \
             WHERE id = $2 AND webhook_state = 'delivering'",
        )
        .bind(state)
        .bind(id.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Records one delivery attempt as an event of the run (`webhook.delivered` or
    /// `webhook.failed`).
    pub async fn webhook_event(
        &self,
        root_id: RunId,
        run_id: RunId,
        kind: &str,
        data: &Value,
    ) -> StoreResult<StoredEvent> {
        let mut tx = self.write_tx().await?;
        let event = events::insert(&mut tx, root_id, run_id, kind, data).await?;
        tx.commit().await?;
        Ok(event)
    }
}
