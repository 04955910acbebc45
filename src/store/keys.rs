//! API keys: only their hashes are stored. Keys are revoked, never deleted, so "a key has
//! existed" never goes back to false.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Store, StoreError, StoreResult};

/// The id of an API key: what runs, sessions and comparisons record as their owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub i64);

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: KeyId,
    pub name: String,
    pub admin: bool,
    /// The key's own limits; `None`: the server's default.
    pub max_concurrent_runs: Option<u32>,
    pub max_queued_runs: Option<u32>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A key to store: its hash, never the key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub hash: String,
    pub admin: bool,
    pub max_concurrent_runs: Option<u32>,
    pub max_queued_runs: Option<u32>,
}

const COLUMNS: &str =
    "id, name, admin, max_concurrent_runs, max_queued_runs, created_at, revoked_at";

impl Store {
    pub async fn insert_key(&self, key: &NewKey) -> StoreResult<ApiKey> {
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (name, hash, admin, max_concurrent_runs, max_queued_runs, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
        ))
        .bind(&key.name)
        .bind(&key.hash)
        .bind(key.admin as i64)
        .bind(key.max_concurrent_runs.map(i64::from))
        .bind(key.max_queued_runs.map(i64::from))
        .bind(now_ms())
        .fetch_one(&self.writer)
        .await;
        match row {
            Ok(row) => key_from_row(&row),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::KeyExists(key.name.clone()))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Every key, oldest first, revoked ones included.
    pub async fn list_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes the key named `name` (a revoked key stays revoked); returns it.
    pub async fn revoke_key(&self, name: &str) -> StoreResult<ApiKey> {
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE name = $2 \
             RETURNING {COLUMNS}"
        ))
        .bind(now_ms())
        .bind(name)
        .fetch_optional(&self.writer)
        .await?;
        match row {
            Some(row) => key_from_row(&row),
            None => Err(StoreError::NoSuchKey(name.to_string())),
        }
    }

    /// The key whose hash this is, revoked or not.
    pub async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// True once any key has been created, even if every key is revoked since.
    pub async fn any_key_exists(&self) -> StoreResult<bool> {
        let keys: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM api_keys LIMIT 1) k")
                .fetch_one(&self.pool)
                .await?;
        Ok(keys > 0)
    }
}

fn key_from_row(row: &AnyRow) -> StoreResult<ApiKey> {
    let limit = |name: &str| -> StoreResult<Option<u32>> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(|n| n as u32))
    };
    Ok(ApiKey {
        id: KeyId(row.try_get("id")?),
        name: row.try_get("name")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        max_concurrent_runs: limit("max_concurrent_runs")?,
        max_queued_runs: limit("max_queued_runs")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}
