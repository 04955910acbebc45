//! The types the layers share: what a run is, once the request has been parsed and checked.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod cache_scope;
pub use cache_scope::CacheScope;

/// A run's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(Uuid);

impl RunId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for RunId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(format!("unknown run status {other:?}")),
        })
    }
}

/// Per-run limits, resolved against the server's defaults at submit time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time one code block may compute (time spent waiting on model calls
    /// made from the block does not count).
    pub block_timeout_s: f64,
    /// Characters of stdout (and of stderr) fed back to the model per block.
    pub output_chars: usize,
    /// How many sub-calls of one `llm_query_batched` (or children of one
    /// `rlm_query_batched`) run at once.
    pub max_concurrent_subcalls: usize,
    /// Wall-clock time of the whole tree of runs, from the root's start.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Tokens (input + output) spent by the whole tree.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// US dollars spent by the whole tree.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Model calls made by the whole tree.
    #[serde(default)]
    pub max_llm_calls: Option<i64>,
    /// Consecutive iterations of one run whose code failed (raised, timed out, crashed).
    #[serde(default)]
    pub max_errors: Option<u32>,
}

impl Limits {
    pub fn block_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.block_timeout_s)
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_s.map(Duration::from_secs_f64)
    }
}

/// Sampling parameters of model calls; unset ones are left to the provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
}

impl Sampling {
    /// Checks the ranges providers accept.
    pub fn check(&self, field: &str) -> Result<(), String> {
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(format!("`{field}.temperature` must be between 0 and 2"));
        }
        if self.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return Err(format!("`{field}.top_p` must be above 0 and at most 1"));
        }
        if self.max_tokens == Some(0) {
            return Err(format!("`{field}.max_tokens` must be at least 1"));
        }
        Ok(())
    }
}

/// When and how a run's conversation is compacted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    /// Compact when the conversation reaches this fraction of the model's context window.
    pub threshold_pct: f64,
}

impl Compaction {
    pub const DEFAULT_THRESHOLD: f64 = 0.85;
}

/// A custom tool: Python source, loaded into the REPL, that defines `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    pub description: String,
    pub source: String,
}

/// Names of the REPL's built-ins: no tool may take them.
pub const RESERVED_NAMES: &[&str] = &[
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "SHOW_VARS",
    "FINAL",
    "FINAL_VAR",
    "answer",
    "context",
    "history",
];

const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

impl Tool {
    /// Checks a list of tools as a request gives them.
    pub fn check_all(tools: &[Tool], field: &str) -> Result<(), String> {
        if tools.len() > 64 {
            return Err(format!("`{field}` may hold at most 64 tools"));
        }
        let mut seen = std::collections::HashSet::new();
        for tool in tools {
            let name = tool.name.as_str();
            let identifier = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !identifier || PYTHON_KEYWORDS.contains(&name) {
                return Err(format!("`{field}`: {name:?} is not a Python identifier"));
            }
            let numbered = |prefix: &str| {
                name.strip_prefix(prefix)
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            };
            if RESERVED_NAMES.contains(&name) || numbered("context_") || numbered("history_") {
                return Err(format!(
                    "`{field}`: {name:?} is a built-in of the REPL and cannot be replaced"
                ));
            }
            if !seen.insert(name) {
                return Err(format!("`{field}`: the tool {name:?} is given twice"));
            }
            if tool.description.trim().is_empty() {
                return Err(format!("`{field}`: the tool {name:?} needs a description"));
            }
            if tool.source.trim().is_empty() || tool.source.len() > 100_000 {
                return Err(format!(
                    "`{field}`: the source of {name:?} must be 1 to 100000 bytes"
                ));
            }
        }
        Ok(())
    }
}

/// Everything the engine needs to know about a run besides its prompt and context.
/// Stored as JSON beside the run, so new fields must have serde defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub provider: String,
    pub model: String,
    /// Model for `llm_query` and friends; the root model when absent.
    #[serde(default)]
    pub sub_model: Option<String>,
    /// Provider of child runs (depth >= 1) and of sub-calls; the root's when absent.
    #[serde(default)]
    pub sub_provider: Option<String>,
    pub max_depth: u32,
    pub max_iterations: u32,
    #[serde(default)]
    pub system_prompt: Option<String>,
    pub limits: Limits,
    /// Sampling of the root model's calls.
    #[serde(default)]
    pub sampling: Sampling,
    /// Sampling of sub-calls and child runs; `sampling` when absent.
    #[serde(default)]
    pub sub_sampling: Option<Sampling>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    /// Tools of child runs; `tools` when absent.
    #[serde(default)]
    pub sub_tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub compaction: Option<Compaction>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Where the run is POSTed when it ends (roots only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// A JSON Schema the answer must fit (checked when the code submits it); the answer
    /// is then stored as its JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_schema: Option<serde_json::Value>,
    /// Whose earlier identical sub-calls answer this tree's deterministic ones.
    #[serde(default, skip_serializing_if = "CacheScope::is_off")]
    pub cache: CacheScope,
}

/// `webhook: {url, secret?}` of a run request. The secret signs deliveries; it is stored
/// with the run but never shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl RunSpec {
    pub fn sub_model(&self) -> &str {
        self.sub_model.as_deref().unwrap_or(&self.model)
    }

    pub fn sub_provider(&self) -> &str {
        self.sub_provider.as_deref().unwrap_or(&self.provider)
    }

    pub fn sub_sampling(&self) -> &Sampling {
        self.sub_sampling.as_ref().unwrap_or(&self.sampling)
    }

    /// The spec of a child run started from this one: it runs on the sub-model (or the
    /// model the code named), with the same limits and depth cap, and the answer schema
    /// the code gave it (never the parent's).
    pub fn for_child(&self, model: Option<String>, schema: Option<serde_json::Value>) -> RunSpec {
        RunSpec {
            provider: self.sub_provider().to_string(),
            model: model.unwrap_or_else(|| self.sub_model().to_string()),
            sub_model: self.sub_model.clone(),
            sub_provider: self.sub_provider.clone(),
            sampling: self.sub_sampling().clone(),
            sub_sampling: self.sub_sampling.clone(),
            tools: self.sub_tools.clone().unwrap_or_else(|| self.tools.clone()),
            sub_tools: self.sub_tools.clone(),
            system_prompt: self.system_prompt.clone(),
            metadata: serde_json::Map::new(),
            webhook: None,
            answer_schema: schema,
            ..self.clone()
        }
    }
}

/// Why a run ended without an answer: a stable, machine-readable code plus a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    pub code: String,
    pub message: String,
}

impl RunError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_creation() {
        let first = RunId::new();
        let second = RunId::new();
        assert!(first.to_string() < second.to_string());
        assert_eq!(first.to_string().parse::<RunId>().unwrap(), first);
    }

    #[test]
    fn tools_must_have_free_python_names() {
        let tool = |name: &str| Tool {
            name: name.into(),
            description: "d".into(),
            source: "x = 1".into(),
        };
        assert!(Tool::check_all(&[tool("loan_payment"), tool("_helper2")], "tools").is_ok());
        for bad in [
            "llm_query",
            "context",
            "context_3",
            "2fast",
            "with space",
            "class",
            "",
        ] {
            assert!(
                Tool::check_all(&[tool(bad)], "tools").is_err(),
                "{bad:?} was accepted"
            );
        }
        assert!(Tool::check_all(&[tool("a"), tool("a")], "tools").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            assert_eq!(status.as_str().parse::<RunStatus>().unwrap(), status);
        }
        assert!("done".parse::<RunStatus>().is_err());
    }
}
