//! Why a REPL child died, told from its exit status and the end of its log.

use std::path::Path;

use super::forkserver::Exit;
use super::ReplError;

/// The error for a child whose pipe broke: a confinement step it reported failing is a
/// failure to start; anything else is a crash, with its status and its log's last lines.
/// Only a child that never said it was ready is believed about its confinement: after
/// that, model code writes to its log too.
pub fn explain(exit: Option<Exit>, stderr_log: &Path, was_ready: bool) -> ReplError {
    let stderr = log_tail(stderr_log);
    let failed_step = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("rlmd repl: "))
        .filter(|step| !was_ready && step.starts_with("sandbox step failed"));
    if let Some(step) = failed_step {
        return ReplError::Spawn(step.to_string());
    }
    let status = match exit {
        Some(Exit::Status(raw)) => {
            describe_exit(std::os::unix::process::ExitStatusExt::from_raw(raw))
        }
        Some(Exit::Lost(why)) => why,
        None => "it stopped answering".to_string(),
    };
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    if tail.is_empty() {
        ReplError::Crashed(status)
    } else {
        ReplError::Crashed(format!("{status}: {}", tail.join(" | ")))
    }
}

/// The end of a REPL's log (which it may have filled up to its file-size limit).
fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 4096;
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut bytes = Vec::new();
    let _ = file.take(TAIL).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(libc::SIGKILL)) => "killed (SIGKILL; out of memory or a resource limit?)".into(),
        (_, Some(libc::SIGXFSZ)) => "a file grew past the size limit".into(),
        (_, Some(signal)) => format!("killed by signal {signal}"),
        (Some(code), _) => format!("exit code {code}"),
        _ => "unknown exit".into(),
    }
}
