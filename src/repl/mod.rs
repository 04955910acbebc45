//! The sandboxed Python REPL: a child process (`rlmd repl`) embedding CPython, driven over
//! a pipe. `process` is the server's side, `child` the child's, `protocol` the wire between.

pub mod child;
mod landlock;
mod probe;
mod process;
pub mod protocol;
mod sandbox;
mod seccomp;

pub use probe::probe;
pub use process::{Host, ReplError, ReplProcess};
pub use protocol::{ExecOutcome, HostCall, ToolSource};
pub use sandbox::protect_server_process;
