//! How a REPL child is confined, in the order it is applied. Before the fork the server
//! takes a user id for the REPL, builds its Landlock ruleset and owns its scratch
//! directory; the child then, between fork and exec:
//!   1. becomes that user (done by `Command::uid`, before step 2), in its own process group,
//!      with an empty environment, in its scratch directory;
//!   2. marks every inherited file descriptor close-on-exec (it keeps only its pipes);
//!   3. takes its resource limits (address space, file size, open files, no core dumps,
//!      processes of its user);
//!   4. dies with the server (PDEATHSIG) and drops every capability;
//!   5. enforces Landlock (files, and signals and abstract sockets where the kernel scopes
//!      them) and then the seccomp filters (both need no_new_privs).
//!
//! Each step that the sandbox found available at start-up is applied or the REPL does not
//! start; nothing is skipped silently.

use std::io;
use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use super::identity::ReplUid;
use super::{landlock, seccomp, Sandbox};

/// Environment passed to the child. Nothing else, and certainly no API key, crosses over.
/// OpenBLAS tuning variables are kept because some CPUs need them for numpy to work.
const PASSED_THROUGH: &[&str] = &["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ"];

/// The command that starts a confined REPL child as `uid` (when the sandbox gives each REPL
/// its own user) in `workdir`.
pub fn command(
    sandbox: &Sandbox,
    uid: Option<&ReplUid>,
    workdir: &Path,
    stderr_log: std::fs::File,
) -> Result<Command, String> {
    let config = &sandbox.config;
    let mut cmd = Command::new(&config.program);
    cmd.arg("repl")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", workdir)
        .env("TMPDIR", workdir)
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .current_dir(workdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr_log))
        .process_group(0)
        .kill_on_drop(true);
    for name in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    if let Some(uid) = uid {
        cmd.uid(uid.uid()).gid(uid.uid());
    }
    let limits = ResourceLimits {
        memory: config.memory_bytes,
        file_size: config.disk_bytes,
        open_files: config.max_open_files,
        // Counted per user: a bound on this REPL only when it has a user of its own.
        processes: uid.map(|_| config.max_processes),
    };
    let features = sandbox.features;
    let mut ruleset = if features.landlock_abi > 0 {
        Some(landlock::ruleset(&config.program, workdir)?)
    } else {
        None
    };
    let filters = sandbox.filters.clone();
    // SAFETY: the closure runs between fork and exec and makes only system calls on
    // values prepared before the fork (the ruleset fd, the compiled filters).
    unsafe {
        cmd.pre_exec(move || {
            step(b"close-on-exec", keep_only_stdio())?;
            step(b"resource limits", limits.apply())?;
            step(b"capabilities", drop_privileges())?;
            if let Some(ruleset) = ruleset.take() {
                step(b"landlock", landlock::enforce(ruleset))?;
            }
            if let Some(filters) = &filters {
                step(b"seccomp", seccomp::install(filters))?;
            }
            Ok(())
        });
    }
    Ok(cmd)
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

/// Reports which confinement step failed on the child's stderr (the REPL's log, which the
/// server reads when a start fails): only the error number crosses back to `spawn`.
fn step(name: &[u8], result: io::Result<()>) -> io::Result<()> {
    if result.is_err() {
        let prefix = b"rlmd repl: sandbox step failed: ";
        // SAFETY: write(2) on the child's stderr with live buffers.
        unsafe {
            libc::write(2, prefix.as_ptr().cast(), prefix.len());
            libc::write(2, name.as_ptr().cast(), name.len());
            libc::write(2, b"\n".as_ptr().cast(), 1);
        }
    }
    result
}

/// Marks every descriptor above stdio close-on-exec, whatever the server had open.
fn keep_only_stdio() -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with constant arguments.
    let done = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct ResourceLimits {
    memory: u64,
    file_size: u64,
    open_files: u64,
    processes: Option<u64>,
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

/// Dies with the server, and holds no capability, whether the server runs as root or holds
/// capabilities as another user: it cannot ptrace or read the server's /proc files. With
/// every set empty (the ambient one empties with the permitted one) and no_new_privs, exec
/// gives nothing back, so the bounding set need not be touched.
fn drop_privileges() -> io::Result<()> {
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    clear_capabilities()?;
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

/// Kills a child's whole process group (the child and anything its code started).
pub fn kill_group(pid: u32) {
    // SAFETY: kill with a negative pid signals the group; a stale pid is harmless here
    // because the group id is the child's own pid, which we have not yet reaped.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
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
