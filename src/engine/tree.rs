//! What a tree of runs (a root and all its descendants) shares: its limits, what it has
//! spent, and the signal that stops every run in it when a limit trips. Limits here are
//! hard: they are checked before each model call, charged after it, and the stop drops
//! running code and in-flight calls at once rather than waiting for the next turn.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::{Limits, RunError};

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Spent {
    tokens: i64,
    cost_usd: f64,
    llm_calls: i64,
}

pub struct Tree {
    /// Database writes made for the tree's runs. They complete even when the tree is
    /// stopped; whoever ends the tree waits for them first, so no event lands after its end.
    pub writes: TaskTracker,
    /// Permits for live REPLs: one per run of the tree that holds a REPL.
    pub repls: Arc<Semaphore>,
    deadline: Option<Instant>,
    timeout_s: Option<f64>,
    max_tokens: Option<i64>,
    max_cost_usd: Option<f64>,
    max_llm_calls: Option<i64>,
    spent: Mutex<Spent>,
    tripped: Mutex<Option<RunError>>,
    stop: CancellationToken,
}

impl Tree {
    /// The tree of a root run starting now, with at most `max_repls` live REPLs.
    pub fn new(limits: &Limits, writes: TaskTracker, max_repls: usize) -> Self {
        Self {
            writes,
            repls: Arc::new(Semaphore::new(max_repls)),
            deadline: limits.timeout().map(|t| Instant::now() + t),
            timeout_s: limits.timeout_s,
            max_tokens: limits.max_tokens,
            max_cost_usd: limits.max_cost_usd,
            max_llm_calls: limits.max_llm_calls,
            spent: Mutex::new(Spent::default()),
            tripped: Mutex::new(None),
            stop: CancellationToken::new(),
        }
    }

    /// Counts what the tree spent before it was taken over: its budgets cover every call
    /// paid for, including those a resumed run now reads from its record.
    pub fn carry_over(&self, usage: &crate::store::Usage) {
        let mut spent = self.lock();
        spent.tokens += usage.input_tokens + usage.output_tokens;
        spent.cost_usd += usage.cost_usd;
        spent.llm_calls += usage.llm_calls;
    }

    /// Reserves one model call, or trips the tree if that would go past a limit.
    pub fn admit_call(&self) -> Result<(), RunError> {
        if let Some(error) = self.tripped() {
            return Err(error);
        }
        let mut spent = self.lock();
        if let Some(max) = self.max_llm_calls {
            if spent.llm_calls >= max {
                drop(spent);
                return Err(self.trip(
                    "llm_calls",
                    format!("the tree made its {max} allowed model calls"),
                ));
            }
        }
        spent.llm_calls += 1;
        Ok(())
    }

    /// Adds a finished call's tokens and cost; trips the tree if a budget is now exceeded.
    pub fn charge(&self, tokens: i64, cost_usd: f64) -> Result<(), RunError> {
        let mut spent = self.lock();
        spent.tokens += tokens;
        spent.cost_usd += cost_usd;
        let now = *spent;
        drop(spent);
        if let Some(max) = self.max_tokens.filter(|max| now.tokens > *max) {
            return Err(self.trip(
                "tokens",
                format!(
                    "the tree used {} tokens, over its limit of {max}",
                    now.tokens
                ),
            ));
        }
        if let Some(max) = self.max_cost_usd.filter(|max| now.cost_usd > *max) {
            return Err(self.trip(
                "budget",
                format!(
                    "the tree spent ${:.6}, over its budget of ${max}",
                    now.cost_usd
                ),
            ));
        }
        Ok(())
    }

    /// Stops every run of the tree; the first reason given is the one that sticks.
    pub fn trip(&self, code: &str, message: String) -> RunError {
        let mut tripped = self.tripped.lock().unwrap_or_else(|p| p.into_inner());
        let error = tripped
            .get_or_insert_with(|| RunError::new(code, message))
            .clone();
        self.stop.cancel();
        error
    }

    pub fn tripped(&self) -> Option<RunError> {
        self.tripped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves when a limit has tripped, including the tree's wall-clock deadline.
    pub async fn stopped(&self) -> RunError {
        match self.deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = self.stop.cancelled() => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        let secs = self.timeout_s.unwrap_or_default();
                        self.trip("timeout", format!("the tree ran past its {secs} s time limit"));
                    }
                }
            }
            None => self.stop.cancelled().await,
        }
        self.tripped().expect("the stop is only signalled by trip")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spent> {
        self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            block_timeout_s: 60.0,
            output_chars: 20_000,
            max_concurrent_subcalls: 4,
            timeout_s: None,
            max_tokens: Some(100),
            max_cost_usd: Some(0.5),
            max_llm_calls: Some(2),
            max_errors: None,
        }
    }

    #[test]
    fn calls_are_admitted_up_to_the_limit_and_not_one_more() {
        let tree = Tree::new(&limits(), TaskTracker::new(), 4);
        assert!(tree.admit_call().is_ok());
        assert!(tree.admit_call().is_ok());
        let error = tree.admit_call().unwrap_err();
        assert_eq!(error.code, "llm_calls");
        assert_eq!(tree.tripped(), Some(error));
    }

    #[test]
    fn tokens_trip_only_when_exceeded() {
        let tree = Tree::new(&limits(), TaskTracker::new(), 4);
        assert!(
            tree.charge(100, 0.0).is_ok(),
            "exactly the limit is allowed"
        );
        assert_eq!(tree.charge(1, 0.0).unwrap_err().code, "tokens");
    }

    #[test]
    fn the_first_trip_wins() {
        let tree = Tree::new(&limits(), TaskTracker::new(), 4);
        assert_eq!(tree.charge(0, 0.6).unwrap_err().code, "budget");
        assert_eq!(tree.trip("timeout", "late".into()).code, "budget");
    }
}
