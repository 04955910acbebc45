//! The sandboxed Python REPL: a child process embedding CPython, driven over a pipe, and
//! forked from a warm zygote (`rlmd zygote`, `zygote`; the server's side is `forkserver`,
//! with `fdpass` between). `process` is the server's side of a REPL, `child` the child's,
//! `protocol` the wire between.
//! Confinement: `policy` decides what this host can enforce (and whether REPLs may start),
//! `sandbox` applies it in order, `identity` gives each REPL a user of its own and sweeps it,
//! `landlock` and `seccomp` build the kernel rules, `watchdog` bounds a REPL's processes and
//! files together, and `bounds` limits what the server accepts from a REPL.

mod bounds;
pub mod child;
mod fdpass;
mod forkserver;
mod identity;
mod landlock;
mod live;
mod policy;
mod postmortem;
mod probe;
mod process;
mod procfs;
pub mod protocol;
mod sandbox;
mod seccomp;
mod sweep;
mod watchdog;
pub mod zygote;

pub use policy::Sandbox;
pub use probe::probe;
pub use process::{Host, ReplError, ReplProcess};
pub use protocol::{ExecOutcome, HostCall, ToolSource};
pub use sandbox::protect_server_process;
