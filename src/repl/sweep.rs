//! Sweeping a REPL's user, from the zygote: every process of the user is killed, and the
//! sweep says whether none is left.
//!
//! A child becomes the user and sends SIGKILL to all it may signal, which is exactly that
//! user's processes (a fork racing with it is stopped by the kernel); then it checks that
//! it is alone: with a limit of two processes for its user, its own probe child can be
//! made only if no other process of the user (not even a zombie) is left.
//!
//! The child and its probe are made with `clone(CLONE_VM | CLONE_VFORK)`, as
//! `posix_spawn` does: they borrow the zygote's memory instead of copying its page tables
//! and tearing them down again, which was most of what a sweep cost. The zygote is
//! suspended while they run (so nothing else touches that memory), and they make system
//! calls only. Between rounds the zygote reaps what died (the REPL's orphans come back to
//! it), so that the dead stop counting.

use std::io;

/// Rounds of kill-and-check before a sweep reports survivors (waiting 1, 2, 4, … ms).
const ROUNDS: u32 = 7;

/// Stack of the child (and, at its top, of its probe): a few frames of system calls.
const STACK_BYTES: usize = 64 * 1024;

/// Kills every process of `uid`; whether none is left. `reap` is called before each round.
pub fn sweep(uid: u32, mut reap: impl FnMut()) -> Result<bool, String> {
    let mut stack = vec![0u8; STACK_BYTES];
    for round in 0..ROUNDS {
        reap();
        if kill_and_check(uid, &mut stack)? {
            return Ok(true);
        }
        // Killed processes are gone once the kernel has torn them down and their parent
        // (or the zygote, for orphans) has reaped them.
        std::thread::sleep(std::time::Duration::from_millis(1 << round));
    }
    Ok(false)
}

/// One round in a child that becomes `uid`: true when it found itself alone.
fn kill_and_check(uid: u32, stack: &mut [u8]) -> Result<bool, String> {
    let mut uid = uid;
    // SAFETY: the child runs `as_user` on its own stack (the top of `stack`, which outlives
    // it: with CLONE_VFORK this call returns only once the child has exited) and makes
    // system calls only; `uid` is read by it before this frame can change.
    let pid = unsafe {
        libc::clone(
            as_user,
            stack_top(stack),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut uid as *mut u32).cast(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid for this very child, with a valid pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error.to_string());
        }
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, ALONE) => Ok(true),
        (true, NOT_ALONE) => Ok(false),
        _ => Err(format!(
            "could not become user {} to stop its processes",
            uid
        )),
    }
}

const ALONE: i32 = 0;
const NOT_ALONE: i32 = 1;
const NOT_THE_USER: i32 = 3;

/// The child: becomes the user, kills its processes, and probes whether it is alone.
extern "C" fn as_user(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the parent's u32, alive while this runs (CLONE_VFORK); the
    // rest are system calls on this process and its own probe.
    unsafe {
        let uid = *arg.cast::<u32>();
        // Without its capabilities (a zygote that is not root keeps CAP_KILL across
        // setuid), kill(-1) would reach every process of the host, and the process limit
        // would not hold for it. Raw calls: glibc's wrappers would try to tell the threads
        // of the process, whose memory this child only borrows.
        let alone_limit = libc::rlimit {
            rlim_cur: 2,
            rlim_max: 2,
        };
        if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
            || libc::syscall(libc::SYS_setresgid, uid, uid, uid) != 0
            || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
            || super::sandbox::clear_capabilities().is_err()
            || libc::geteuid() != uid
            || libc::setrlimit(libc::RLIMIT_NPROC, &alone_limit) != 0
        {
            return NOT_THE_USER;
        }
        libc::kill(-1, libc::SIGKILL);
        let mut probe_stack = [0u8; 4096];
        let probe = libc::clone(
            exit_at_once,
            stack_top(&mut probe_stack),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::null_mut(),
        );
        if probe < 0 {
            return NOT_ALONE;
        }
        libc::waitpid(probe, std::ptr::null_mut(), 0);
        ALONE
    }
}

extern "C" fn exit_at_once(_: *mut libc::c_void) -> libc::c_int {
    0
}

/// The top of `stack`, aligned as the ABI wants a stack pointer (stacks grow down).
fn stack_top(stack: &mut [u8]) -> *mut libc::c_void {
    let end = stack.as_mut_ptr_range().end as usize;
    (end & !15) as *mut libc::c_void
}
