//! What the sandbox can enforce on this host, found once at start-up, and whether REPLs
//! may start at all: in `strict` mode (the default) a REPL never starts without every
//! confinement its safety rests on; `best_effort` is the operator's explicit choice to run
//! with what the host has. Either way, what is found available is applied to every REPL.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde_json::{json, Value};

use super::seccomp;
use super::{identity, landlock};
use crate::config::{SandboxConfig, SandboxMode};

/// The confinements this host offers.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// Landlock ABI version (0: none). From 6 on it also scopes signals and abstract sockets.
    pub landlock_abi: i64,
    pub seccomp: bool,
    /// Each REPL runs as a user of its own (the server may switch users).
    pub separate_users: bool,
}

pub struct Sandbox {
    pub config: SandboxConfig,
    pub features: Features,
    /// Why REPLs may not start, if they may not.
    refusal: RwLock<Option<String>>,
    /// What is missing, with the reason.
    missing: Vec<String>,
    /// Where REPLs are forked from.
    pub zygote: Arc<super::forkserver::Zygote>,
}

impl Sandbox {
    pub fn prepare(config: SandboxConfig) -> Self {
        let mut missing = Vec::new();
        let landlock_abi = landlock::kernel_abi();
        if landlock_abi == 0 {
            missing
                .push("landlock: this kernel has no Landlock (Linux 5.13+ with it enabled)".into());
        }
        // The zygote builds and installs the filters; here they are only proved to build.
        let seccomp = if seccomp::available() {
            match seccomp::filters() {
                Ok(_) => true,
                Err(error) => {
                    missing.push(format!("seccomp: {error}"));
                    false
                }
            }
        } else {
            missing.push("seccomp: this kernel cannot filter system calls".into());
            false
        };
        let separate_users = match users_unavailable(&config) {
            None => true,
            Some(why) => {
                missing.push(format!("separate_users: {why}"));
                false
            }
        };
        let refusal = (config.mode == SandboxMode::Strict && !missing.is_empty()).then(|| {
            format!(
                "the REPL sandbox cannot confine code on this host ({}); set RLM_SANDBOX=best_effort to run REPLs without what is missing",
                missing.join("; ")
            )
        });
        Self {
            features: Features {
                landlock_abi,
                seccomp,
                separate_users,
            },
            refusal: RwLock::new(refusal),
            missing,
            zygote: Arc::new(super::forkserver::Zygote::new(config.program.clone())),
            config,
        }
    }

    /// Why REPLs may not start, if they may not.
    pub fn refusal(&self) -> Option<String> {
        self.refusal
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops every REPL from starting (the self-check found a confinement not enforced).
    pub fn refuse(&self, why: String) {
        *self.refusal.write().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// What this sandbox applies, for the log and `/readyz`.
    pub fn report(&self) -> Value {
        json!({
            "mode": self.config.mode.as_str(),
            "landlock_abi": self.features.landlock_abi,
            "landlock_scopes": self.features.landlock_abi >= 6,
            "seccomp": self.features.seccomp,
            "separate_users": self.features.separate_users,
            "missing": self.missing,
            "limits": {
                "memory_mb": self.config.memory_bytes >> 20,
                "disk_mb": self.config.disk_bytes >> 20,
                "max_files": self.config.max_files,
                "max_processes": self.config.max_processes,
                "open_files": self.config.max_open_files,
                "repls_per_tree": self.config.max_repls_per_tree,
            },
        })
    }
}

/// Why REPLs cannot run as users of their own here, if they cannot.
fn users_unavailable(config: &SandboxConfig) -> Option<String> {
    if !identity::can_switch_users() {
        return Some(
            "the server can not switch users (run it as root, e.g. in its container, or give it CAP_SETUID and CAP_SETGID)".into(),
        );
    }
    if config.uid_count == 0 || config.uid_base == 0 {
        return Some("RLM_REPL_UID_BASE and RLM_REPL_UIDS must be above 0".into());
    }
    if config
        .uid_base
        .checked_add(config.uid_count)
        .is_none_or(|end| end > 0xFFFF_FFFE)
    {
        return Some("RLM_REPL_UID_BASE + RLM_REPL_UIDS is past the largest user id".into());
    }
    // SAFETY: getuid cannot fail.
    let server = unsafe { libc::getuid() };
    if (config.uid_base..config.uid_base.saturating_add(config.uid_count)).contains(&server) {
        return Some(format!(
            "the server's own user ({server}) is in the REPL range (RLM_REPL_UID_BASE, RLM_REPL_UIDS)"
        ));
    }
    for (name, dir) in [
        ("RLM_SCRATCH_DIR", &config.scratch_root),
        ("RLM_REPL_UID_LOCK_DIR", &config.uid_lock_dir),
    ] {
        if let Some(why) = not_ours(dir) {
            return Some(format!("{name} ({}) {why}", dir.display()));
        }
    }
    closed_ancestor(&config.scratch_root).map(|dir| {
        format!(
            "REPL users cannot reach RLM_SCRATCH_DIR ({}): {} is not searchable by others (chmod o+x)",
            config.scratch_root.display(),
            dir
        )
    })
}

/// Why the server cannot trust `dir` (made if missing) with REPL files or user-id locks:
/// someone else owns it, or others may write in it.
fn not_ours(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if let Err(error) = std::fs::create_dir_all(dir) {
        return Some(format!("cannot be created: {error}"));
    }
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(error) => return Some(format!("cannot be read: {error}")),
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        return Some(format!("is not a directory of the server's user ({me})"));
    }
    (meta.mode() & 0o022 != 0).then(|| "may be written by other users (chmod go-w)".to_string())
}

/// The first existing ancestor of `path` (itself included) that other users cannot enter.
fn closed_ancestor(path: &Path) -> Option<String> {
    path.ancestors()
        .filter_map(|dir| Some((dir, std::fs::metadata(dir).ok()?)))
        .find(|(_, meta)| meta.permissions().mode() & 0o001 == 0)
        .map(|(dir, _)| dir.display().to_string())
}
