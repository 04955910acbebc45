//! Model providers: one client per API family behind the `ChatModel` trait.

mod anthropic;
mod gemini;
mod http;
mod limiter;
mod openai;
mod pricing;
mod registry;
mod retry;

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::domain::Sampling;
pub use anthropic::AnthropicClient;
pub use gemini::GeminiClient;
pub use limiter::{is_overload_status, LimiterState, Slot};
pub use openai::{Flavor, OpenAiClient};
pub use pricing::{Price, PriceError, PriceTable};
pub use registry::{ProviderHandle, Providers};

/// Every provider name a request may use.
pub const KNOWN_PROVIDERS: &[&str] = &[
    "openai",
    "azure_openai",
    "anthropic",
    "gemini",
    "openrouter",
    "portkey",
    "litellm",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Characters of all messages: the "prompt size" recorded per call.
pub fn prompt_chars(messages: &[Message]) -> usize {
    messages.iter().map(|m| m.content.chars().count()).sum()
}

#[derive(Clone, Copy)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    pub sampling: &'a Sampling,
    /// Told of each retry as its wait begins (the wait runs alongside).
    pub on_retry: Option<RetryObserver<'a>>,
    /// Mark the prompt for the provider's cache, where it is asked for (Anthropic): a
    /// conversation that grows turn by turn is read back at the cache price.
    pub cache_prompt: bool,
}

pub type RetryObserver<'a> = &'a (dyn Fn(Retrying) -> BoxFuture<'a, ()> + Send + Sync);

/// A failed try of a model call that is about to be made again. Never holds a key.
#[derive(Debug, Clone, Serialize)]
pub struct Retrying {
    pub provider: String,
    /// The HTTP status of the failed try, when it got one.
    pub status: Option<u16>,
    /// What failed the try: `status`, `timeout`, `transport`, `malformed` or `empty`.
    pub error_kind: &'static str,
    /// The error of the failed try, as the call's record would show it.
    pub error: String,
    /// The try about to be made (2 for the first retry), out of `max_attempts`.
    pub attempt: u32,
    pub max_attempts: u32,
    pub wait_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    /// Reasoning tokens (already counted in `output_tokens`).
    pub reasoning_tokens: i64,
    /// Input tokens written to the provider's prompt cache (Anthropic; counted in
    /// `input_tokens`, billed above the input price).
    pub cache_write_tokens: i64,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub text: String,
    pub usage: TokenUsage,
    pub finish_reason: Option<String>,
    /// The cost the provider itself reported (OpenRouter does); it wins over the table.
    pub cost_usd: Option<f64>,
}

/// A failed model call. Messages never carry the API key (see `redact`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("{provider} answered HTTP {status}: {message}")]
    Status {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("{provider} did not answer in time")]
    Timeout { provider: String },
    #[error("could not reach {provider}: {message}")]
    Transport { provider: String, message: String },
    #[error("{provider} sent a malformed response (HTTP {status}): {excerpt}")]
    Malformed {
        provider: String,
        status: u16,
        excerpt: String,
    },
    #[error("{provider} returned no content (finish_reason: {reason})")]
    Empty { provider: String, reason: String },
}

/// A chat model API. Implementations retry transient failures themselves.
pub trait ChatModel: Send + Sync {
    fn complete<'a>(
        &'a self,
        request: ChatRequest<'a>,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>>;
}

/// Removes the key (and anything key-like) from a provider's text, then cuts it to a
/// readable excerpt. Scrubbing comes first, so a cut can never leave part of a key behind.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    let mut out = text.to_string();
    if let Some(secret) = secret.filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    // Providers echo masked keys ("Incorrect API key provided: sk-ab***yz"): drop them too.
    let scrubbed = out
        .split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c: char| {
                !c.is_ascii_alphanumeric() && c != '-' && c != '_' && c != '*'
            });
            if bare.starts_with("sk-") || bare.starts_with("sk_") {
                word.replace(bare, "[redacted]")
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    scrubbed.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_removes_the_key_and_masked_keys() {
        let text = "Incorrect API key provided: sk-proj-ab***yz. You can find your key at ...";
        let out = redact(text, Some("sk-proj-abcdefxyz"));
        assert!(!out.contains("sk-"), "{out}");
        assert!(
            out.starts_with("Incorrect API key provided: [redacted]"),
            "{out}"
        );
        assert_eq!(
            redact("token secret123 leaked", Some("secret123")),
            "token [redacted] leaked"
        );
    }
}
