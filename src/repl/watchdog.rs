//! Bounds on a REPL's whole process tree that no per-process limit gives: the memory of
//! all its processes together and the bytes and files in its scratch directory. One thread
//! of the server looks at every live REPL a few times a second; a REPL over a bound has
//! every process of its user killed, and the server tells the model why.
//!
//! This is a check at intervals, not a hard ceiling: between two looks a REPL can go over
//! by what it manages to allocate or write in that time (each process is still held to
//! RLIMIT_AS and each file to RLIMIT_FSIZE, and processes to RLIMIT_NPROC).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::forkserver::Zygote;
use super::{identity, procfs};

const MEMORY_EVERY: Duration = Duration::from_millis(200);
const DISK_EVERY: Duration = Duration::from_secs(1);

/// Why the watchdog stopped a REPL, once it has.
pub type Verdict = Arc<Mutex<Option<String>>>;

struct Watched {
    memory_bytes: u64,
    disk_bytes: u64,
    max_files: u64,
    scratch: PathBuf,
    verdict: Verdict,
    /// Stops the REPL's processes (from a process of its user).
    zygote: Arc<Zygote>,
}

#[derive(Default)]
struct Registry {
    repls: Mutex<HashMap<u32, Watched>>,
    wake: Condvar,
}

/// A REPL under watch; dropping it ends the watch.
pub struct Watch {
    uid: u32,
    pub verdict: Verdict,
}

impl Watch {
    pub fn start(
        uid: u32,
        memory_bytes: u64,
        disk_bytes: u64,
        max_files: u64,
        scratch: &Path,
        zygote: Arc<Zygote>,
    ) -> Self {
        let verdict = Verdict::default();
        let registry = registry();
        let watched = Watched {
            memory_bytes,
            disk_bytes,
            max_files,
            scratch: scratch.to_path_buf(),
            verdict: verdict.clone(),
            zygote,
        };
        lock(&registry.repls).insert(uid, watched);
        registry.wake.notify_one();
        Self { uid, verdict }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        lock(&registry().repls).remove(&self.uid);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    static THREAD: OnceLock<()> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Registry::default);
    THREAD.get_or_init(|| {
        std::thread::Builder::new()
            .name("rlmd-repl-watchdog".into())
            .spawn(|| watch_forever(REGISTRY.get().expect("set above")))
            .expect("the watchdog thread starts");
    });
    registry
}

fn watch_forever(registry: &Registry) {
    let mut last_disk_check = Instant::now();
    loop {
        {
            // Sleep while there is nothing to watch.
            let repls = lock(&registry.repls);
            let _unused = registry
                .wake
                .wait_while(repls, |repls| repls.is_empty())
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        std::thread::sleep(MEMORY_EVERY);
        let memory = memory_by_user();
        let check_disk = last_disk_check.elapsed() >= DISK_EVERY;
        if check_disk {
            last_disk_check = Instant::now();
        }
        let mut over = Vec::new();
        for (uid, watched) in lock(&registry.repls).iter() {
            if lock(&watched.verdict).is_some() {
                continue;
            }
            let resident = memory.get(uid).copied().unwrap_or(0);
            let verdict = if resident > watched.memory_bytes {
                Some(format!(
                    "its processes used more than {} MiB of memory together (RLM_REPL_MEMORY_MB)",
                    watched.memory_bytes >> 20
                ))
            } else if check_disk {
                disk_verdict(watched)
            } else {
                None
            };
            if let Some(verdict) = verdict {
                *lock(&watched.verdict) = Some(verdict);
                over.push((*uid, watched.zygote.clone()));
            }
        }
        for (uid, zygote) in over {
            if let Err(error) = identity::sweep(uid, &zygote) {
                tracing::error!(uid, %error, "could not stop a REPL over its bounds");
            }
        }
    }
}

fn disk_verdict(watched: &Watched) -> Option<String> {
    let usage = disk_usage(&watched.scratch, watched.max_files);
    if usage.files > watched.max_files {
        Some(format!(
            "it kept more than {} files in its scratch directory (RLM_REPL_MAX_FILES)",
            watched.max_files
        ))
    } else if usage.bytes > watched.disk_bytes {
        Some(format!(
            "its scratch directory grew past {} MiB (RLM_REPL_DISK_MB)",
            watched.disk_bytes >> 20
        ))
    } else {
        None
    }
}

/// Resident memory of every process, summed by real user id.
fn memory_by_user() -> HashMap<u32, u64> {
    let mut by_user = HashMap::new();
    for process in procfs::processes() {
        *by_user.entry(process.uid).or_insert(0) += process.resident_bytes;
    }
    by_user
}

#[derive(Default)]
struct DiskUsage {
    bytes: u64,
    files: u64,
}

/// Bytes allocated and entries under `root`, counting no further than `max_files + 1`
/// entries (a REPL that made millions of files must not make the server walk them all).
fn disk_usage(root: &Path, max_files: u64) -> DiskUsage {
    use std::os::unix::fs::MetadataExt;
    let mut usage = DiskUsage::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            usage.files += 1;
            if usage.files > max_files {
                return usage;
            }
            // symlink_metadata: a link is counted, never followed.
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            usage.bytes += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_bytes_and_stops_counting_files_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join("sub").join(i.to_string()), vec![1u8; 8192]).unwrap();
        }
        let usage = disk_usage(dir.path(), 100);
        assert_eq!(usage.files, 6);
        assert!(usage.bytes >= 5 * 8192, "{}", usage.bytes);
        assert_eq!(disk_usage(dir.path(), 3).files, 4);
    }
}
