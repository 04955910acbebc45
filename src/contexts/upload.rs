//! An upload, in constant memory whatever its size: streamed to a file of the cache, read
//! once to find its id and check it, stored in the database unless its bytes already are,
//! and kept as the cached file.

use std::path::Path;

use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::{scan, ContextCache, ContextFormat, Scanned};
use crate::store::CHUNK_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the context is larger than this server accepts ({0} bytes, RLM_MAX_CONTEXT_BYTES)")]
    TooLarge(u64),
    #[error("{0}")]
    Invalid(String),
    #[error("the upload was cut off: {0}")]
    Interrupted(String),
    #[error("storing the context failed: {0}")]
    Storage(String),
}

/// What was received: the id, size and description of the bytes, and whether the database
/// had them already (then nothing was stored twice).
#[derive(Debug)]
pub struct Received {
    pub scanned: Scanned,
    pub already_stored: bool,
}

/// Receives `body` as a context of `format`, refusing more than `max_bytes`.
pub async fn receive<S, B, E>(
    cache: &ContextCache,
    mut body: S,
    format: ContextFormat,
    max_bytes: u64,
) -> Result<Received, UploadError>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let part = cache.part_path();
    let spooled = async {
        let file = tokio::fs::File::create(&part).await.map_err(storage)?;
        let mut file = BufWriter::with_capacity(CHUNK_BYTES, file);
        let mut received = 0u64;
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| UploadError::Interrupted(e.to_string()))?;
            received += piece.as_ref().len() as u64;
            if received > max_bytes {
                return Err(UploadError::TooLarge(max_bytes));
            }
            file.write_all(piece.as_ref()).await.map_err(storage)?;
        }
        file.flush().await.map_err(storage)?;
        file.into_inner().sync_all().await.map_err(storage)
    }
    .await;
    let received = match spooled {
        Ok(()) => keep(cache, &part, format).await,
        Err(error) => Err(error),
    };
    // Adopted, the part is gone; otherwise it must go.
    let _ = tokio::fs::remove_file(&part).await;
    received
}

fn storage(error: std::io::Error) -> UploadError {
    UploadError::Storage(error.to_string())
}

/// Reads the spooled `part` once (id, check, description), stores its bytes unless they
/// are stored already, and makes it the cached file.
async fn keep(
    cache: &ContextCache,
    part: &Path,
    format: ContextFormat,
) -> Result<Received, UploadError> {
    let path = part.to_path_buf();
    let scanned = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        scan(file, format)
    })
    .await
    .map_err(|e| UploadError::Storage(e.to_string()))?
    .map_err(UploadError::Invalid)?;

    // The bytes are read again only if the database does not have them yet.
    let mut reader = tokio::fs::File::open(part).await.map_err(storage)?;
    let stored = cache
        .store()
        .store_blob(&scanned.id, scanned.bytes, &mut reader)
        .await
        .map_err(|e| UploadError::Storage(e.to_string()))?;
    cache.adopt(part, &scanned.id).map_err(storage)?;
    Ok(Received {
        scanned,
        already_stored: !stored,
    })
}
