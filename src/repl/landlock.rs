//! Landlock for REPL children: the file system is read-only (and only where Python and its
//! libraries live), the run's own scratch directory is the one place it can write, and
//! nothing else — the server's database, its `.env`, other runs' scratch — can be opened.
//! Best effort: on a kernel without Landlock the child runs without it (the start-up probe
//! reports which).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const IOCTL_DEV: u64 = 1 << 15;

/// Read-only places Python, its standard library, numpy/pandas and the system need.
const READ_ONLY: &[&str] = &[
    "/usr", "/lib", "/lib64", "/bin", "/etc", "/proc", "/sys", "/opt",
];

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// What to allow, prepared before the fork (no allocation happens after it).
pub struct Rules {
    read_only: Vec<CString>,
    program: CString,
    workdir: CString,
}

impl Rules {
    pub fn new(program: &Path, workdir: &Path) -> Self {
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
        Self {
            read_only: READ_ONLY.iter().map(|p| c(Path::new(p))).collect(),
            program: c(program),
            workdir: c(workdir),
        }
    }

    /// Restricts the calling process (and what it execs). Needs no_new_privs first.
    /// Runs between fork and exec: system calls only.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: raw Landlock system calls with pointers to live stack values; every fd
        // opened here is closed here.
        unsafe {
            let abi = libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<RulesetAttr>(),
                0,
                CREATE_RULESET_VERSION,
            );
            if abi < 1 {
                return Ok(()); // no Landlock in this kernel
            }
            let mut handled = (1u64 << 13) - 1; // ABI 1: execute … make_sym
            if abi >= 2 {
                handled |= 1 << 13; // refer
            }
            if abi >= 3 {
                handled |= 1 << 14; // truncate
            }
            if abi >= 5 {
                handled |= IOCTL_DEV;
            }
            let attr = RulesetAttr {
                handled_access_fs: handled,
            };
            let ruleset = libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            ) as libc::c_int;
            if ruleset < 0 {
                return Err(io::Error::last_os_error());
            }
            let read = EXECUTE | READ_FILE | READ_DIR;
            for path in &self.read_only {
                allow(ruleset, path, read);
            }
            allow(
                ruleset,
                c"/dev",
                (READ_FILE | WRITE_FILE | READ_DIR | IOCTL_DEV) & handled,
            );
            allow(ruleset, &self.program, EXECUTE | READ_FILE);
            allow(ruleset, &self.workdir, handled);
            let restricted = libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32);
            libc::close(ruleset);
            if restricted != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Adds "`access` beneath `path`"; a path that does not exist is skipped.
///
/// # Safety
/// `ruleset` must be a Landlock ruleset fd.
unsafe fn allow(ruleset: libc::c_int, path: &std::ffi::CStr, access: u64) {
    let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
    if fd < 0 {
        return;
    }
    let rule = PathBeneathAttr {
        allowed_access: access,
        parent_fd: fd,
    };
    libc::syscall(
        libc::SYS_landlock_add_rule,
        ruleset,
        RULE_PATH_BENEATH,
        &rule as *const PathBeneathAttr,
        0u32,
    );
    libc::close(fd);
}
