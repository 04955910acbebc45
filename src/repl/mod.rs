//! The sandboxed Python REPL: a child process (`rlmd repl`) embedding CPython, driven over
//! a pipe. `process` is the server's side, `child` the child's, `protocol` the wire between.

mod bounds;
pub mod child;
mod identity;
mod landlock;
mod policy;
mod probe;
mod process;
mod procfs;
pub mod protocol;
mod sandbox;
mod seccomp;
mod watchdog;

pub use policy::Sandbox;
pub use probe::probe;
pub use process::{Host, ReplError, ReplProcess};
pub use protocol::{ExecOutcome, HostCall, ToolSource};
pub use sandbox::protect_server_process;
