//! Idempotency keys: a request retried with the same `Idempotency-Key` (and the same body)
//! gets the runs the first one made instead of making new ones. The key is stored in the
//! transaction that stores the runs, so two identical requests at once make one set.

use super::runs::parse_id;
use super::{json_text, now_ms, StoreError, StoreResult};
use crate::domain::RunId;

/// How long a key is remembered.
pub const KEPT_MS: i64 = 24 * 3600 * 1000;

/// A request's idempotency key, where it applies, and what the request asked.
pub struct IdempotencyKey {
    /// Whose key it is and for which route (another API key's same key is another key).
    pub scope: String,
    pub key: String,
    pub body_hash: String,
}

/// What an earlier request with the same key did.
pub enum Earlier {
    /// Nothing: this request is the first.
    None,
    /// The same request: these are its runs.
    Same(Vec<RunId>),
    /// Another request used this key.
    Conflict,
}

/// Looks a key up inside the write transaction `conn`, forgetting it if it is too old.
pub(super) async fn earlier(
    conn: &mut sqlx::AnyConnection,
    key: &IdempotencyKey,
) -> StoreResult<Earlier> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at < $3")
        .bind(&key.scope)
        .bind(&key.key)
        .bind(now_ms() - KEPT_MS)
        .execute(&mut *conn)
        .await?;
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT body_hash, run_ids FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((body_hash, run_ids)) = row else {
        return Ok(Earlier::None);
    };
    if body_hash != key.body_hash {
        return Ok(Earlier::Conflict);
    }
    let ids: Vec<String> =
        serde_json::from_str(&run_ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Earlier::Same(
        ids.into_iter().map(parse_id).collect::<StoreResult<_>>()?,
    ))
}

/// Remembers the runs a request made, inside its write transaction.
pub(super) async fn remember(
    conn: &mut sqlx::AnyConnection,
    key: &IdempotencyKey,
    runs: &[RunId],
) -> StoreResult<()> {
    let ids: Vec<String> = runs.iter().map(RunId::to_string).collect();
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, body_hash, run_ids, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .bind(&key.body_hash)
    .bind(json_text(&ids))
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}
