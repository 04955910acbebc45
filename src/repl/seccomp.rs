//! A seccomp filter for REPL children: no network. Creating an IPv4, IPv6 or raw packet
//! socket fails with EACCES, as does io_uring (which could open sockets around the filter)
//! and any syscall of a foreign ABI; everything else is allowed. Unix sockets stay, since
//! Python's own machinery (multiprocessing, asyncio) uses them.

use std::io;

// Offsets into `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0: u32 = 16;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
/// x32 syscalls on x86_64 carry this bit; they are refused wholesale.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter program. Jumps are relative: `jt`/`jf` skip that many instructions.
pub fn network_filter() -> Vec<libc::sock_filter> {
    let deny = RET_ERRNO | libc::EACCES as u32;
    vec![
        /* 0 */ stmt(LD_W_ABS, ARCH),
        /* 1 */ jump(JEQ_K, AUDIT_ARCH, 1, 0),
        /* 2 */ stmt(RET_K, deny),
        /* 3 */ stmt(LD_W_ABS, NR),
        /* 4 */ jump(JGE_K, X32_SYSCALL_BIT, 7, 0),
        /* 5 */ jump(JEQ_K, libc::SYS_io_uring_setup as u32, 6, 0),
        /* 6 */ jump(JEQ_K, libc::SYS_socket as u32, 0, 4),
        /* 7 */ stmt(LD_W_ABS, ARG0),
        /* 8 */ jump(JEQ_K, libc::AF_INET as u32, 3, 0),
        /* 9 */ jump(JEQ_K, libc::AF_INET6 as u32, 2, 0),
        /* 10 */ jump(JEQ_K, libc::AF_PACKET as u32, 1, 0),
        /* 11 */ stmt(RET_K, RET_ALLOW),
        /* 12 */ stmt(RET_K, deny),
    ]
}

/// Installs `filter` on the calling thread (and what it execs). Needs no_new_privs first.
/// Runs between fork and exec: it only makes one system call and allocates nothing.
pub fn install(filter: &[libc::sock_filter]) -> io::Result<()> {
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `program` points at a live, well-formed BPF program for the whole call.
    let result = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
