//! Settings of the REPL sandbox: how strict it is, the resources a REPL's whole process
//! tree may use, and the bounds the server enforces on what a REPL sends it.

use std::path::PathBuf;

use super::{ConfigError, Vars};

/// What happens when a confinement the sandbox relies on is missing on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// REPLs do not start unless every required confinement is available (the default).
    Strict,
    /// REPLs start with whatever this host offers; the operator chose this explicitly.
    BestEffort,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Strict => "strict",
            SandboxMode::BestEffort => "best_effort",
        }
    }
}

/// Resource limits and confinement of the sandboxed REPL children.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    /// The `rlmd` executable that is started as `rlmd repl`.
    pub program: PathBuf,
    /// Parent folder of each run's scratch directory.
    pub scratch_root: PathBuf,
    /// Memory of a REPL's whole process tree (resident), and of any one of its processes
    /// (address space).
    pub memory_bytes: u64,
    /// Bytes a REPL may keep in its scratch directory, all files together.
    pub disk_bytes: u64,
    /// Files and directories a REPL may keep in its scratch directory.
    pub max_files: u64,
    pub max_open_files: u64,
    /// Processes and threads of one REPL, all together.
    pub max_processes: u64,
    /// Each live REPL runs as its own user id, taken from `uid_base .. uid_base + uid_count`.
    pub uid_base: u32,
    pub uid_count: u32,
    /// Where REPL user ids are locked, so that servers on one host never share one.
    pub uid_lock_dir: PathBuf,
    /// Live REPLs in one run tree (a root and all its descendants).
    pub max_repls_per_tree: usize,
    /// Largest message a REPL may send the server.
    pub max_frame_bytes: usize,
    /// Largest prompt code may hand to `llm_query` / `rlm_query`, in characters.
    pub max_prompt_chars: usize,
    /// Largest answer (or draft answer) code may submit, in characters.
    pub max_answer_chars: usize,
}

impl SandboxConfig {
    pub(super) fn from_vars(env: &Vars) -> Result<Self, ConfigError> {
        let program = match env.get("RLM_REPL_PROGRAM") {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rlmd")),
        };
        let mode = match env.get("RLM_SANDBOX").as_deref().map(str::trim) {
            None | Some("strict") => SandboxMode::Strict,
            Some("best_effort") => SandboxMode::BestEffort,
            Some(other) => {
                return Err(ConfigError {
                    name: "RLM_SANDBOX".into(),
                    value: other.into(),
                    reason: "expected strict or best_effort".into(),
                })
            }
        };
        const MIB: u64 = 1024 * 1024;
        Ok(Self {
            mode,
            program,
            scratch_root: env
                .get("RLM_SCRATCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("rlmd")),
            memory_bytes: env.parse::<u64>("RLM_REPL_MEMORY_MB", 4096)? * MIB,
            disk_bytes: env.parse::<u64>("RLM_REPL_DISK_MB", 1024)? * MIB,
            max_files: env.parse("RLM_REPL_MAX_FILES", 10_000)?,
            max_open_files: env.parse("RLM_REPL_OPEN_FILES", 256)?,
            max_processes: env.parse("RLM_REPL_MAX_PROCESSES", 64)?,
            uid_base: env.parse("RLM_REPL_UID_BASE", 61_000)?,
            uid_count: env.parse("RLM_REPL_UIDS", 4_000)?,
            uid_lock_dir: env
                .get("RLM_REPL_UID_LOCK_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("rlmd-uids")),
            max_repls_per_tree: env.parse("RLM_MAX_REPLS_PER_TREE", 32)?,
            max_frame_bytes: (env.parse::<u64>("RLM_REPL_MAX_MESSAGE_MB", 16)? * MIB) as usize,
            max_prompt_chars: env.parse("RLM_MAX_PROMPT_CHARS", 2_000_000)?,
            max_answer_chars: env.parse("RLM_MAX_ANSWER_CHARS", 1_000_000)?,
        })
    }
}
