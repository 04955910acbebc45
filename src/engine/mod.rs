//! The RLM loop: the root model writes code, the REPL runs it, the output goes back,
//! until the model submits an answer, runs out of turns or hits a limit. Code may start
//! child runs (`rlm_query`), which run the same loop one level deeper, inside the same
//! job and under the same tree-wide limits.

mod cache;
mod calls;
mod children;
mod host;
mod parse;
mod prompt;
mod recorder;
mod repl_slot;
mod replay;
mod scratch;
mod sessions;
mod tree;
mod turn;

use std::sync::Arc;

use serde_json::json;
use tokio_util::task::TaskTracker;

use crate::answers::AnswerSchema;
use crate::contexts::{ContextCache, ContextFile, OpenedContext};
use crate::events::EventBus;
use crate::providers::{Message, PriceTable, Providers};
use crate::repl::{Sandbox, ToolSource};
use crate::store::{ClaimedRun, Finish, RunRecord, Store, StoreError};
pub use children::CodeSite;
pub use recorder::Recorder;
use repl_slot::ReplSlot;
use replay::Tape;
pub use scratch::sweep as sweep_scratch;
pub use sessions::SessionRepls;
use tree::Tree;
use turn::RunState;

/// Runs claimed jobs. Cheap to clone; shared by all workers.
#[derive(Clone)]
pub struct Engine {
    pub store: Store,
    pub bus: EventBus,
    pub providers: Providers,
    pub prices: Arc<PriceTable>,
    pub sandbox: Arc<Sandbox>,
    /// Context window assumed for models the price table does not know.
    pub default_context_window: u64,
    /// REPLs kept between the turns of open sessions.
    pub sessions: SessionRepls,
    /// This node's copies of the contexts runs are given.
    pub contexts: ContextCache,
    /// The sub-call cache's settings (entries' life, what counts as deterministic).
    pub cache: crate::config::CacheConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The run a child is started from.
pub struct Parent<'a> {
    pub run: &'a RunRecord,
    pub recorder: &'a Recorder,
    pub tree: &'a Arc<Tree>,
    /// What the parent recorded before it was taken over (its children among it).
    pub tape: &'a Tape,
}

impl Engine {
    /// Runs a claimed root job to its end, with its whole tree. Cancelling is dropping this
    /// future: every REPL of the tree is killed and in-flight model calls are abandoned.
    /// `writes` tracks the tree's database writes: the caller waits for it before it
    /// records the tree's end.
    pub async fn execute(
        &self,
        claimed: &ClaimedRun,
        writes: &TaskTracker,
    ) -> Result<Finish, EngineError> {
        let tree = Arc::new(Tree::new(
            &claimed.run.spec.limits,
            writes.clone(),
            self.sandbox.config.max_repls_per_tree,
        ));
        let tape = match claimed.resumed {
            true => {
                let spent = self.store.usage_by_model(claimed.run.id, true).await?;
                tree.carry_over(&crate::store::total_usage(spent.into_values()));
                Tape::load(&self.store, claimed.run.id).await?
            }
            false => Tape::default(),
        };
        self.execute_in_tree(&claimed.run, claimed.attempt, &tree, tape)
            .await
    }

    /// Runs one run of a tree (the root or a child) until it ends or the tree is stopped.
    #[tracing::instrument(skip_all, fields(run_id = %run.id, depth = run.depth, attempt))]
    async fn execute_in_tree(
        &self,
        run: &RunRecord,
        attempt: u32,
        tree: &Arc<Tree>,
        tape: Tape,
    ) -> Result<Finish, EngineError> {
        let spec = &run.spec;
        let recorder = Recorder::new(self, run, attempt, tree);
        let Some(provider) = self.providers.get(&spec.provider) else {
            return Ok(turn::failed(
                "provider_not_configured",
                format!(
                    "provider {:?} is not configured on this server",
                    spec.provider
                ),
            ));
        };
        // Checked at submit (a child's, when its parent's code asked for it): this only
        // compiles it.
        let schema = match spec.answer_schema.as_ref().map(AnswerSchema::compile) {
            None => None,
            Some(Ok(schema)) => Some(Arc::new(schema)),
            Some(Err(why)) => return Ok(turn::failed("invalid_answer_schema", why)),
        };
        // The context can be gigabytes: the REPL maps it from a file, the server never
        // holds it.
        let context = match self.open_context(run).await? {
            Ok(context) => context,
            Err(why) => return Ok(turn::failed("context_unavailable", why)),
        };
        // A session's turn takes its session's REPL (and holds it until the turn ends).
        let mut session = match run.session_id {
            Some(id) => Some(self.sessions.slot(id).lock_owned().await),
            None => None,
        };
        let kept = match (session.as_mut(), run.turn) {
            (Some(slot), Some(turn)) => sessions::take_current(slot, turn).await,
            _ => None,
        };
        let restoring = kept.is_none() && run.turn.is_some_and(|turn| turn > 0);
        let mut repl = match kept {
            Some(repl) => repl,
            None => self.new_repl(run, context.file.clone(), tree).await?,
        };
        // Python boots in the child while the first model call is in flight. A REPL that
        // cannot even be started fails the run before anything is paid for.
        repl.start();
        if let Some(why) = repl.start_error() {
            let finish = turn::failed("repl_error", why.to_string());
            repl.shutdown().await;
            return Ok(finish);
        }
        if restoring {
            let started = std::time::Instant::now();
            repl = self.restore_session(run, repl, tree, &provider).await?;
            let turns = run.turn.unwrap_or_default();
            let restore_ms = started.elapsed().as_millis() as u64;
            tracing::info!(turns, restore_ms, "session REPL restored");
            recorder.emit(
                "session.restored",
                json!({"turns": turns, "restore_ms": restore_ms}),
            );
        }
        if let Some(turn) = run.turn {
            if let Err(error) = repl.new_answer().await {
                tracing::warn!(%error, "could not give the session's turn a fresh answer");
            }
            let names = [format!("context_{turn}"), "context".to_string()];
            if let Err(error) = repl.set_context(&names, &context.file).await {
                tracing::warn!(%error, "could not give the session its new context");
            }
        }
        let messages = self.opening_messages(run, &context.description);
        let mut state = RunState::new(self, run, tree, recorder, provider, repl, messages)
            .resuming(tape)
            .with_schema(schema);
        let stopped = tokio::select! {
            finish = state.drive() => Err(finish),
            error = tree.stopped() => Ok(error),
        };
        let finish = match stopped {
            Err(finish) => finish,
            Ok(error) => {
                state.recorder.emit(
                    "limit.tripped",
                    json!({"code": error.code, "message": error.message}),
                );
                Ok(state.stopped_by(error))
            }
        };
        // A run whose record held its end, too, was still resumed.
        state.end_replay();
        match (session, run.session_id) {
            (Some(mut slot), Some(session_id)) => {
                // The REPL stays for the next turn, with this turn's conversation in it.
                let turn = run.turn.unwrap_or_default();
                let conversation = state.conversation_json();
                let flushed = state.recorder.flush().await;
                let mut repl = state.repl;
                if let Err(error) = repl.set_var(&format!("history_{turn}"), conversation).await {
                    tracing::warn!(%error, "could not keep the turn's conversation in the session");
                }
                *slot = Some(sessions::KeptRepl {
                    repl,
                    next_turn: turn + 1,
                });
                if let Err(error) = self.store.touch_session(session_id).await {
                    tracing::warn!(%error, "could not mark the session used");
                }
                flushed?;
            }
            _ => {
                let (flushed, ()) = tokio::join!(state.recorder.flush(), state.repl.shutdown());
                flushed?;
            }
        }
        finish
    }

    /// The context `run` is given, opened; or why it cannot be (its bytes are gone).
    async fn open_context(
        &self,
        run: &RunRecord,
    ) -> Result<Result<OpenedContext, String>, EngineError> {
        let stored = self.store.load_context(run.id).await?;
        match self.contexts.open(&stored).await {
            Ok(context) => Ok(Ok(context)),
            Err(crate::contexts::CacheError::Store(error)) => Err(error.into()),
            Err(error) => Ok(Err(error.to_string())),
        }
    }

    /// What the root model is first shown: the system prompt, and the context's summary
    /// with the question (a child's question is its context).
    fn opening_messages(&self, run: &RunRecord, described: &str) -> Vec<Message> {
        let spec = &run.spec;
        let is_child = run.parent_id.is_some();
        let summary = prompt::context_summary(described, (!is_child).then_some(&run.prompt));
        vec![
            Message::system(prompt::system_prompt(
                spec.system_prompt.as_deref(),
                spec.limits.output_chars,
                &spec.tools,
                spec.answer_schema.as_ref(),
            )),
            Message::user(format!(
                "{summary}{}\n\n{}",
                run.turn.map(prompt::session_note).unwrap_or_default(),
                prompt::turn_marker(1, spec.max_iterations)
            )),
        ]
    }

    /// A fresh REPL for `run`; for a session, one whose namespace holds the contexts of
    /// the session's earlier turns (their variables are gone with the REPL they lived in).
    async fn new_repl(
        &self,
        run: &RunRecord,
        context: ContextFile,
        tree: &Tree,
    ) -> Result<ReplSlot, EngineError> {
        let tools = run
            .spec
            .tools
            .iter()
            .map(|t| ToolSource {
                name: t.name.clone(),
                source: t.source.clone(),
            })
            .collect();
        let run_dir = scratch::run_dir(&self.sandbox.config.scratch_root, run);
        let mut repl = ReplSlot::new(
            self.sandbox.clone(),
            tree.repls.clone(),
            run_dir,
            context,
            tools,
        );
        if let (Some(session), Some(turn)) = (run.session_id, run.turn) {
            for (earlier, stored) in self.store.session_contexts(session, turn).await? {
                let opened = match self.contexts.open(&stored).await {
                    Ok(opened) => opened,
                    Err(error) => {
                        tracing::warn!(%error, earlier, "an earlier turn's context is gone");
                        continue;
                    }
                };
                // Not yet started: this only records what to set.
                let _ = repl
                    .set_context(&[format!("context_{earlier}")], &opened.file)
                    .await;
            }
        }
        Ok(repl)
    }
}

/// Runs a database write to its end even if the run that asked for it is stopped meanwhile:
/// a future dropped in the middle of a transaction would leave SQLite's write lock held.
pub(crate) async fn write_through<T: Send + 'static>(
    writes: &TaskTracker,
    write: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    writes
        .spawn(write)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}
