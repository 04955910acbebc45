//! The run's REPL, started early and restarted (with a fresh namespace) after a timeout or
//! a crash. A slot holds one of its tree's REPL permits while it has a REPL, so that a
//! tree (a recursion bomb included) never has more live REPLs than the sandbox allows.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::contexts::ContextFile;
use crate::repl::{ExecOutcome, Host, ReplError, ReplProcess, Sandbox, ToolSource};

pub struct ReplSlot {
    sandbox: Arc<Sandbox>,
    /// The tree's REPL permits, and the one this slot holds.
    tree_repls: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    run_dir: PathBuf,
    /// The run's context, loaded into every fresh REPL with the run's tools.
    context: ContextFile,
    tools: Vec<ToolSource>,
    /// Variables the server sets (`history`, `history_N`), as raw JSON, set again in
    /// every fresh REPL.
    vars: Vec<(String, Arc<str>)>,
    /// A session's contexts (`context`, `context_N`), likewise.
    contexts: Vec<(Vec<String>, ContextFile)>,
    process: Option<ReplProcess>,
    /// The start failure, kept so that each block reports it instead of retrying forever.
    start_error: Option<String>,
}

impl ReplSlot {
    pub fn new(
        sandbox: Arc<Sandbox>,
        tree_repls: Arc<Semaphore>,
        run_dir: PathBuf,
        context: ContextFile,
        tools: Vec<ToolSource>,
    ) -> Self {
        Self {
            sandbox,
            tree_repls,
            permit: None,
            run_dir,
            context,
            tools,
            vars: Vec::new(),
            contexts: Vec::new(),
            process: None,
            start_error: None,
        }
    }

    /// Starts the child now, so Python boots while the caller does something else. Whether
    /// it started is known at once: see `start_error`.
    pub fn start(&mut self) {
        if self.process.is_some() {
            return;
        }
        if self.permit.is_none() {
            match self.tree_repls.clone().try_acquire_owned() {
                Ok(permit) => self.permit = Some(permit),
                Err(_) => {
                    self.start_error = Some(format!(
                        "this run's tree already has {} live REPLs (RLM_MAX_REPLS_PER_TREE)",
                        self.sandbox.config.max_repls_per_tree
                    ));
                    return;
                }
            }
        }
        let workdir = self.run_dir.join("work");
        let stderr_log = self.run_dir.join("repl-stderr.log");
        match ReplProcess::spawn(&self.sandbox, &workdir, &stderr_log) {
            Ok(process) => {
                crate::metrics::get().repl_started();
                self.process = Some(process);
                self.start_error = None;
            }
            Err(error) => {
                tracing::error!(%error, "could not start the REPL");
                crate::metrics::get().repl_failed(error.reason());
                self.start_error = Some(error.to_string());
                self.permit = None;
            }
        }
    }

    /// Why the REPL could not be started, if it could not.
    pub fn start_error(&self) -> Option<&str> {
        self.start_error.as_deref()
    }

    async fn ready(&mut self) -> Result<&mut ReplProcess, ReplError> {
        self.start();
        let Some(process) = self.process.as_mut() else {
            let why = self.start_error.clone().unwrap_or_default();
            return Err(ReplError::Spawn(why));
        };
        if !process.is_initialized() {
            let mut ready = process.init(&self.context, &self.tools).await;
            for (names, context) in &self.contexts {
                if ready.is_ok() {
                    ready = process.set_context(names, context).await;
                }
            }
            for (name, value) in &self.vars {
                if ready.is_ok() {
                    ready = process.set_var(name, value).await;
                }
            }
            if let Err(error) = ready {
                self.process = None;
                return Err(error);
            }
        }
        Ok(self.process.as_mut().expect("just checked"))
    }

    pub async fn exec(
        &mut self,
        code: &str,
        output_chars: usize,
        timeout: Duration,
        host: &impl Host,
    ) -> Result<ExecOutcome, ReplError> {
        let outcome = match self.ready().await {
            Ok(process) => process.exec(code, output_chars, timeout, host).await,
            Err(error) => Err(error),
        };
        match &outcome {
            // A spawn failure was counted where it happened.
            Err(ReplError::Spawn(_)) | Ok(_) => {}
            Err(error) => crate::metrics::get().repl_failed(error.reason()),
        }
        outcome
    }

    /// Sets a variable (to raw JSON) now and in every REPL this slot starts later.
    pub async fn set_var(&mut self, name: &str, json: Arc<str>) -> Result<(), ReplError> {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), json.clone()));
        match self.process.as_mut() {
            Some(process) if process.is_initialized() => process.set_var(name, &json).await,
            // A REPL not yet initialized gets it as part of its start.
            _ => Ok(()),
        }
    }

    /// Sets `names` to a context now and in every REPL this slot starts later.
    pub async fn set_context(
        &mut self,
        names: &[String],
        context: &ContextFile,
    ) -> Result<(), ReplError> {
        self.contexts.retain_mut(|(kept, _)| {
            kept.retain(|name| !names.contains(name));
            !kept.is_empty()
        });
        self.contexts.push((names.to_vec(), context.clone()));
        match self.process.as_mut() {
            Some(process) if process.is_initialized() => process.set_context(names, context).await,
            // A REPL not yet initialized gets it as part of its start.
            _ => Ok(()),
        }
    }

    pub async fn resolve(
        &mut self,
        name: &str,
    ) -> Result<Option<(String, Option<String>)>, ReplError> {
        self.ready().await?.resolve(name).await
    }

    /// Kills the current child; the next block gets a fresh one.
    pub async fn reset(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
        }
        self.start();
    }

    /// A session's next turn starts with a fresh, unsubmitted `answer`.
    pub async fn new_answer(&mut self) -> Result<(), ReplError> {
        match self.process.as_mut() {
            Some(process) if process.is_initialized() => {
                process
                    .set_var("answer", r#"{"content": "", "ready": false}"#)
                    .await
            }
            // A REPL not yet initialized starts with a fresh one anyway.
            _ => Ok(()),
        }
    }

    /// Kills the child and removes the run's scratch directory.
    pub async fn shutdown(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
        }
        self.permit = None;
        let _ = tokio::fs::remove_dir_all(&self.run_dir).await;
    }
}

impl Drop for ReplSlot {
    fn drop(&mut self) {
        // Dropped without shutdown (the run was cancelled): the process kills itself on
        // drop; the scratch directory must go too.
        if self.process.take().is_some() || self.run_dir.exists() {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}
