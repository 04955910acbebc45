//! How a REPL child is confined, in the order it is applied. Before asking the zygote for
//! a REPL the server takes a user id for it and owns its scratch directory; the forked
//! child then, before it runs any Python of its own:
//!   1. holds only its pipe and its log (`zygote::become_repl`), in its own process group,
//!      with no signal blocked, in its scratch directory, with `HOME` and `TMPDIR` there;
//!   2. builds its Landlock ruleset (still as root, so every rule's path can be opened);
//!   3. becomes its user (no supplementary groups);
//!   4. takes its resource limits (address space, file size, open files, no core dumps,
//!      processes of its user);
//!   5. dies with the zygote, which dies with the server (PDEATHSIG), and drops every
//!      capability;
//!   6. enforces Landlock (files, and signals and abstract sockets where the kernel scopes
//!      them), and checks that it is under the seccomp filters, which the zygote installed
//!      on itself, once, for all its children (both need no_new_privs).
//!
//! Each step that the sandbox found available at start-up is applied or the REPL dies
//! before it serves its pipe; nothing is skipped silently.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::identity::ReplUid;
use super::{landlock, seccomp, Sandbox};

/// Environment of the zygote, and so of every REPL (plus `HOME` and `TMPDIR`, set per REPL).
/// Nothing else, and certainly no API key, crosses over.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("LANG", "C.UTF-8"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("PYTHONNOUSERSITE", "1"),
    ("PYTHONIOENCODING", "utf-8"),
    ("OMP_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
];

/// Passed through from the server's environment when set: OpenBLAS tuning variables,
/// which some CPUs need for numpy to work, and the time zone.
pub const PASSED_THROUGH: &[&str] = &["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ"];

/// Everything a forked child needs to confine itself, decided by the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Confinement {
    pub workdir: PathBuf,
    /// The REPL's own user, when the sandbox gives each REPL one.
    pub uid: Option<u32>,
    pub limits: ResourceLimits,
    /// Landlock's rules cover the program too (it is what runs).
    pub program: PathBuf,
    pub landlock: bool,
    pub seccomp: bool,
}

impl Confinement {
    pub fn of(sandbox: &Sandbox, uid: Option<&ReplUid>, workdir: &Path) -> Self {
        let config = &sandbox.config;
        Self {
            workdir: workdir.to_path_buf(),
            uid: uid.map(ReplUid::uid),
            limits: ResourceLimits {
                memory: config.memory_bytes,
                file_size: config.disk_bytes,
                open_files: config.max_open_files,
                // Counted per user: a bound on this REPL only when it has a user of its own.
                processes: uid.map(|_| config.max_processes),
            },
            program: config.program.clone(),
            landlock: sandbox.features.landlock_abi > 0,
            seccomp: sandbox.features.seccomp,
        }
    }
}

/// Applies `confinement` to the calling process (a child fresh from the zygote, single-
/// threaded). The error names the step that failed, and why.
pub fn confine(confinement: &Confinement) -> Result<(), String> {
    let c = confinement;
    step("process group", own_group_and_signals())?;
    step("scratch directory", std::env::set_current_dir(&c.workdir))?;
    let mut ruleset = if c.landlock {
        Some(landlock::ruleset(&c.program, &c.workdir).map_err(|e| format!("landlock: {e}"))?)
    } else {
        None
    };
    if let Some(uid) = c.uid {
        step("user", become_user(uid))?;
    }
    // The limit on address space counts what the zygote had mapped already: one below that
    // could not hold, and would leave the REPL unable to allocate anything.
    let mapped = mapped_bytes();
    if mapped >= c.limits.memory {
        return Err(format!(
            "resource limits: the REPL already maps {} MiB, at or above its memory limit of {} MiB (RLM_REPL_MEMORY_MB)",
            mapped >> 20,
            c.limits.memory >> 20
        ));
    }
    step("resource limits", c.limits.apply())?;
    step("capabilities", drop_privileges(c.uid.is_some()))?;
    if let Some(ruleset) = ruleset.take() {
        step("landlock", landlock::enforce(ruleset))?;
    }
    // Inherited from the zygote, which installed the filters once for all its children.
    if c.seccomp && !seccomp::filtered() {
        return Err("seccomp: the zygote could not install the filters".into());
    }
    Ok(())
}

fn step(name: &str, result: io::Result<()>) -> Result<(), String> {
    result.map_err(|e| format!("{name}: {e}"))
}

/// Says on the child's stderr (the REPL's log, which the server reads when a start fails)
/// which confinement step failed.
pub fn report_failed_step(step: &str) {
    let line = format!("rlmd repl: sandbox step failed: {step}\n");
    // SAFETY: write(2) on the child's stderr with a live buffer.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// The address space the calling process maps now (0 if /proc cannot say).
fn mapped_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf with a constant argument.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// The child leads its own process group (so its whole group can be killed) and blocks
/// no signal (the zygote blocks SIGCHLD to read it from a signalfd).
fn own_group_and_signals() -> io::Result<()> {
    // SAFETY: setpgid and sigprocmask on the calling process, with a local empty set.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Becomes `uid` (its group too, with no supplementary group), for real, effective and
/// saved ids alike.
fn become_user(uid: u32) -> io::Result<()> {
    // SAFETY: set*id calls in a single-threaded process (the forked child).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(uid, uid, uid) != 0
            || libc::setresuid(uid, uid, uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::geteuid() != uid || libc::getegid() != uid {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
    }
    Ok(())
}

/// A fresh scratch directory owned by the REPL's user (the parent directory, owned by the
/// server, holds the REPL's log and is only traversable).
pub fn prepare_workdir(workdir: &Path, uid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_dir_all(workdir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(workdir)?;
    if let Some(parent) = workdir.parent() {
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))?;
    }
    std::fs::set_permissions(workdir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(uid) = uid {
        std::os::unix::fs::chown(workdir, Some(uid), Some(uid))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ResourceLimits {
    pub memory: u64,
    pub file_size: u64,
    pub open_files: u64,
    pub processes: Option<u64>,
}

impl ResourceLimits {
    fn apply(self) -> io::Result<()> {
        set_limit(libc::RLIMIT_AS, self.memory)?;
        set_limit(libc::RLIMIT_FSIZE, self.file_size)?;
        set_limit(libc::RLIMIT_NOFILE, self.open_files)?;
        set_limit(libc::RLIMIT_CORE, 0)?;
        if let Some(processes) = self.processes {
            set_limit(libc::RLIMIT_NPROC, processes)?;
        }
        Ok(())
    }
}

/// Dies with the zygote (which dies with the server), and holds no capability, whether the
/// server runs as root or holds capabilities as another user: it cannot ptrace or read the
/// server's /proc files. With every set empty (the ambient one empties with the permitted
/// one) and no_new_privs, exec gives nothing back, so the bounding set need not be touched.
/// A REPL with a user of its own is made dumpable again (switching users cleared it), as an
/// exec'd program would be, so its own /proc files are its own.
fn drop_privileges(own_user: bool) -> io::Result<()> {
    // SAFETY: prctl and getppid with constant arguments.
    unsafe {
        let zygote = libc::getppid();
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The zygote may have died before the death signal was asked for.
        if libc::getppid() != zygote {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    clear_capabilities()?;
    // SAFETY: prctl with constant arguments.
    if own_user && unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Empties the calling process's effective, permitted and inheritable capabilities.
/// Switching from root to another user does that by itself, but a server that is not root
/// and holds capabilities (CAP_SETUID, CAP_KILL, ...) would hand them on to its REPLs and
/// its sweeps. Only system calls: safe between fork and exec.
pub fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let none = Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
    // Version 3 takes two words: capabilities 0-31 and 32-63.
    let data = [none; 2];
    // SAFETY: capset with a valid header and the two data words version 3 expects.
    let done = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the server's own memory and /proc files (environ, with the API keys) off limits
/// to other processes of the same user, REPL children included.
pub fn protect_server_process() {
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        tracing::warn!(
            "could not mark the server non-dumpable; REPL code may read its environment"
        );
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit with a valid pointer to a stack value.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The effective and permitted capability sets of the calling process.
    fn capabilities() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let read = |name: &str| {
            let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
            u64::from_str_radix(line.trim(), 16).unwrap()
        };
        (read("CapEff:"), read("CapPrm:"))
    }

    #[test]
    fn a_user_that_kept_capabilities_loses_them_all() {
        if !super::super::identity::can_switch_users() {
            eprintln!("skipped: switching users needs root or CAP_SETUID");
            return;
        }
        // In a thread of its own, which becomes another user but keeps its capabilities,
        // as a server that is not root does: clear_capabilities must leave it none.
        let outcome = std::thread::spawn(|| {
            // SAFETY: raw set*id calls on this thread only (glibc's wrappers would change
            // every thread of the test process).
            unsafe {
                libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
                assert_eq!(
                    libc::syscall(libc::SYS_setresuid, 60_993, 60_993, 60_993),
                    0
                );
            }
            let kept = capabilities().1;
            clear_capabilities().unwrap();
            (kept, capabilities())
        })
        .join()
        .unwrap();
        let (kept, after) = outcome;
        assert_ne!(
            kept, 0,
            "the thread kept capabilities across the user switch"
        );
        assert_eq!(after, (0, 0));
    }
}
