//! A REPL child: forked from the zygote with CPython booted and the prelude loaded, it
//! serves the server's requests over its pipe (its stdin and stdout) until the pipe
//! closes.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::protocol::{read_frame_sync, write_frame_sync, ExecOutcome, FromChild, ToChild};
use super::{fdpass, live};

const PRELUDE: &str = include_str!("prelude.py");

/// The child's end of the descriptor channel (a Unix socket): contexts arrive on it.
pub const CONTEXT_CHANNEL: RawFd = 3;

/// The pipe to the server, one lock per direction: live output is written while a model
/// call waits for its reply. Holding the reading end is what makes a model call's request
/// and reply a pair (see `host_call`).
struct Pipe {
    from_parent: Mutex<File>,
    to_parent: Mutex<File>,
}

impl Pipe {
    fn send(&self, message: &FromChild) -> io::Result<()> {
        let payload = serde_json::to_vec(message).map_err(io::Error::other)?;
        write_frame_sync(&mut *lock(&self.to_parent), &payload)
    }

    fn receive(&self) -> io::Result<ToChild> {
        let payload = read_frame_sync(&mut *lock(&self.from_parent))?;
        serde_json::from_slice(&payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

fn lock(file: &Mutex<File>) -> std::sync::MutexGuard<'_, File> {
    file.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

static PIPE: OnceLock<Pipe> = OnceLock::new();

fn pipe() -> &'static Pipe {
    PIPE.get().expect("pipe is set before Python starts")
}

/// In the zygote: the prelude, compiled and wired to the pipe functions, once for every
/// REPL forked after.
pub fn load_prelude(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let source = CString::new(PRELUDE).expect("prelude has no NUL");
    let prelude = PyModule::from_code(py, &source, c"rlmd_prelude.py", c"rlmd_prelude")?;
    prelude.setattr("_host", wrap_pyfunction!(host_call, &prelude)?)?;
    prelude.setattr("_emit", wrap_pyfunction!(emit_output, &prelude)?)?;
    prelude.setattr("_live_timer", wrap_pyfunction!(live::live_timer, &prelude)?)?;
    prelude.setattr(
        "_start_live_sender",
        wrap_pyfunction!(live::start_live_sender, &prelude)?,
    )?;
    prelude.setattr("_LIVE_SIGNAL", live::timer_signal())?;
    prelude.setattr("_LIVE_INTERVAL", live::INTERVAL.as_secs_f64())?;
    Ok(prelude)
}

/// In a child fresh from the zygote and confined: serves the pipe on fds 0 and 1 until
/// the server closes it. Returns the process exit code.
pub fn serve_forked(py: Python<'_>, prelude: &Bound<'_, PyModule>, workdir: &Path) -> i32 {
    let pipe = match take_pipe() {
        Ok(pipe) => pipe,
        Err(e) => {
            eprintln!("rlmd repl: cannot set up the pipe: {e}");
            return 2;
        }
    };
    let _ = PIPE.set(pipe);
    let served = set_home(py, workdir).and_then(|()| serve(py, prelude));
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rlmd repl: {e}");
            3
        }
    }
}

/// `HOME` and `TMPDIR` are the REPL's scratch directory (the zygote has neither).
fn set_home(py: Python<'_>, workdir: &Path) -> PyResult<()> {
    let environ = py.import("os")?.getattr("environ")?;
    let dir = workdir.to_string_lossy();
    environ.set_item("HOME", dir.as_ref())?;
    environ.set_item("TMPDIR", dir.as_ref())?;
    Ok(())
}

/// Moves the pipe off fds 0 and 1 and points those at /dev/null, so that a C extension or
/// `os.system` writing to fd 1 cannot corrupt the protocol.
fn take_pipe() -> io::Result<Pipe> {
    fn dup(fd: RawFd) -> io::Result<RawFd> {
        // SAFETY: dup on an fd we own; the result is checked.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if new < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(new)
        }
    }
    let from_parent = dup(0)?;
    let to_parent = dup(1)?;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    use std::os::fd::AsRawFd;
    for target in [0, 1] {
        // SAFETY: replacing stdin/stdout with /dev/null; both fds are valid.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: both fds were just created by dup and are owned by nothing else.
    Ok(unsafe {
        Pipe {
            from_parent: Mutex::new(File::from_raw_fd(from_parent)),
            to_parent: Mutex::new(File::from_raw_fd(to_parent)),
        }
    })
}

fn serve(py: Python<'_>, prelude: &Bound<'_, PyModule>) -> PyResult<()> {
    send(&FromChild::Ready {
        python: py
            .version()
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
    })?;
    loop {
        let message = match py.allow_threads(|| pipe().receive()) {
            Ok(message) => message,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(PyRuntimeError::new_err(format!("pipe: {e}"))),
        };
        let reply = match message {
            ToChild::Init { tools, context } => {
                let fd = receive_context(py)?;
                let tools: Vec<(String, String)> =
                    tools.into_iter().map(|t| (t.name, t.source)).collect();
                // A context Python cannot rebuild (nested too deep, say) is reported, not
                // fatal: the server fails the run with the reason.
                match prelude
                    .getattr("init")?
                    .call1((fd, context.as_str(), tools))
                    .and_then(|errors| errors.extract())
                {
                    Ok(tool_errors) => FromChild::Initialized { tool_errors },
                    Err(error) => FromChild::Failed {
                        error: describe(py, &error),
                    },
                }
            }
            ToChild::Exec { code, output_chars } => {
                let (stdout, stderr, error, answer, draft, answer_json) = prelude
                    .getattr("run_block")?
                    .call1((code, output_chars))?
                    .extract()?;
                FromChild::ExecDone(ExecOutcome {
                    stdout,
                    stderr,
                    error,
                    answer,
                    draft,
                    answer_json,
                })
            }
            ToChild::SetVar { name } => {
                let value = read_raw(py)?;
                prelude.getattr("set_var")?.call1((name, value))?;
                FromChild::VarSet
            }
            ToChild::SetContext { names, format } => {
                let fd = receive_context(py)?;
                prelude
                    .getattr("set_context")?
                    .call1((names, fd, format.as_str()))?;
                FromChild::VarSet
            }
            ToChild::Resolve { name } => {
                let resolved: Option<(String, Option<String>)> =
                    prelude.getattr("resolve")?.call1((name,))?.extract()?;
                let (value, json) = resolved.unzip();
                FromChild::Resolved {
                    value,
                    json: json.flatten(),
                }
            }
            ToChild::HostReply { .. } => {
                return Err(PyRuntimeError::new_err(
                    "host reply with no call outstanding",
                ))
            }
        };
        send(&reply)?;
    }
}

/// The descriptor of the context an `Init` or a `SetContext` is about, which the server
/// sent on the descriptor channel just before; Python owns (and closes) it from here.
fn receive_context(py: Python<'_>) -> PyResult<RawFd> {
    py.allow_threads(|| {
        let mut fds = Vec::new();
        let mut byte = [0u8; 1];
        let n = fdpass::receive(CONTEXT_CHANNEL, &mut byte, &mut fds)?;
        match (n, fds.pop()) {
            (1, Some(fd)) if fds.is_empty() => Ok(std::os::fd::IntoRawFd::into_raw_fd(fd)),
            _ => Err(io::Error::other("no context descriptor came")),
        }
    })
    .map_err(|e: io::Error| PyRuntimeError::new_err(format!("descriptor channel: {e}")))
}

/// The raw JSON frame that follows a `SetVar`.
fn read_raw(py: Python<'_>) -> PyResult<String> {
    py.allow_threads(|| read_frame_sync(&mut *lock(&pipe().from_parent)))
        .and_then(|bytes| String::from_utf8(bytes).map_err(io::Error::other))
        .map_err(|e| PyRuntimeError::new_err(format!("pipe: {e}")))
}

fn send(message: &FromChild) -> PyResult<()> {
    pipe()
        .send(message)
        .map_err(|e| PyRuntimeError::new_err(format!("pipe: {e}")))
}

/// `ExcType: message` of a Python error, whatever its message holds (the submit check
/// words a tool's failure the same way).
pub fn describe(py: Python<'_>, error: &PyErr) -> String {
    let kind = error
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let message = error
        .value(py)
        .str()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{kind}: {message}")
}

/// Called by the live-output sender (see `live`): sends what a block printed so far, without
/// waiting for an answer (the server sends none).
#[pyfunction]
#[pyo3(name = "_emit")]
fn emit_output(py: Python<'_>, stream: String, text: String) -> PyResult<()> {
    py.allow_threads(|| pipe().send(&FromChild::Output { stream, text }))
        .map_err(|e| PyRuntimeError::new_err(format!("pipe: {e}")))
}

/// Called by the prelude for every model call: forwards the request to the parent and
/// blocks (without the GIL) until the parent's reply arrives.
#[pyfunction]
#[pyo3(name = "_host")]
fn host_call(py: Python<'_>, request: String) -> PyResult<String> {
    py.allow_threads(|| {
        // Held from the request to its reply: calls from several threads take turns.
        let mut replies = lock(&pipe().from_parent);
        let framed = format!(r#"{{"type":"host_call","call":{request}}}"#);
        write_frame_sync(&mut *lock(&pipe().to_parent), framed.as_bytes())?;
        let reply = read_frame_sync(&mut *replies)?;
        String::from_utf8(reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    })
    .map_err(|e: io::Error| PyRuntimeError::new_err(format!("lost the connection to rlmd: {e}")))
}
