//! This node's copies of contexts, as what a REPL is handed: an open, read-only
//! descriptor. A large context is a file of the cache directory, named by its id, written
//! once from the database and verified against its id; a small one (and a run's legacy or
//! empty context) is a sealed memory file, never written to disk. The database stays the
//! truth: a file that is missing (another node's upload, an evicted one) is fetched again.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{ContextFormat, ContextId, ContextRef};
use crate::store::{Store, StoredContext, CHUNK_BYTES};

/// Contexts up to this size are given as memory files rather than cached on disk.
const SMALL_BYTES: u64 = CHUNK_BYTES as u64;

/// A context as a REPL takes it: the descriptor it maps, and how to read it.
#[derive(Debug, Clone)]
pub struct ContextFile {
    pub fd: Arc<OwnedFd>,
    pub format: ContextFormat,
}

impl ContextFile {
    /// The context of a run that has none: `""`.
    pub fn empty() -> io::Result<Self> {
        memory_file(b"\"\"", ContextFormat::Json)
    }
}

/// A context ready for a run: its file, and the line that describes it to the model.
#[derive(Debug, Clone)]
pub struct OpenedContext {
    pub file: ContextFile,
    pub description: String,
}

#[derive(Clone)]
pub struct ContextCache {
    store: Store,
    dir: Arc<PathBuf>,
    /// Bytes of cached files above which the least recently used are removed.
    budget: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("context {0} is no longer stored")]
    Missing(ContextId),
    #[error("context {0} is corrupt in the database (its bytes do not hash to its id)")]
    Corrupt(ContextId),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the context cache: {0}")]
    Io(#[from] io::Error),
}

impl ContextCache {
    /// Uses `dir` (created, private to the server) and removes uploads a crash left there.
    pub fn new(store: Store, dir: PathBuf, budget: u64) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".part-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            store,
            dir: Arc::new(dir),
            budget,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A fresh path for bytes on their way in (removed at start if left behind).
    pub fn part_path(&self) -> PathBuf {
        self.dir.join(format!(".part-{:016x}", fastrand::u64(..)))
    }

    fn path_of(&self, id: &ContextId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    /// Makes `part` (whose bytes hash to `id`) the cached file of `id`.
    pub fn adopt(&self, part: &Path, id: &ContextId) -> io::Result<()> {
        let path = self.path_of(id);
        set_read_only(part)?;
        std::fs::rename(part, &path)?;
        self.evict_beyond_budget(&path);
        Ok(())
    }

    /// Removes this node's copy of `id` (its bytes were deleted).
    pub fn forget(&self, id: &ContextId) {
        let _ = std::fs::remove_file(self.path_of(id));
    }

    /// What a run is to be given as `context`.
    pub async fn open(&self, stored: &StoredContext) -> Result<OpenedContext, CacheError> {
        match stored {
            StoredContext::Empty => Ok(OpenedContext {
                file: ContextFile::empty()?,
                description: "a str of 0 characters in 0 lines".into(),
            }),
            StoredContext::Legacy(json) => {
                let description = ContextRef::of_json(json)
                    .map(|r| r.description)
                    .unwrap_or_else(|_| format!("a value of {} bytes", json.len()));
                Ok(OpenedContext {
                    file: memory_file(json.as_bytes(), ContextFormat::Json)?,
                    description,
                })
            }
            StoredContext::Blob { reference, small } => {
                let file = match small {
                    Some(bytes) => small_file(reference, bytes)?,
                    None => self.open_blob(reference).await?,
                };
                Ok(OpenedContext {
                    file,
                    description: reference.description.clone(),
                })
            }
        }
    }

    async fn open_blob(&self, reference: &ContextRef) -> Result<ContextFile, CacheError> {
        let id = &reference.id;
        let path = self.path_of(id);
        if let Ok(file) = File::open(&path) {
            // Recently used files are the last to be evicted.
            let _ = file.set_modified(SystemTime::now());
            return Ok(ContextFile {
                fd: Arc::new(file.into()),
                format: reference.format,
            });
        }
        let bytes = self
            .store
            .blob_bytes(id)
            .await?
            .ok_or_else(|| CacheError::Missing(id.clone()))?;
        if bytes <= SMALL_BYTES {
            let data = match bytes {
                0 => Vec::new(),
                _ => self
                    .store
                    .blob_chunk(id, 0)
                    .await?
                    .ok_or_else(|| CacheError::Missing(id.clone()))?,
            };
            return small_file(reference, &data);
        }
        self.fetch(id).await?;
        let file = File::open(&path)?;
        Ok(ContextFile {
            fd: Arc::new(file.into()),
            format: reference.format,
        })
    }

    /// Writes the blob `id` from the database into the cache, one chunk at a time.
    async fn fetch(&self, id: &ContextId) -> Result<(), CacheError> {
        let part = self.part_path();
        let result = async {
            let mut file = tokio::fs::File::create(&part).await?;
            let mut hasher = Sha256::new();
            let mut seq = 0;
            while let Some(chunk) = self.store.blob_chunk(id, seq).await? {
                hasher.update(&chunk);
                tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
                seq += 1;
            }
            file.sync_all().await?;
            if ContextId::from_digest(hasher.finalize().into()) != *id {
                return Err(CacheError::Corrupt(id.clone()));
            }
            self.adopt(&part, id)?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    /// Caches a large inline context now, so that the run that has it need not fetch it.
    pub fn put(&self, id: &ContextId, bytes: &[u8]) {
        if bytes.len() as u64 <= SMALL_BYTES || self.path_of(id).exists() {
            return;
        }
        let part = self.part_path();
        let written = File::create(&part)
            .and_then(|mut file| file.write_all(bytes))
            .and_then(|()| self.adopt(&part, id));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&part);
            tracing::warn!(%error, "could not cache a context (it will be fetched when used)");
        }
    }

    /// Removes the least recently used files (never `keep`) while the cache is over budget.
    /// A REPL that has a removed file open keeps it: only the name goes.
    fn evict_beyond_budget(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(self.dir.as_path()) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.budget {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// A blob of one chunk, checked against its id, as a memory file.
fn small_file(reference: &ContextRef, bytes: &[u8]) -> Result<ContextFile, CacheError> {
    if ContextId::from_digest(Sha256::digest(bytes).into()) != reference.id {
        return Err(CacheError::Corrupt(reference.id.clone()));
    }
    Ok(memory_file(bytes, reference.format)?)
}

fn set_read_only(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400))
}

/// A sealed memory file holding `bytes`: nobody, the REPL included, can change it.
fn memory_file(bytes: &[u8], format: ContextFormat) -> io::Result<ContextFile> {
    // SAFETY: memfd_create takes a NUL-terminated name; the descriptor it returns is owned.
    let fd = unsafe {
        let fd = libc::memfd_create(
            c"rlmd-context".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a descriptor this function owns.
    if unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::F_ADD_SEALS,
            seals,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(ContextFile {
        fd: Arc::new(file.into()),
        format,
    })
}
