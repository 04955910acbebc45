//! Anthropic Messages API: `x-api-key`, `anthropic-version`, a top-level `system`, a
//! required `max_tokens`, and replies as content blocks.

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{Failure, Http, Retry};
use super::{ChatModel, ChatRequest, Completion, ProviderError, Role, TokenUsage};
use crate::config::{ProviderSettings, Secret};

const API_VERSION: &str = "2023-06-01";
/// `max_tokens` is required; an RLM reply (reasoning plus code) rarely needs more.
const DEFAULT_MAX_TOKENS: u32 = 8192;

/// A cache breakpoint: the prompt up to here is cached (for five minutes, renewed by use).
fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

pub struct AnthropicClient {
    http: Http,
    url: String,
    api_key: Secret,
}

impl AnthropicClient {
    pub fn new(
        base_url: &str,
        api_key: Secret,
        settings: &ProviderSettings,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: Http::new("anthropic", settings, vec![api_key.clone()])?,
            url: format!("{}/v1/messages", base_url.trim_end_matches('/')),
            api_key,
        })
    }

    fn body(request: &ChatRequest<'_>) -> Value {
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let mut messages: Vec<Value> = request
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        // Two cache breakpoints: the system prompt (the same for every turn) and the end of
        // the conversation. The next turn's request starts with all of this, so it reads it
        // back from the cache and pays the write price only for what the turn added.
        if request.cache_prompt {
            if let Some(last) = messages.last_mut() {
                let text = last["content"].take();
                last["content"] =
                    json!([{"type": "text", "text": text, "cache_control": ephemeral()}]);
            }
        }
        let sampling = request.sampling;
        let mut body = json!({
            "model": request.model,
            "max_tokens": sampling.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "messages": messages,
        });
        if !system.is_empty() {
            let text = system.join("\n\n");
            body["system"] = match request.cache_prompt {
                true => json!([{"type": "text", "text": text, "cache_control": ephemeral()}]),
                false => json!(text),
            };
        }
        // Newer Claude models refuse temperature and top_p together: temperature wins.
        match (sampling.temperature, sampling.top_p) {
            (Some(t), _) => body["temperature"] = json!(t),
            (None, Some(p)) => body["top_p"] = json!(p),
            (None, None) => {}
        }
        body
    }

    fn read(&self, status: u16, _headers: &HeaderMap, text: &str) -> Result<Completion, Failure> {
        if !(200..300).contains(&status) {
            let error = serde_json::from_str::<ErrorBody>(text)
                .ok()
                .map(|b| b.error);
            let (kind, message) = match &error {
                Some(e) => (e.kind.clone(), e.message.clone()),
                None => (
                    String::new(),
                    if text.trim().is_empty() {
                        "empty response body".into()
                    } else {
                        text.to_string()
                    },
                ),
            };
            let spent = status == 402
                || message.contains("credit balance is too low")
                || message.contains("reached your specified")
                || text.contains("enforced_spend_limit_reached");
            let retry = if spent { Retry::Never } else { Retry::ByStatus };
            let shown = if kind.is_empty() {
                message
            } else {
                format!("{message} ({kind})")
            };
            return Err(self.http.status(status, &shown, retry));
        }
        let reply: MessageReply =
            serde_json::from_str(text).map_err(|_| self.http.malformed(status, text))?;
        if reply.stop_reason.as_deref() == Some("refusal") {
            return Err(self.http.empty("refused by the model"));
        }
        let text: String = reply
            .content
            .iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text.as_deref())
            .collect();
        if text.is_empty() {
            let why = reply.stop_reason.unwrap_or_else(|| "no text blocks".into());
            return Err(self.http.empty(why));
        }
        let usage = reply.usage;
        let cached = usage.cache_read_input_tokens;
        Ok(Completion {
            text,
            usage: TokenUsage {
                // Anthropic counts cache reads and writes apart from input_tokens.
                input_tokens: usage.input_tokens + cached + usage.cache_creation_input_tokens,
                output_tokens: usage.output_tokens,
                cached_tokens: cached,
                // Thinking is billed within output_tokens and not reported apart.
                reasoning_tokens: 0,
                cache_write_tokens: usage.cache_creation_input_tokens,
            },
            finish_reason: reply.stop_reason,
            cost_usd: None,
        })
    }
}

impl ChatModel for AnthropicClient {
    fn complete<'a>(
        &'a self,
        request: ChatRequest<'a>,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move {
            let body = Self::body(&request);
            let build = |client: &reqwest::Client| {
                client
                    .post(&self.url)
                    .header("x-api-key", self.api_key.expose())
                    .header("anthropic-version", API_VERSION)
                    .json(&body)
            };
            self.http
                .exchange(request.on_retry, build, |s, h, t| self.read(s, h, t))
                .await
        })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct MessageReply {
    #[serde(default)]
    content: Vec<Block>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Usage,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    input_tokens: i64,
    #[serde(default)]
    output_tokens: i64,
    #[serde(default)]
    cache_creation_input_tokens: i64,
    #[serde(default)]
    cache_read_input_tokens: i64,
}
