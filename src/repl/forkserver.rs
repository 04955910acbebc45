//! The server's side of the zygote: starts it (again, if it died), asks it for REPLs and
//! learns how they end. One thread per zygote starts it (so that its death signal is tied
//! to a thread that lives as long as it does) and then reads its notices.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::fdpass;
use super::sandbox::{self, Confinement};
use super::zygote::{Notice, Request};

const ZYGOTE_ENDED: &str = "the REPL zygote ended, and the REPL with it";

/// How a forked REPL ended.
#[derive(Debug, Clone)]
pub enum Exit {
    /// Its raw wait status.
    Status(i32),
    /// No status can be known: the fork failed, or the zygote is gone (and its REPLs
    /// with it).
    Lost(String),
}

/// Where REPLs come from; starts its zygote on first use.
pub struct Zygote {
    program: PathBuf,
    running: Mutex<Option<Arc<Running>>>,
}

struct Running {
    control: OwnedFd,
    alive: AtomicBool,
    /// The REPLs not yet reported ended, by id.
    children: Mutex<HashMap<u64, watch::Sender<Option<Exit>>>>,
    /// Sweeps asked for and not yet answered, by id.
    sweeps: Mutex<HashMap<u64, std::sync::mpsc::Sender<Result<bool, String>>>>,
}

/// One REPL asked of the zygote. Dropping it kills the REPL's process group.
pub struct Forked {
    id: u64,
    running: Arc<Running>,
    exit: watch::Receiver<Option<Exit>>,
}

impl Zygote {
    pub fn new(program: PathBuf) -> Self {
        Self {
            program,
            running: Mutex::new(None),
        }
    }

    /// Asks for a REPL confined by `confinement`, with `fds` as its stdin, stdout, stderr
    /// and descriptor channel. Returns at once: the child confines itself and boots in the
    /// background.
    pub fn spawn(&self, confinement: &Confinement, fds: [OwnedFd; 4]) -> io::Result<Forked> {
        let running = self.running()?;
        let id = next_id();
        let (sender, exit) = watch::channel(None);
        running.lock().insert(id, sender);
        let request = Request::Spawn {
            id,
            confinement: confinement.clone(),
        };
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        if let Err(error) = running.send(&request, &raw) {
            running.lock().remove(&id);
            return Err(error);
        }
        Ok(Forked { id, running, exit })
    }

    /// Kills every process of `uid` (the zygote forks a process of that user to do it),
    /// waiting for it to be done. Whether none is left.
    pub fn sweep(&self, uid: u32) -> io::Result<bool> {
        let running = self.running()?;
        let id = next_id();
        let (sender, answer) = std::sync::mpsc::channel();
        lock(&running.sweeps).insert(id, sender);
        if let Err(error) = running.send(&Request::Sweep { id, uid }, &[]) {
            lock(&running.sweeps).remove(&id);
            return Err(error);
        }
        match answer.recv_timeout(Duration::from_secs(10)) {
            Ok(found) => found.map_err(io::Error::other),
            Err(_) => Err(io::Error::other("the REPL zygote did not sweep in time")),
        }
    }

    /// The zygote, started if there is none or it died.
    fn running(&self) -> io::Result<Arc<Running>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(zygote) = running.as_ref().filter(|z| z.alive.load(Ordering::Acquire)) {
            return Ok(zygote.clone());
        }
        let zygote = start(&self.program)?;
        *running = Some(zygote.clone());
        Ok(zygote)
    }
}

fn next_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, watch::Sender<Option<Exit>>>> {
        lock(&self.children)
    }

    fn send(&self, request: &Request, fds: &[RawFd]) -> io::Result<()> {
        let payload = serde_json::to_vec(request).map_err(io::Error::other)?;
        fdpass::send(self.control.as_raw_fd(), &payload, fds)
            .map_err(|e| io::Error::other(format!("the REPL zygote is unreachable: {e}")))
    }

    /// Reads notices until the zygote is gone; then every REPL it had is lost.
    fn serve(&self, mut process: std::process::Child) {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let mut fds = Vec::new();
            let n = match fdpass::receive(self.control.as_raw_fd(), &mut buffer, &mut fds) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match serde_json::from_slice::<Notice>(&buffer[..n]) {
                Ok(Notice::Spawned { id, pid }) => tracing::debug!(id, pid, "REPL forked"),
                Ok(Notice::Failed { id, error }) => self.ended(
                    id,
                    Exit::Lost(format!("the zygote could not fork it: {error}")),
                ),
                Ok(Notice::Exited { id, status }) => self.ended(id, Exit::Status(status)),
                Ok(Notice::Swept { id, clean }) => {
                    if let Some(sender) = lock(&self.sweeps).remove(&id) {
                        let _ = sender.send(clean);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "a notice from the REPL zygote it cannot read")
                }
            }
        }
        self.alive.store(false, Ordering::Release);
        let status = process.wait();
        tracing::warn!(
            ?status,
            "the REPL zygote ended; the next REPL starts a new one"
        );
        for (_, sender) in self.lock().drain() {
            let _ = sender.send(Some(Exit::Lost(ZYGOTE_ENDED.into())));
        }
        for (_, sender) in lock(&self.sweeps).drain() {
            let _ = sender.send(Err(ZYGOTE_ENDED.into()));
        }
    }

    fn ended(&self, id: u64, exit: Exit) {
        if let Some(sender) = self.lock().remove(&id) {
            let _ = sender.send(Some(exit));
        }
    }
}

impl Forked {
    /// Kills the REPL's process group (the zygote does it, while it is unreaped).
    pub fn kill(&self) {
        if self.exit.borrow().is_none() {
            let _ = self.running.send(&Request::Kill { id: self.id }, &[]);
        }
    }

    /// How it ended, waiting at most `wait` for it to end.
    pub async fn ended(&mut self, wait: Duration) -> Option<Exit> {
        let ended = self.exit.wait_for(Option::is_some);
        match tokio::time::timeout(wait, ended).await {
            Ok(Ok(exit)) => exit.clone(),
            Ok(Err(_)) => Some(Exit::Lost(ZYGOTE_ENDED.into())),
            Err(_) => None,
        }
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `program zygote` on a fresh socket pair, from a thread of its own that then
/// reads its notices.
fn start(program: &std::path::Path) -> io::Result<Arc<Running>> {
    let [ours, theirs] = seqpacket_pair()?;
    let running = Arc::new(Running {
        control: ours,
        alive: AtomicBool::new(true),
        children: Mutex::new(HashMap::new()),
        sweeps: Mutex::new(HashMap::new()),
    });
    let mut command = Command::new(program);
    command
        .arg("zygote")
        .env_clear()
        .envs(sandbox::ENVIRONMENT.iter().copied())
        // Symbols resolved at start: a REPL would otherwise resolve each function it is
        // first to call, writing (so copying) the zygote's tables of them.
        .env("LD_BIND_NOW", "1")
        .current_dir("/")
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0);
    for name in sandbox::PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    // SAFETY: only system calls with constant arguments, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // Nothing the server holds open crosses over, whatever its flags.
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (started, outcome) = std::sync::mpsc::channel();
    let reader = running.clone();
    std::thread::Builder::new()
        .name("rlmd-repl-zygote".into())
        .spawn(move || match command.spawn() {
            Ok(process) => {
                // The command holds the zygote's end of the socket: the zygote's death
                // is seen only once no copy of it is left here.
                drop(command);
                tracing::debug!(pid = process.id(), "REPL zygote started");
                let _ = started.send(Ok(()));
                reader.serve(process);
            }
            Err(error) => {
                reader.alive.store(false, Ordering::Release);
                let _ = started.send(Err(error));
            }
        })?;
    let program = program.display();
    outcome
        .recv()
        .map_err(io::Error::other)?
        .map_err(|e| io::Error::other(format!("{program}: {e}")))?;
    Ok(running)
}

pub fn seqpacket_pair() -> io::Result<[OwnedFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the array, which are then owned.
    unsafe {
        if libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok([OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])])
    }
}
