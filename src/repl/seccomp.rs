//! The seccomp filter of REPL children (built with `seccompiler`). What it refuses:
//! - every `socket()`: no network, no netlink, no vsock, and no Unix socket that could
//!   connect to the host's (PostgreSQL's, Docker's, abstract ones); `socketpair()` stays
//!   for Unix pairs only, which asyncio and multiprocessing use between their own ends;
//! - new namespaces (`unshare`, `setns`, `clone` with a namespace flag) and `clone3`, whose
//!   flags a filter cannot read (it answers ENOSYS, so the C library falls back to `clone`);
//! - reaching other processes (`ptrace`, `process_vm_*`, `pidfd_getfd`, `prlimit64` on
//!   another process) and io_uring (which could open sockets around this filter);
//! - extended attributes, key rings, BPF, perf events, userfaultfd and mounts;
//! - any call of a foreign ABI (the filter checks the architecture), and on x86_64 the x32
//!   flavour of each refused call, which carries another number.
//!
//! The zygote compiles and installs the filters on itself, once; every REPL it forks
//! inherits them (a filter cannot be removed).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Calls refused outright.
const REFUSED: &[libc::c_long] = &[
    libc::SYS_socket,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_madvise,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    SYS_SETXATTRAT,
    SYS_REMOVEXATTRAT,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
];

// Linux 6.13 calls, with the same number on every architecture; not yet in libc.
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// x32 calls on x86_64 carry this bit in their number.
#[cfg(target_arch = "x86_64")]
const X32_BIT: i64 = 0x4000_0000;

/// The two programs a child installs: the main filter, and one that answers `clone3` with
/// ENOSYS (a filter has one answer for all its matches).
pub struct Filters {
    pub main: BpfProgram,
    pub clone3: BpfProgram,
}

pub fn filters() -> Result<Filters, String> {
    let main = compile(main_rules()?, libc::EPERM)?;
    let clone3 = compile(
        with_x32([(libc::SYS_clone3, vec![])].into_iter().collect()),
        libc::ENOSYS,
    )?;
    Ok(Filters { main, clone3 })
}

fn main_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let cond = |arg, op, value| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
    };
    let rule = |conditions| SeccompRule::new(conditions).map_err(|e| e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|&nr| (nr, vec![])).collect();
    // socketpair: anything but a Unix pair.
    let not_unix = cond(0, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?;
    rules.insert(libc::SYS_socketpair, vec![rule(vec![not_unix])?]);
    // clone with any namespace flag (one rule per flag: rules of a call are alternatives).
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| rule(vec![cond(0, SeccompCmpOp::MaskedEq(flag), flag)?]))
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // prlimit64 on any process but itself (pid 0).
    let other_process = cond(0, SeccompCmpOp::Ne, 0)?;
    rules.insert(libc::SYS_prlimit64, vec![rule(vec![other_process])?]);
    Ok(with_x32(rules))
}

/// Adds the x32 number of every call to `rules`, and refuses the calls that exist only in
/// x32 (numbers 512 to 547), so that no refused call is reachable under another number.
#[cfg(target_arch = "x86_64")]
fn with_x32(mut rules: BTreeMap<i64, Vec<SeccompRule>>) -> BTreeMap<i64, Vec<SeccompRule>> {
    let twins: Vec<_> = rules
        .iter()
        .map(|(&nr, chain)| (nr | X32_BIT, chain.clone()))
        .collect();
    rules.extend(twins);
    for nr in 512..=547 {
        rules.insert(nr | X32_BIT, vec![]);
    }
    rules
}

#[cfg(not(target_arch = "x86_64"))]
fn with_x32(rules: BTreeMap<i64, Vec<SeccompRule>>) -> BTreeMap<i64, Vec<SeccompRule>> {
    rules
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, String> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("the seccomp filter does not compile: {e}"))
}

/// Whether this kernel can filter system calls.
pub fn available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer; it fails with EINVAL without seccomp.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

/// Whether the calling process is under a seccomp filter.
pub fn filtered() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) == 2 }
}

/// Installs both filters on the calling process (and its children, and what it execs).
pub fn install(filters: &Filters) -> std::io::Result<()> {
    for program in [&filters.main, &filters.clone3] {
        seccompiler::apply_filter(program)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))?;
    }
    Ok(())
}
