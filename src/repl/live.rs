//! The REPL side of live output: what a block prints goes to the server while the block
//! runs, sent by a thread of the REPL. Most blocks end within one interval and need no
//! such thread, and starting one costs a REPL about a third of a millisecond of CPU (a
//! stack, a clone, Python's thread state), so it is started the first time a block is
//! still running after an interval (a timer's signal) or calls the server (a model call
//! takes longer than that anyway), and never otherwise.
//!
//! The thread is a native one, started from Rust: started from Python inside a signal
//! handler, `threading` could wait for a lock the interrupted code holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;

/// How often the sender sends what was printed since its last send.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// The signal of the timer: a real-time one, which model code has no reason to use
/// (`SIGALRM` stays the model's).
pub fn timer_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

/// This process's timer (a timer is not inherited by a fork, so it is kept with the pid
/// that made it).
static TIMER: Mutex<Option<(u32, usize)>> = Mutex::new(None);

/// Arms the timer to signal once after `seconds`, or disarms it (0). Returns false if no
/// timer could be made: the caller then starts the sender at once.
#[pyfunction]
#[pyo3(name = "_live_timer")]
pub fn live_timer(seconds: f64) -> bool {
    let mut timer = TIMER.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    let id = match *timer {
        Some((owner, id)) if owner == pid => id as libc::timer_t,
        _ if seconds <= 0.0 => return true,
        _ => {
            // SAFETY: a zeroed sigevent with its notification fields set; the id is
            // written by the kernel on success.
            let id = unsafe {
                let mut event: libc::sigevent = std::mem::zeroed();
                event.sigev_notify = libc::SIGEV_SIGNAL;
                event.sigev_signo = timer_signal();
                let mut id: libc::timer_t = std::ptr::null_mut();
                if libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) != 0 {
                    return false;
                }
                id
            };
            *timer = Some((pid, id as usize));
            id
        }
    };
    let after = Duration::from_secs_f64(seconds.max(0.0));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `id` is a timer this process made.
    unsafe { libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) == 0 }
}

/// Starts the sender (once per process): every interval it calls `live.tick()`, which
/// sends what is pending and returns false once the pipe is gone.
#[pyfunction]
#[pyo3(name = "_start_live_sender")]
pub fn start_live_sender(live: PyObject) -> PyResult<()> {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("rlmd-live-output".into())
        .spawn(move || loop {
            let going_on = Python::with_gil(|py| {
                live.call_method0(py, "tick")
                    .and_then(|sent| sent.extract::<bool>(py))
                    .unwrap_or(false)
            });
            if !going_on {
                return;
            }
            std::thread::sleep(INTERVAL);
        })
        .map(drop)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("live output: {e}")))
}
