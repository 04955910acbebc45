//! Resuming a run that another worker started (it crashed, its node died, or it handed the
//! run back on shutdown). Nothing is run again from scratch: the run goes through its loop
//! as usual, but every model call, child run and code block that its record already holds
//! is taken from this tape instead. Code blocks are run again (that rebuilds the REPL's
//! variables), with their `llm_query` / `rlm_query` calls answered from the record, and
//! what they print is checked against what they printed before. The conversation is
//! rebuilt from the recorded replies and outputs, so it is exactly what the model saw.
//! Only what the record does not hold (calls in flight at the crash, and what comes after)
//! is made for real.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::domain::RunId;
use crate::store::{CodeBlockRecord, LlmCallRecord, RunRecord, Store, StoreResult};

/// What a run recorded before it was taken over, consumed as the resumed run reaches it.
#[derive(Default)]
pub struct Tape {
    /// Root-model calls (`root`, `compaction`, `final`) by kind and iteration.
    root_calls: Mutex<HashMap<(String, Option<u32>), LlmCallRecord>>,
    /// Sub-calls by iteration, prompt hash and model, in the order they were made.
    sub_calls: Mutex<HashMap<(u32, String, String), VecDeque<LlmCallRecord>>>,
    blocks: HashMap<(u32, u32), CodeBlockRecord>,
    iterations: HashSet<u32>,
    /// Child runs by prompt, oldest first.
    children: Mutex<HashMap<String, VecDeque<RunRecord>>>,
    /// A replayed block printed something other than what it printed before.
    diverged: AtomicBool,
    /// Still replaying: no live root call has been made yet.
    replaying: AtomicBool,
    /// Nothing may be done beyond the record (an ended session turn, replayed to rebuild
    /// the session's REPL): what it does not hold is refused, not made.
    sealed: bool,
    loaded_at: Option<Instant>,
}

/// How a replay went, once it is over.
pub struct ReplayReport {
    pub iterations: usize,
    pub diverged: bool,
    pub replay_ms: u64,
}

/// The one line a model is told when the replay did not print what the run printed before.
pub const RESTORED_NOTICE: &str = "[rlmd: the REPL was restored after a restart by running your earlier code again; some of it printed something else this time (it reads the clock, random numbers or files), so variables may not hold what you saw before.]";

impl Tape {
    /// The record of `run`, ready to be replayed.
    pub async fn load(store: &Store, run: RunId) -> StoreResult<Tape> {
        let trajectory = store.load_trajectory(run).await?;
        let mut roots = HashMap::new();
        let mut subs: HashMap<_, VecDeque<_>> = HashMap::new();
        for call in trajectory.llm_calls {
            match (call.kind.as_str(), call.iteration, &call.prompt_hash) {
                ("sub", Some(iteration), Some(hash)) => subs
                    .entry((iteration, hash.clone(), call.model.clone()))
                    .or_default()
                    .push_back(call),
                // A call that failed was answered again by the run itself; the last one
                // of a kind and iteration is the one the run went on with.
                ("root" | "compaction" | "final", iteration, _) => {
                    roots.insert((call.kind.clone(), iteration), call);
                }
                _ => {}
            }
        }
        let mut children: HashMap<_, VecDeque<_>> = HashMap::new();
        for child in store.children_of(run).await? {
            children
                .entry(child.prompt.clone())
                .or_default()
                .push_back(child);
        }
        let recorded = !roots.is_empty() || !trajectory.code_blocks.is_empty();
        Ok(Tape {
            root_calls: Mutex::new(roots),
            sub_calls: Mutex::new(subs),
            blocks: trajectory
                .code_blocks
                .into_iter()
                .map(|block| ((block.iteration, block.index), block))
                .collect(),
            iterations: trajectory.iterations.iter().map(|it| it.index).collect(),
            children: Mutex::new(children),
            diverged: AtomicBool::new(false),
            replaying: AtomicBool::new(recorded),
            sealed: false,
            loaded_at: Some(Instant::now()),
        })
    }

    /// This tape, with nothing allowed beyond it.
    pub fn sealed(mut self) -> Tape {
        self.sealed = true;
        self
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    pub fn is_replaying(&self) -> bool {
        self.replaying.load(Ordering::Relaxed)
    }

    /// The recorded root-model call of this kind and iteration, if there is one.
    pub fn root_call(&self, kind: &str, iteration: Option<u32>) -> Option<LlmCallRecord> {
        lock(&self.root_calls).remove(&(kind.to_string(), iteration))
    }

    pub fn has_root_call(&self, kind: &str, iteration: Option<u32>) -> bool {
        lock(&self.root_calls).contains_key(&(kind.to_string(), iteration))
    }

    /// A recorded sub-call with this prompt and model in this iteration, taken once.
    pub fn sub_call(&self, iteration: u32, hash: &str, model: &str) -> Option<LlmCallRecord> {
        let key = (iteration, hash.to_string(), model.to_string());
        lock(&self.sub_calls).get_mut(&key)?.pop_front()
    }

    /// A child run started for this prompt, taken once.
    pub fn child(&self, prompt: &str) -> Option<RunRecord> {
        lock(&self.children).get_mut(prompt)?.pop_front()
    }

    pub fn block(&self, iteration: u32, index: u32) -> Option<&CodeBlockRecord> {
        self.blocks.get(&(iteration, index))
    }

    pub fn has_iteration(&self, iteration: u32) -> bool {
        self.iterations.contains(&iteration)
    }

    /// Notes a replayed block that printed something else than before.
    pub fn diverged(&self) {
        self.diverged.store(true, Ordering::Relaxed);
    }

    /// Ends the replay (the run is about to make its first live root call); the report,
    /// the first time only.
    pub fn finish(&self) -> Option<ReplayReport> {
        if !self.replaying.swap(false, Ordering::Relaxed) {
            return None;
        }
        Some(ReplayReport {
            iterations: self.iterations.len(),
            diverged: self.diverged.load(Ordering::Relaxed),
            replay_ms: self
                .loaded_at
                .map_or(0, |at| at.elapsed().as_millis() as u64),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A sub-call's prompt as stored: its hex SHA-256.
pub fn prompt_hash(prompt: &str) -> String {
    crate::keys::sha256_hex(prompt)
}
