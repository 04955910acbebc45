//! A user id of its own for every live REPL. The kernel then keeps REPLs apart without any
//! privilege in the REPL: a process may signal, trace or re-limit only processes of its own
//! user, so a REPL reaches neither the server (root) nor another run's REPL, and
//! RLIMIT_NPROC, which counts per user, caps the processes of exactly one REPL.
//!
//! When a REPL ends, every process of its user is killed (`kill(-1)` run as that user
//! reaches all of them, daemons that left the process group included), and only then is the
//! id handed out again. Ids are locked with `flock` on a file per id, so that servers on one
//! host never share one; a lock file says whether its id was left clean, and an id taken
//! over from a server that died is swept before it is used. A server keeps the ids it has
//! swept clean (still locked) for its next REPLs, so starting a REPL seldom touches more
//! than one lock file.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use super::forkserver::Zygote;

use crate::config::SandboxConfig;

/// A user id held for one REPL. Dropping it sweeps the id (in the background) and frees it.
pub struct ReplUid {
    uid: u32,
    held: Option<Held>,
    /// Sweeps are made by the zygote.
    zygote: Arc<Zygote>,
}

/// A locked id: its lock file (and the directory of lock files it belongs to).
struct Held {
    dir: PathBuf,
    uid: u32,
    lock: File,
}

/// Ids this process swept clean and still holds, ready for its next REPLs.
static KEPT: Mutex<Vec<Held>> = Mutex::new(Vec::new());

impl ReplUid {
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Takes a free id of the configured range, sweeping it first if its last holder did
    /// not leave it clean.
    pub fn acquire(config: &SandboxConfig, zygote: &Arc<Zygote>) -> io::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let range = config.uid_base..config.uid_base.saturating_add(config.uid_count);
        let kept = {
            let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
            let found = kept
                .iter()
                .position(|h| h.dir == config.uid_lock_dir && range.contains(&h.uid));
            found.map(|at| kept.swap_remove(at))
        };
        if let Some(held) = kept {
            mark(&held.lock, b"d")?;
            return Ok(Self {
                uid: held.uid,
                held: Some(held),
                zygote: zygote.clone(),
            });
        }
        std::fs::create_dir_all(&config.uid_lock_dir)?;
        let count = config.uid_count.max(1);
        let start = NEXT.fetch_add(1, Ordering::Relaxed);
        for offset in 0..count {
            let uid = config.uid_base + (start.wrapping_add(offset) % count);
            let path = config.uid_lock_dir.join(format!("{uid}.lock"));
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            // SAFETY: flock on an fd this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue; // held by this or another server
            }
            let mut state = [0u8; 1];
            let clean = file.read_at(&mut state, 0)? == 1 && state[0] == b'c';
            if !clean && !sweep(uid, zygote)? {
                continue; // something of that user will not die: leave the id alone
            }
            mark(&file, b"d")?;
            let dir = config.uid_lock_dir.clone();
            return Ok(Self {
                uid,
                held: Some(Held {
                    dir,
                    uid,
                    lock: file,
                }),
                zygote: zygote.clone(),
            });
        }
        Err(io::Error::other(format!(
            "all {count} REPL user ids (RLM_REPL_UIDS from RLM_REPL_UID_BASE={}) are in use",
            config.uid_base
        )))
    }
}

impl Drop for ReplUid {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            sweeper().send((held, self.zygote.clone())).ok();
        }
    }
}

/// Records in the lock file whether the id is clean (`c`) or in use (`d`).
fn mark(file: &File, state: &[u8; 1]) -> io::Result<()> {
    file.write_all_at(state, 0)
}

/// The thread that sweeps the ids of ended REPLs (a sweep forks and waits: kept off the
/// async runtime and out of `Drop`).
fn sweeper() -> &'static mpsc::Sender<(Held, Arc<Zygote>)> {
    static SWEEPER: OnceLock<mpsc::Sender<(Held, Arc<Zygote>)>> = OnceLock::new();
    SWEEPER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<(Held, Arc<Zygote>)>();
        std::thread::Builder::new()
            .name("rlmd-repl-sweeper".into())
            .spawn(move || {
                for (held, zygote) in receiver {
                    let uid = held.uid;
                    let swept = sweep(uid, &zygote)
                        .and_then(|clean| clean.then(|| mark(&held.lock, b"c")).transpose());
                    match swept {
                        // Clean: kept, still locked, for this server's next REPL.
                        Ok(Some(())) => KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(held),
                        // Dropping the lock frees the id; whoever takes it next sweeps it.
                        Ok(None) => {
                            tracing::error!(uid, "processes of a REPL user survive SIGKILL")
                        }
                        Err(error) => tracing::error!(uid, %error, "could not sweep a REPL user"),
                    }
                }
            })
            .expect("the sweeper thread starts");
        sender
    })
}

/// Kills every process of `uid`. True when none is left alive.
pub fn sweep(uid: u32, zygote: &Zygote) -> io::Result<bool> {
    // SAFETY: getuid cannot fail.
    if uid == 0 || uid == unsafe { libc::getuid() } {
        return Err(io::Error::other(format!(
            "user {uid} is root or the server's own: it is never swept"
        )));
    }
    zygote.sweep(uid)
}

/// Whether this process may give each REPL its own user id (root, or CAP_SETUID and
/// CAP_SETGID).
pub fn can_switch_users() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    const CAP_SETGID: u32 = 6;
    const CAP_SETUID: u32 = 7;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let needed = (1u64 << CAP_SETGID) | (1u64 << CAP_SETUID);
    effective & needed == needed
}
