//! Scratch directories: a run's REPL works in `<RLM_SCRATCH_DIR>/<run id>`, a session's in
//! `<RLM_SCRATCH_DIR>/session-<id>`. A REPL removes its own when it ends; `sweep` removes
//! those whose REPL died with an earlier server process.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::domain::RunId;
use crate::store::{RunRecord, Store, StoreResult};

const SESSION_PREFIX: &str = "session-";

/// Where `run`'s REPL works: its own directory, or its session's, shared by every turn.
pub fn run_dir(root: &Path, run: &RunRecord) -> PathBuf {
    match run.session_id {
        Some(session) => root.join(format!("{SESSION_PREFIX}{session}")),
        None => root.join(run.id.to_string()),
    }
}

/// Removes the scratch directories of runs no worker holds any more (ended, handed back,
/// abandoned by a dead worker, or unknown to the database) and of sessions no longer open.
/// Run at start-up, when no REPL of this process exists yet. An open session keeps its
/// files: its next turn gets a fresh REPL, but finds what earlier turns wrote. Runs held
/// by another node sharing this directory keep theirs. Names that are neither a run nor a
/// session are left alone. Returns how many directories were removed.
pub async fn sweep(store: &Store, root: &Path) -> StoreResult<usize> {
    let held: HashSet<RunId> = store.held_runs().await?.into_iter().collect();
    let open: HashSet<RunId> = store.open_sessions().await?.into_iter().collect();
    let Ok(mut entries) = tokio::fs::read_dir(root).await else {
        return Ok(0);
    };
    let mut removed = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = match name.strip_prefix(SESSION_PREFIX) {
            Some(session) => session.parse().is_ok_and(|id| !open.contains(&id)),
            None => name.parse().is_ok_and(|id| !held.contains(&id)),
        };
        if !stale {
            continue;
        }
        match tokio::fs::remove_dir_all(entry.path()).await {
            Ok(()) => removed += 1,
            Err(error) => tracing::warn!(%error, directory = %entry.path().display(),
                                         "could not remove a stale scratch directory"),
        }
    }
    Ok(removed)
}
