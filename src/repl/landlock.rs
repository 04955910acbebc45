//! Landlock for REPL children: the file system is read-only (and only where Python and its
//! libraries live), the REPL's own scratch directory is the one place it can write, and
//! nothing else — the server's database, its `.env`, other runs' scratch, `/tmp`,
//! `/dev/shm`, any device but null, zero, full and the random ones — can be opened. Where
//! the kernel has Landlock's scopes (ABI 6), a REPL can also neither signal nor reach the
//! abstract Unix sockets of anything outside itself.
//!
//! The ruleset is built by the server before the fork (so it needs no file descriptor in
//! the child, whatever the server holds open); the child only enforces it.

use std::io;
use std::path::Path;

use landlock::{
    path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI,
};

/// Read-only places Python, its standard library, numpy/pandas and the system need.
const READ_ONLY: &[&str] = &[
    "/usr", "/lib", "/lib64", "/bin", "/etc", "/proc", "/sys", "/opt",
];

/// The only devices a REPL may open (to read or write); the rest of /dev (shm, disks, ttys,
/// the kernel log) it cannot open at all.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// The Landlock ABI of the running kernel (0 when it has none).
pub fn kernel_abi() -> i64 {
    // SAFETY: the version query of landlock_create_ruleset takes no pointer.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    abi.max(0)
}

/// Builds the ruleset for a REPL that runs `program` and writes in `workdir`. The rights
/// of Landlock's first version are required (a kernel without them is an error, never a
/// ruleset that does nothing); newer rights and scopes are added where the kernel has them.
pub fn ruleset(program: &Path, workdir: &Path) -> Result<RulesetCreated, String> {
    build(program, workdir).map_err(|e| format!("Landlock: {e}"))
}

fn build(program: &Path, workdir: &Path) -> Result<RulesetCreated, RulesetError> {
    let all = AccessFs::from_all(ABI::V10);
    let read = AccessFs::from_read(ABI::V10);
    let device_write = AccessFs::WriteFile | AccessFs::Truncate;
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .scope(Scope::from_all(ABI::V10))?
        .create()?
        .add_rules(path_beneath_rules(READ_ONLY, read))?
        .add_rules(path_beneath_rules(DEVICES, read | device_write))?
        .add_rules(path_beneath_rules([program], read))?
        .add_rules(path_beneath_rules([workdir], all))
}

/// Enforces `ruleset` on the calling process (and what it execs). Runs between fork and
/// exec. A ruleset the kernel did not enforce is an error.
pub fn enforce(ruleset: RulesetCreated) -> io::Result<()> {
    let status = ruleset
        .restrict_self()
        .map_err(|_| io::Error::from_raw_os_error(libc::EPERM))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(())
}
