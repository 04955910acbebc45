//! Context blobs (stored once by SHA-256, in chunks), the uploads each key sees, and what
//! each run was given.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::keys::KeyId;
use super::{now_ms, Store, StoreError, StoreResult};
use crate::contexts::{ContextFormat, ContextId, ContextRef};
use crate::domain::RunId;

/// Bytes per stored chunk: small enough to bind, read and hash one at a time.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Chunks written per transaction while a large upload is stored, so that SQLite's single
/// writer is never held for long.
const CHUNKS_PER_TRANSACTION: usize = 16;

/// An uploaded context, as the key that uploaded it sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContextEntry {
    pub id: ContextId,
    pub format: ContextFormat,
    pub bytes: u64,
    pub description: String,
    pub name: Option<String>,
    pub created_at: i64,
}

impl ContextEntry {
    pub fn reference(&self) -> ContextRef {
        ContextRef {
            id: self.id.clone(),
            format: self.format,
            description: self.description.clone(),
        }
    }
}

/// What a run's REPL is to be given as `context`.
#[derive(Debug, Clone)]
pub enum StoredContext {
    /// The run has none: `context` is "".
    Empty,
    /// Stored bytes; a small blob (one chunk) comes with them, read in the same query.
    Blob {
        reference: ContextRef,
        small: Option<Vec<u8>>,
    },
    /// A run stored before contexts were blobs: its JSON text.
    Legacy(String),
}

/// What a run was given (`r`), with the bytes of a one-chunk blob, in one query.
const CONTEXT_OF_RUN: &str = "SELECT r.turn, r.context_id, r.context_format, \
     r.context_description, c.context, ch.data AS small FROM runs r \
     LEFT JOIN run_contexts c ON c.run_id = r.id \
     LEFT JOIN context_blobs b ON b.id = r.context_id \
     LEFT JOIN context_chunks ch ON ch.blob_id = b.id AND ch.seq = 0 AND b.bytes <= 1048576";

/// What a new run is given as `context`.
#[derive(Debug, Clone)]
pub enum RunContext {
    /// None: `context` is "".
    Empty,
    /// JSON given inline (a request body, a child's prompt), stored with the run unless
    /// its bytes are stored already.
    Inline {
        reference: ContextRef,
        json: std::sync::Arc<str>,
    },
    /// Bytes stored already: an upload named by `context_id`.
    Stored(ContextRef),
}

impl RunContext {
    pub fn reference(&self) -> Option<&ContextRef> {
        match self {
            Self::Empty => None,
            Self::Inline { reference, .. } | Self::Stored(reference) => Some(reference),
        }
    }
}

/// The key column's value: 0 stands for "uploaded with keys off".
fn owner_key(owner: Option<KeyId>) -> i64 {
    owner.map_or(0, |k| k.0)
}

impl Store {
    /// The size of a complete blob, if it is stored.
    pub async fn blob_bytes(&self, id: &ContextId) -> StoreResult<Option<u64>> {
        let bytes: Option<i64> =
            sqlx::query_scalar("SELECT bytes FROM context_blobs WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(bytes.map(|b| b as u64))
    }

    /// One chunk of a blob (`seq` from 0).
    pub async fn blob_chunk(&self, id: &ContextId, seq: u64) -> StoreResult<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT data FROM context_chunks WHERE blob_id = $1 AND seq = $2")
                .bind(id.as_str())
                .bind(seq as i64)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores the blob `id` read from `bytes` (to its end), unless it is stored already;
    /// true when this call stored it. The blob's row goes last: once it exists, so do all
    /// its chunks.
    pub async fn store_blob(
        &self,
        id: &ContextId,
        size: u64,
        bytes: &mut (impl tokio::io::AsyncRead + Unpin),
    ) -> StoreResult<bool> {
        use tokio::io::AsyncReadExt;
        if self.blob_bytes(id).await?.is_some() {
            return Ok(false);
        }
        let mut seq = 0i64;
        loop {
            let mut tx = self.write_tx().await?;
            for _ in 0..CHUNKS_PER_TRANSACTION {
                let mut chunk = Vec::with_capacity(CHUNK_BYTES);
                (&mut *bytes)
                    .take(CHUNK_BYTES as u64)
                    .read_to_end(&mut chunk)
                    .await
                    .map_err(|e| StoreError::Task(format!("reading the upload: {e}")))?;
                if chunk.is_empty() {
                    insert_blob_row(&mut tx, id, size).await?;
                    tx.commit().await?;
                    return Ok(true);
                }
                insert_chunk(&mut tx, id, seq, chunk).await?;
                seq += 1;
            }
            tx.commit().await?;
        }
    }

    /// Records an upload for `owner`; true when the key did not have it yet. An upload
    /// of the same bytes again takes the new format and description (and name, if given).
    pub async fn put_context(
        &self,
        owner: Option<KeyId>,
        entry: &ContextEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE contexts SET format = $1, description = $2, name = COALESCE($3, name) \
             WHERE owner_key = $4 AND id = $5",
        )
        .bind(entry.format.as_str())
        .bind(&entry.description)
        .bind(entry.name.as_deref())
        .bind(owner_key(owner))
        .bind(entry.id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO contexts (id, owner_key, format, bytes, description, name, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(entry.id.as_str())
            .bind(owner_key(owner))
            .bind(entry.format.as_str())
            .bind(entry.bytes as i64)
            .bind(&entry.description)
            .bind(entry.name.as_deref())
            .bind(entry.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(updated == 0)
    }

    pub async fn get_context(
        &self,
        owner: Option<KeyId>,
        id: &ContextId,
    ) -> StoreResult<Option<ContextEntry>> {
        let row = sqlx::query("SELECT * FROM contexts WHERE owner_key = $1 AND id = $2")
            .bind(owner_key(owner))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// The key's uploads, newest first.
    pub async fn list_contexts(
        &self,
        owner: Option<KeyId>,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<ContextEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM contexts WHERE owner_key = $1 \
             ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        )
        .bind(owner_key(owner))
        .bind(limit as i64)
        .bind(offset as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Forgets the key's upload; its bytes go too unless another key's upload or a run
    /// still refers to them. True when the key had it.
    pub async fn delete_context(&self, owner: Option<KeyId>, id: &ContextId) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM contexts WHERE owner_key = $1 AND id = $2")
            .bind(owner_key(owner))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let unused = "NOT EXISTS (SELECT 1 FROM contexts WHERE id = $1) \
                      AND NOT EXISTS (SELECT 1 FROM runs WHERE context_id = $1)";
        sqlx::query(&format!(
            "DELETE FROM context_blobs WHERE id = $1 AND {unused}"
        ))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM context_chunks WHERE blob_id = $1 AND {unused}"
        ))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// What the run's REPL is to be given.
    pub async fn load_context(&self, id: RunId) -> StoreResult<StoredContext> {
        let row = sqlx::query(&format!("{CONTEXT_OF_RUN} WHERE r.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(StoredContext::Empty),
            Some(row) => stored_from_row(&row),
        }
    }

    /// The contexts of a session's turns before `turn`, in order (to rebuild a lost
    /// namespace).
    pub async fn session_contexts(
        &self,
        id: RunId,
        turn: u32,
    ) -> StoreResult<Vec<(u32, StoredContext)>> {
        let rows = sqlx::query(&format!(
            "{CONTEXT_OF_RUN} WHERE r.session_id = $1 AND r.turn < $2 ORDER BY r.turn"
        ))
        .bind(id.to_string())
        .bind(turn as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<i64, _>("turn")? as u32, stored_from_row(row)?)))
            .collect()
    }
}

/// Stores an inline context's bytes (inside the caller's transaction) unless they are
/// stored already.
pub(super) async fn put_inline(
    conn: &mut AnyConnection,
    id: &ContextId,
    json: &str,
) -> StoreResult<()> {
    let stored: Option<i64> = sqlx::query_scalar("SELECT bytes FROM context_blobs WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    if stored.is_some() {
        return Ok(());
    }
    // Chunks are cut at byte boundaries: a blob is bytes, not text.
    for (seq, chunk) in json.as_bytes().chunks(CHUNK_BYTES).enumerate() {
        insert_chunk(conn, id, seq as i64, chunk.to_vec()).await?;
    }
    insert_blob_row(conn, id, json.len() as u64).await
}

async fn insert_chunk(
    conn: &mut AnyConnection,
    id: &ContextId,
    seq: i64,
    data: Vec<u8>,
) -> StoreResult<()> {
    // A chunk left by an upload that died halfway holds the same bytes: keep it.
    sqlx::query(
        "INSERT INTO context_chunks (blob_id, seq, data) VALUES ($1, $2, $3) \
         ON CONFLICT (blob_id, seq) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(seq)
    .bind(data)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_blob_row(conn: &mut AnyConnection, id: &ContextId, bytes: u64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO context_blobs (id, bytes, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(bytes as i64)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

fn entry_from_row(row: &AnyRow) -> StoreResult<ContextEntry> {
    let id: String = row.try_get("id")?;
    let format: String = row.try_get("format")?;
    Ok(ContextEntry {
        id: ContextId::parse(&id)
            .ok_or_else(|| StoreError::Corrupt(format!("context id {id:?}")))?,
        format: ContextFormat::parse(&format)
            .ok_or_else(|| StoreError::Corrupt(format!("context format {format:?}")))?,
        bytes: row.try_get::<i64, _>("bytes")? as u64,
        description: row.try_get("description")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn stored_from_row(row: &AnyRow) -> StoreResult<StoredContext> {
    let id: Option<String> = row.try_get("context_id")?;
    let Some(id) = id else {
        let legacy: Option<String> = row.try_get("context")?;
        return Ok(legacy.map_or(StoredContext::Empty, StoredContext::Legacy));
    };
    let format: Option<String> = row.try_get("context_format")?;
    let corrupt = || StoreError::Corrupt(format!("the context reference {id:?}"));
    let reference = ContextRef {
        id: ContextId::parse(&id).ok_or_else(corrupt)?,
        format: format
            .as_deref()
            .and_then(ContextFormat::parse)
            .ok_or_else(corrupt)?,
        description: row
            .try_get::<Option<String>, _>("context_description")?
            .unwrap_or_default(),
    };
    let small = row.try_get("small")?;
    Ok(StoredContext::Blob { reference, small })
}
