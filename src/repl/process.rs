//! The server's handle on one REPL child: start it, load the context, run blocks (serving
//! the model calls they make), and kill it on timeout, cancel or drop.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::protocol::{
    read_frame, write_frame, ExecOutcome, FromChild, HostCall, ToChild, ToolSource,
};
use super::sandbox;
use crate::config::SandboxConfig;

/// How long a fresh child may take to start Python and to load its context.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("could not start the REPL: {0}")]
    Spawn(std::io::Error),
    #[error("the block ran longer than {0:?}")]
    Timeout(Duration),
    #[error("the REPL process died ({0})")]
    Crashed(String),
    #[error("the REPL broke the protocol: {0}")]
    Protocol(String),
    #[error("the run's tools could not be loaded: {0}")]
    Tools(String),
}

/// Makes the model calls that code in the REPL asks for.
pub trait Host {
    /// The value handed back to the code (a string or a list of strings), or an error
    /// message that is raised in the code as a `RuntimeError`.
    fn call(
        &self,
        call: HostCall,
    ) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
}

pub struct ReplProcess {
    child: Child,
    pid: u32,
    to_child: ChildStdin,
    from_child: BufReader<ChildStdout>,
    stderr_log: PathBuf,
    initialized: bool,
    dead: bool,
}

impl ReplProcess {
    /// Starts a child in `workdir`. Python boots in the background while the caller goes
    /// on (typically with the first model call); `init` waits for it.
    pub fn spawn(
        config: &SandboxConfig,
        workdir: &Path,
        stderr_log: &Path,
    ) -> Result<Self, ReplError> {
        std::fs::create_dir_all(workdir).map_err(ReplError::Spawn)?;
        let log = std::fs::File::create(stderr_log).map_err(ReplError::Spawn)?;
        let mut child = sandbox::command(config, workdir, log)
            .spawn()
            .map_err(ReplError::Spawn)?;
        let pid = child
            .id()
            .ok_or_else(|| ReplError::Crashed("exited at once".into()))?;
        let to_child = child.stdin.take().expect("stdin is piped");
        let from_child = BufReader::new(child.stdout.take().expect("stdout is piped"));
        tracing::debug!(pid, "REPL child started");
        Ok(Self {
            child,
            pid,
            to_child,
            from_child,
            stderr_log: stderr_log.to_path_buf(),
            initialized: false,
            dead: false,
        })
    }

    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// Waits for the child to be ready and builds its namespace around `context`, the JSON
    /// text exactly as submitted.
    pub async fn init(&mut self, context: &str, tools: &[ToolSource]) -> Result<(), ReplError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        match self.receive_until(deadline).await? {
            FromChild::Ready { python } => tracing::debug!(pid = self.pid, %python, "REPL ready"),
            other => {
                return Err(ReplError::Protocol(format!(
                    "expected ready, got {other:?}"
                )))
            }
        }
        self.send(&ToChild::Init {
            tools: tools.to_vec(),
        })
        .await?;
        if write_frame(&mut self.to_child, context.as_bytes())
            .await
            .is_err()
        {
            return Err(self.crashed().await);
        }
        match self.receive_until(deadline).await? {
            FromChild::Initialized { tool_errors } if tool_errors.is_empty() => {
                self.initialized = true;
                Ok(())
            }
            FromChild::Initialized { tool_errors } => Err(ReplError::Tools(tool_errors.join("; "))),
            other => Err(ReplError::Protocol(format!(
                "expected initialized, got {other:?}"
            ))),
        }
    }

    /// Runs one block. `timeout` counts only the time the child computes: while it waits
    /// for a model call that it asked for, the clock stops.
    pub async fn exec(
        &mut self,
        code: &str,
        output_chars: usize,
        timeout: Duration,
        host: &impl Host,
    ) -> Result<ExecOutcome, ReplError> {
        self.send(&ToChild::Exec {
            code: code.to_string(),
            output_chars,
        })
        .await?;
        let mut remaining = timeout;
        loop {
            let started = Instant::now();
            let message = match tokio::time::timeout(remaining, self.receive()).await {
                Ok(message) => message?,
                Err(_) => {
                    self.kill().await;
                    return Err(ReplError::Timeout(timeout));
                }
            };
            remaining = remaining.saturating_sub(started.elapsed());
            match message {
                FromChild::HostCall { call } => {
                    let (ok, value) = match host.call(call).await {
                        Ok(value) => (true, value),
                        Err(message) => (false, serde_json::Value::String(message)),
                    };
                    self.send(&ToChild::HostReply { ok, value }).await?;
                }
                FromChild::ExecDone(outcome) => return Ok(outcome),
                other => return Err(ReplError::Protocol(format!("unexpected {other:?}"))),
            }
        }
    }

    /// Sets a variable of the namespace.
    /// `json` is the value as raw JSON text.
    pub async fn set_var(&mut self, name: &str, json: &str) -> Result<(), ReplError> {
        self.send(&ToChild::SetVar {
            name: name.to_string(),
        })
        .await?;
        if write_frame(&mut self.to_child, json.as_bytes())
            .await
            .is_err()
        {
            return Err(self.crashed().await);
        }
        match self.receive_until(Instant::now() + STARTUP_TIMEOUT).await? {
            FromChild::VarSet => Ok(()),
            other => Err(ReplError::Protocol(format!(
                "expected var_set, got {other:?}"
            ))),
        }
    }

    /// The text of a REPL variable, if it exists.
    pub async fn resolve(&mut self, name: &str) -> Result<Option<String>, ReplError> {
        self.send(&ToChild::Resolve {
            name: name.to_string(),
        })
        .await?;
        match self.receive_until(Instant::now() + STARTUP_TIMEOUT).await? {
            FromChild::Resolved { value } => Ok(value),
            other => Err(ReplError::Protocol(format!(
                "expected resolved, got {other:?}"
            ))),
        }
    }

    /// Kills the child and everything it started, and reaps it.
    pub async fn kill(&mut self) {
        if !self.dead {
            sandbox::kill_group(self.pid);
            let _ = self.child.wait().await;
            self.dead = true;
            tracing::debug!(pid = self.pid, "REPL child killed");
        }
    }

    async fn send(&mut self, message: &ToChild) -> Result<(), ReplError> {
        let payload =
            serde_json::to_vec(message).map_err(|e| ReplError::Protocol(e.to_string()))?;
        match write_frame(&mut self.to_child, &payload).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.crashed().await),
        }
    }

    async fn receive(&mut self) -> Result<FromChild, ReplError> {
        match read_frame(&mut self.from_child).await {
            Ok(payload) => {
                serde_json::from_slice(&payload).map_err(|e| ReplError::Protocol(e.to_string()))
            }
            Err(_) => Err(self.crashed().await),
        }
    }

    async fn receive_until(&mut self, deadline: Instant) -> Result<FromChild, ReplError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, self.receive()).await {
            Ok(message) => message,
            Err(_) => {
                self.kill().await;
                Err(ReplError::Crashed("it did not answer in time".into()))
            }
        }
    }

    /// Explains why the pipe broke: the exit status and the end of the child's stderr.
    async fn crashed(&mut self) -> ReplError {
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        self.kill().await;
        let status = match status {
            Ok(Ok(status)) => describe_exit(status),
            _ => "it stopped answering".to_string(),
        };
        let stderr = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        if tail.is_empty() {
            ReplError::Crashed(status)
        } else {
            ReplError::Crashed(format!("{status}: {}", tail.join(" | ")))
        }
    }
}

impl Drop for ReplProcess {
    fn drop(&mut self) {
        if !self.dead {
            sandbox::kill_group(self.pid);
        }
    }
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
