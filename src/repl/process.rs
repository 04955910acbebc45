//! The server's handle on one REPL child: start it, load the context, run blocks (serving
//! the model calls they make), and kill it on timeout, cancel or drop.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;

mod exec;

use super::fdpass;
use super::forkserver::{self, Forked};
use super::identity::ReplUid;
use super::protocol::{write_frame, FrameReader, FromChild, HostCall, ToChild, ToolSource};
use super::watchdog::Watch;
use super::{bounds, postmortem, sandbox, Sandbox};
use crate::contexts::ContextFile;

/// How long a fresh child may take to start Python and to load its context.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("could not start the REPL: {0}")]
    Spawn(String),
    /// The REPL started but could not load its context or boot Python.
    #[error("the REPL could not load the run's context: {0}")]
    Init(String),
    #[error("the block ran longer than {0:?}")]
    Timeout(Duration),
    #[error("the REPL process died ({0})")]
    Crashed(String),
    #[error("the REPL broke the protocol: {0}")]
    Protocol(String),
    #[error("the run's tools could not be loaded: {0}")]
    Tools(String),
}

impl ReplError {
    /// A short name for what went wrong (a metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Spawn(_) => "spawn",
            Self::Init(_) => "init",
            Self::Timeout(_) => "timeout",
            Self::Crashed(_) => "crashed",
            Self::Protocol(_) => "protocol",
            Self::Tools(_) => "tools",
        }
    }
}

/// Makes the model calls that code in the REPL asks for.
pub trait Host {
    /// The value handed back to the code (a string or a list of strings), or an error
    /// message that is raised in the code as a `RuntimeError`.
    fn call(
        &self,
        call: HostCall,
    ) -> impl Future<Output = Result<serde_json::Value, String>> + Send;

    /// Output the running block printed so far (`stream` is stdout or stderr), bounded and
    /// throttled by the child and bounded again by the server.
    fn output(&self, _stream: &str, _text: &str) {}
}

pub struct ReplProcess {
    /// The child, forked by the zygote; dropping it kills the child's process group.
    forked: Forked,
    to_child: pipe::Sender,
    from_child: FrameReader<pipe::Receiver>,
    /// The server's end of the descriptor channel, on which contexts are handed over.
    contexts: OwnedFd,
    stderr_log: PathBuf,
    limits: bounds::Bounds,
    initialized: bool,
    /// The child said it was ready: from then on its log is written by model code too.
    ready: bool,
    dead: bool,
    /// Watches the memory and disk of the REPL's processes; dropped before `uid`.
    watch: Option<Watch>,
    /// The REPL's own user, swept and freed when this is dropped (after the child is dead).
    uid: Option<ReplUid>,
}

impl ReplProcess {
    /// Starts a confined child in a fresh `workdir`. Python boots in the background while
    /// the caller goes on (typically with the first model call); `init` waits for it.
    pub fn spawn(sandbox: &Sandbox, workdir: &Path, stderr_log: &Path) -> Result<Self, ReplError> {
        if let Some(why) = sandbox.refusal() {
            return Err(ReplError::Spawn(why));
        }
        let config = &sandbox.config;
        let uid = match sandbox.features.separate_users {
            true => Some(
                ReplUid::acquire(config, &sandbox.zygote)
                    .map_err(|e| ReplError::Spawn(e.to_string()))?,
            ),
            false => None,
        };
        sandbox::prepare_workdir(workdir, uid.as_ref().map(ReplUid::uid))
            .map_err(|e| ReplError::Spawn(format!("scratch directory: {e}")))?;
        let log = std::fs::File::create(stderr_log)
            .map_err(|e| ReplError::Spawn(format!("REPL log: {e}")))?;
        let spawn_error = |e: std::io::Error| ReplError::Spawn(e.to_string());
        let (child_stdin, to_child) = fdpass::pipe_pair().map_err(spawn_error)?;
        let (from_child, child_stdout) = fdpass::pipe_pair().map_err(spawn_error)?;
        let [contexts, child_contexts] = forkserver::seqpacket_pair().map_err(spawn_error)?;
        // A child that never reads its channel must not block the server's sends.
        fdpass::set_nonblocking(&contexts).map_err(spawn_error)?;
        let confinement = sandbox::Confinement::of(sandbox, uid.as_ref(), workdir);
        let forked = sandbox
            .zygote
            .spawn(
                &confinement,
                [child_stdin, child_stdout, log.into(), child_contexts],
            )
            .map_err(spawn_error)?;
        let to_child = pipe::Sender::from_owned_fd(to_child).map_err(spawn_error)?;
        let from_child =
            FrameReader::new(pipe::Receiver::from_owned_fd(from_child).map_err(spawn_error)?);
        let watch = uid.as_ref().map(|uid| {
            Watch::start(
                uid.uid(),
                config.memory_bytes,
                config.disk_bytes,
                config.max_files,
                // The run's directory: the scratch directory and the REPL's log.
                workdir.parent().unwrap_or(workdir),
                sandbox.zygote.clone(),
            )
        });
        tracing::debug!(uid = uid.as_ref().map(ReplUid::uid), "REPL child asked for");
        Ok(Self {
            forked,
            to_child,
            from_child,
            contexts,
            stderr_log: stderr_log.to_path_buf(),
            limits: bounds::Bounds::from_config(config),
            initialized: false,
            ready: false,
            dead: false,
            watch,
            uid,
        })
    }

    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// Waits for the child to be ready and builds its namespace around `context`. Any
    /// failure but a tool's is `ReplError::Init`: a REPL that cannot hold the run's context
    /// is of no use to the run.
    pub async fn init(
        &mut self,
        context: &ContextFile,
        tools: &[ToolSource],
    ) -> Result<(), ReplError> {
        match self.load(context, tools).await {
            Ok(()) => {
                self.initialized = true;
                Ok(())
            }
            Err(error @ (ReplError::Tools(_) | ReplError::Spawn(_))) => Err(error),
            Err(error) => Err(ReplError::Init(match error {
                ReplError::Crashed(why) | ReplError::Protocol(why) => why,
                other => other.to_string(),
            })),
        }
    }

    async fn load(&mut self, context: &ContextFile, tools: &[ToolSource]) -> Result<(), ReplError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        match self.receive_until(deadline).await? {
            FromChild::Ready { python } => {
                self.ready = true;
                tracing::debug!(%python, "REPL ready")
            }
            other => return Err(unexpected("ready", &other)),
        }
        self.hand_over(context).await?;
        self.send(&ToChild::Init {
            tools: tools.to_vec(),
            context: context.format,
        })
        .await?;
        match self.receive_until(deadline).await? {
            FromChild::Initialized { tool_errors } if tool_errors.is_empty() => Ok(()),
            FromChild::Initialized { tool_errors } => {
                Err(ReplError::Tools(bounds::message(tool_errors.join("; "))))
            }
            FromChild::Failed { error } => Err(ReplError::Init(bounds::message(error))),
            other => Err(unexpected("initialized", &other)),
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
            other => Err(unexpected("var_set", &other)),
        }
    }

    /// Sets each of `names` to `context` (read once).
    pub async fn set_context(
        &mut self,
        names: &[String],
        context: &ContextFile,
    ) -> Result<(), ReplError> {
        self.hand_over(context).await?;
        self.send(&ToChild::SetContext {
            names: names.to_vec(),
            format: context.format,
        })
        .await?;
        match self.receive_until(Instant::now() + STARTUP_TIMEOUT).await? {
            FromChild::VarSet => Ok(()),
            other => Err(unexpected("var_set", &other)),
        }
    }

    /// Sends the context's descriptor ahead of the message that uses it.
    async fn hand_over(&mut self, context: &ContextFile) -> Result<(), ReplError> {
        use std::os::fd::AsRawFd;
        match fdpass::send(self.contexts.as_raw_fd(), &[0], &[context.fd.as_raw_fd()]) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.kill().await;
                Err(ReplError::Protocol(
                    "it does not take the contexts it is sent".into(),
                ))
            }
            Err(_) => Err(self.crashed().await),
        }
    }

    /// The text of a REPL variable, if it exists.
    /// The text of a variable, and its JSON when it is not a str (for a typed answer).
    pub async fn resolve(
        &mut self,
        name: &str,
    ) -> Result<Option<(String, Option<String>)>, ReplError> {
        self.send(&ToChild::Resolve {
            name: name.to_string(),
        })
        .await?;
        match self.receive_until(Instant::now() + STARTUP_TIMEOUT).await? {
            FromChild::Resolved { value, json } => {
                let max = self.limits.max_answer_chars;
                let json = json.filter(|j| j.chars().count() <= max);
                Ok(value.map(|v| (bounds::cut(v, max), json)))
            }
            other => Err(unexpected("resolved", &other)),
        }
    }

    /// Kills the child and everything it started, and reaps it; then its user is swept of
    /// whatever left its process group and freed.
    pub async fn kill(&mut self) {
        if !self.dead {
            self.forked.kill();
            let _ = self.forked.ended(Duration::from_secs(5)).await;
            self.dead = true;
            tracing::debug!("REPL child killed");
        }
        self.watch = None;
        self.uid = None;
    }

    async fn send(&mut self, message: &ToChild) -> Result<(), ReplError> {
        let payload =
            serde_json::to_vec(message).map_err(|e| ReplError::Protocol(e.to_string()))?;
        match write_frame(&mut self.to_child, &payload).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.crashed().await),
        }
    }

    /// The child's next message. Its size is bounded before it is read, and text that is
    /// not UTF-8 is replaced rather than refused.
    async fn receive(&mut self) -> Result<FromChild, ReplError> {
        match self.from_child.next(self.limits.max_frame_bytes).await {
            Ok(payload) => {
                let text = String::from_utf8_lossy(&payload);
                serde_json::from_str(&text).map_err(|e| {
                    ReplError::Protocol(format!("a message that is not valid JSON ({e})"))
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                self.kill().await;
                Err(ReplError::Protocol(error.to_string()))
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

    /// Explains why the pipe broke: the exit status and the end of the child's stderr (a
    /// confinement step that failed is a failure to start).
    async fn crashed(&mut self) -> ReplError {
        let exit = self.forked.ended(Duration::from_secs(2)).await;
        let verdict = self
            .watch
            .as_ref()
            .and_then(|w| w.verdict.lock().unwrap_or_else(|p| p.into_inner()).clone());
        self.kill().await;
        if let Some(verdict) = verdict {
            return ReplError::Crashed(format!("stopped by the sandbox: {verdict}"));
        }
        postmortem::explain(exit, &self.stderr_log, self.ready)
    }
}

/// A message that came out of turn; only its kind is reported (it may be huge).
fn unexpected(expected: &str, got: &FromChild) -> ReplError {
    ReplError::Protocol(format!("expected {expected}, got {}", got.kind()))
}
