//! The sub-call cache: replies of deterministic sub-calls, kept for a while and answered
//! again to runs of the same scope (a run tree, or an API key's runs).

use sqlx::{AnyConnection, Row};

use super::{now_ms, Store, StoreResult};

/// A reply to keep, written with the call's own record (in the same transaction).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub scope: String,
    pub key: String,
    pub reply: String,
    pub expires_at: i64,
}

impl Store {
    /// The reply kept for `key` in `scope`, unless it has expired.
    pub async fn cached_reply(&self, scope: &str, key: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query(
            "SELECT reply FROM subcall_cache WHERE scope = $1 AND key = $2 AND expires_at > $3",
        )
        .bind(scope)
        .bind(key)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("reply")).transpose()?)
    }

    /// Forgets the entries that have expired; returns how many.
    pub async fn purge_expired_cache(&self) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM subcall_cache WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}

/// Keeps `entry`, replacing an older reply to the same call (its life starts again).
pub(super) async fn insert(conn: &mut AnyConnection, entry: &CacheEntry) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO subcall_cache (scope, key, reply, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (scope, key) DO UPDATE SET reply = excluded.reply, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
    )
    .bind(&entry.scope)
    .bind(&entry.key)
    .bind(&entry.reply)
    .bind(now_ms())
    .bind(entry.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}
