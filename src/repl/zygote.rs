//! `rlmd zygote`: the process REPLs are forked from. It boots Python and loads the prelude
//! once; then, for each REPL the server asks for, it forks a child that confines itself
//! (`sandbox::confine`, every step or it dies) and serves its pipe with the Python already
//! warm, so a REPL starts in about a millisecond instead of tens. The zygote never runs
//! model code. It is single-threaded (fork needs that), reaps its children and reports
//! their ends, and kills a child's process group only while the child is unreaped, so a
//! kill can never reach a recycled pid. It dies with the server, and its children with it.
//!
//! The control socket (its fd 0, a `SOCK_SEQPACKET` pair with the server) carries one JSON
//! message per packet; a spawn request comes with the child's pipe ends and log as fds.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use pyo3::prelude::*;
use serde::{Deserialize, Serialize};

use super::{child, fdpass, sandbox, seccomp, sweep};

/// What the server asks of the zygote.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Fork a REPL confined by `confinement`; the packet carries four fds: the child's
    /// stdin (read end), stdout (write end), stderr (its log) and its end of the
    /// descriptor channel.
    Spawn {
        id: u64,
        confinement: sandbox::Confinement,
    },
    /// Kill the child's process group (if it has not been reaped yet).
    Kill { id: u64 },
    /// Kill every process of `uid` (from a process of that user, so that `kill(-1)`
    /// reaches exactly them).
    Sweep { id: u64, uid: u32 },
}

/// What the zygote tells the server.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    Spawned {
        id: u64,
        pid: i32,
    },
    /// The fork itself failed (no child at all).
    Failed {
        id: u64,
        error: String,
    },
    /// The child ended and was reaped; `status` is the raw wait status.
    Exited {
        id: u64,
        status: i32,
    },
    /// A sweep was made: `clean` says whether no process of the user is left.
    Swept {
        id: u64,
        clean: Result<bool, String>,
    },
}

const CONTROL: RawFd = 0;

/// Runs the zygote until the server closes the control socket. Returns the exit code.
pub fn run() -> i32 {
    // Its memory holds nothing secret, but a REPL of the same user (no separate users)
    // must not be able to trace the process every REPL comes from.
    // Orphans of REPLs (daemons whose parent died) are reparented to the zygote, which
    // reaps them: no zombie is left to a pid 1 that may never reap.
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let children_ended = match block_sigchld() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("rlmd zygote: cannot watch its children: {e}");
            return 2;
        }
    };
    // The loader has read it (see `forkserver::start`); model code sees the environment
    // every REPL is given, without it. Still single-threaded here.
    std::env::remove_var("LD_BIND_NOW");
    pyo3::prepare_freethreaded_python();
    let outcome = Python::with_gil(|py| -> PyResult<()> {
        let prelude = child::load_prelude(py)?;
        prelude.call_method0("_warm_up")?;
        // What the zygote built is never collected: a child's collections leave those
        // pages alone, so fewer of them are copied on write.
        py.import("gc")?.call_method0("freeze")?;
        // The seccomp filters are installed here, once, and every REPL inherits them
        // (installing them per child costs a compilation each). A child that must be
        // filtered and is not dies (fail closed): see `sandbox::confine`.
        if seccomp::available() {
            match seccomp::filters().and_then(|f| seccomp::install(&f).map_err(|e| e.to_string())) {
                Ok(()) => {}
                Err(e) => eprintln!("rlmd zygote: no seccomp filter: {e}"),
            }
        }
        let mut zygote = Zygote {
            live: HashMap::new(),
        };
        loop {
            let (control_ready, children_ready) = wait_for(children_ended.as_raw_fd())?;
            if children_ready {
                drain(children_ended.as_raw_fd());
                zygote.reap();
            }
            if control_ready {
                let mut fds = Vec::new();
                let mut buffer = vec![0u8; 64 * 1024];
                let n = fdpass::receive(CONTROL, &mut buffer, &mut fds)?;
                if n == 0 {
                    // The server is gone: so is every REPL.
                    zygote.kill_all();
                    return Ok(());
                }
                match serde_json::from_slice::<Request>(&buffer[..n]) {
                    Ok(Request::Spawn { id, confinement }) => {
                        zygote.spawn(py, &prelude, id, &confinement, fds)
                    }
                    Ok(Request::Kill { id }) => zygote.kill(id),
                    Ok(Request::Sweep { id, uid }) => {
                        let clean = zygote.sweep(uid);
                        notify(&Notice::Swept { id, clean });
                    }
                    Err(e) => eprintln!("rlmd zygote: a request it cannot read: {e}"),
                }
            }
        }
    });
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rlmd zygote: {e}");
            3
        }
    }
}

struct Zygote {
    /// Children not yet reaped: pid -> the server's id for it.
    live: HashMap<i32, u64>,
}

impl Zygote {
    fn spawn(
        &mut self,
        py: Python<'_>,
        prelude: &Bound<'_, pyo3::types::PyModule>,
        id: u64,
        confinement: &sandbox::Confinement,
        fds: Vec<OwnedFd>,
    ) {
        let [stdin, stdout, stderr, channel]: [OwnedFd; 4] = match fds.try_into() {
            Ok(fds) => fds,
            Err(_) => {
                let error = "a spawn request without its four descriptors".to_string();
                return notify(&Notice::Failed { id, error });
            }
        };
        // SAFETY: the zygote is single-threaded, and Python is told of the fork around it
        // as os.fork() does.
        let pid = unsafe {
            pyo3::ffi::PyOS_BeforeFork();
            let pid = libc::fork();
            if pid == 0 {
                pyo3::ffi::PyOS_AfterFork_Child();
            } else {
                pyo3::ffi::PyOS_AfterFork_Parent();
            }
            pid
        };
        if pid == 0 {
            let fds = [
                stdin.as_raw_fd(),
                stdout.as_raw_fd(),
                stderr.as_raw_fd(),
                channel.as_raw_fd(),
            ];
            let code = become_repl(py, prelude, fds, confinement);
            // SAFETY: ends the child without running the zygote's exit handlers.
            unsafe { libc::_exit(code) };
        }
        if pid < 0 {
            let error = io::Error::last_os_error().to_string();
            return notify(&Notice::Failed { id, error });
        }
        self.live.insert(pid, id);
        notify(&Notice::Spawned { id, pid });
    }

    fn kill(&self, id: u64) {
        if let Some((&pid, _)) = self.live.iter().find(|(_, &i)| i == id) {
            // SAFETY: `pid` is an unreaped child: neither it nor its group id can have
            // been reused.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    fn kill_all(&self) {
        for &id in self.live.values() {
            self.kill(id);
        }
    }

    /// Kills every process of `uid`; whether none is left (see `sweep`). Made from the
    /// zygote, which is small, rather than from the server; between its rounds the zygote
    /// reaps whatever ended (the REPL's own zombies included).
    fn sweep(&mut self, uid: u32) -> Result<bool, String> {
        sweep::sweep(uid, || self.reap())
    }

    /// Reaps every child that ended and reports it.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if let Some(id) = self.live.remove(&pid) {
                notify(&Notice::Exited { id, status });
            }
        }
    }
}

/// In the forked child: takes its descriptors, confines itself, and serves its pipe.
fn become_repl(
    py: Python<'_>,
    prelude: &Bound<'_, pyo3::types::PyModule>,
    [stdin, stdout, stderr, channel]: [RawFd; 4],
    confinement: &sandbox::Confinement,
) -> i32 {
    // SAFETY: dup2 and close_range on descriptors this process owns; afterwards it holds
    // its pipe, its log and its descriptor channel, and nothing of the zygote's (the
    // control socket included).
    let taken = unsafe {
        libc::dup2(stdin, 0) >= 0
            && libc::dup2(stdout, 1) >= 0
            && libc::dup2(stderr, 2) >= 0
            && libc::dup2(channel, child::CONTEXT_CHANNEL) >= 0
            && libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) == 0
    };
    if !taken {
        return 120;
    }
    if let Err(step) = sandbox::confine(confinement) {
        sandbox::report_failed_step(&step);
        return 121;
    }
    child::serve_forked(py, prelude, &PathBuf::from(&confinement.workdir))
}

fn notify(notice: &Notice) {
    let payload = serde_json::to_vec(notice).expect("notices serialize");
    if let Err(e) = fdpass::send(CONTROL, &payload, &[]) {
        eprintln!("rlmd zygote: cannot reach the server: {e}");
    }
}

/// Blocks SIGCHLD (children inherit an unblocked mask again in `confine`) and returns a
/// signalfd that becomes readable when a child ends.
fn block_sigchld() -> io::Result<OwnedFd> {
    // SAFETY: sigset operations on a local set, then sigprocmask and signalfd with it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Waits until the control socket or the children's signalfd is ready (without the GIL:
/// the zygote has no other thread, but Python need not know it sleeps).
fn wait_for(children: RawFd) -> PyResult<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: CONTROL,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: children,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: poll on two valid pollfd structures.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if ready >= 0 {
            return Ok((fds[0].revents != 0, fds[1].revents != 0));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error.into());
        }
    }
}

/// Empties the signalfd (one read per pending signal).
fn drain(fd: RawFd) {
    let mut info = [0u8; 128];
    // SAFETY: reads into a buffer of the size of a signalfd_siginfo.
    while unsafe { libc::read(fd, info.as_mut_ptr().cast(), info.len()) } > 0 {}
}
