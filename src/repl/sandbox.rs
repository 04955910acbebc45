//! How a REPL child is confined: an empty environment, its own scratch directory, its own
//! process group (so a timeout kills everything it started) and resource limits.

use std::io;
use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use super::{landlock, seccomp};
use crate::config::SandboxConfig;

/// Environment passed to the child. Nothing else, and certainly no API key, crosses over.
/// OpenBLAS tuning variables are kept because some CPUs need them for numpy to work.
const PASSED_THROUGH: &[&str] = &["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ"];

pub fn command(config: &SandboxConfig, workdir: &Path, stderr_log: std::fs::File) -> Command {
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
    let limits = ResourceLimits {
        memory: config.memory_bytes,
        file_size: config.max_file_bytes,
        open_files: config.max_open_files,
    };
    // Built before the fork: the child only hands them to the kernel.
    let filter = seccomp::network_filter();
    let files = landlock::Rules::new(&config.program, workdir);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (setrlimit, prctl), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            limits.apply()?;
            // Best effort: a kernel (or container profile) without Landlock or seccomp
            // still runs the REPL; the start-up probe reports what was enforced.
            let _ = files.apply();
            let _ = seccomp::install(&filter);
            Ok(())
        });
    }
    cmd
}

#[derive(Clone, Copy)]
struct ResourceLimits {
    memory: u64,
    file_size: u64,
    open_files: u64,
}

impl ResourceLimits {
    fn apply(self) -> io::Result<()> {
        set_limit(libc::RLIMIT_AS, self.memory)?;
        set_limit(libc::RLIMIT_FSIZE, self.file_size)?;
        set_limit(libc::RLIMIT_NOFILE, self.open_files)?;
        set_limit(libc::RLIMIT_CORE, 0)?;
        drop_capabilities();
        // SAFETY: plain prctl calls with constant arguments.
        unsafe {
            // Never gain privileges through setuid binaries.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // If the server dies, so does its REPL.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Empties the capability bounding set, so that even a child running as root holds no
/// capabilities after exec: it cannot ptrace or read the server's /proc files.
/// Without CAP_SETPCAP (not root) there is nothing to drop and the calls fail harmlessly.
fn drop_capabilities() {
    for capability in 0..64 {
        // SAFETY: prctl with plain integer arguments.
        unsafe {
            libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0);
        }
    }
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
