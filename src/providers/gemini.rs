//! Gemini `generateContent`: `x-goog-api-key`, `contents` with `user`/`model` roles,
//! `systemInstruction`, `generationConfig`, `usageMetadata`.

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{Failure, Http, Retry};
use super::{ChatModel, ChatRequest, Completion, ProviderError, Role, TokenUsage};
use crate::config::{ProviderSettings, Secret};

pub struct GeminiClient {
    http: Http,
    base_url: String,
    api_key: Secret,
}

impl GeminiClient {
    pub fn new(
        base_url: &str,
        api_key: Secret,
        settings: &ProviderSettings,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: Http::new("gemini", settings, vec![api_key.clone()])?,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
        })
    }

    fn body(request: &ChatRequest<'_>) -> Value {
        let system: Vec<Value> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| json!({"text": m.content}))
            .collect();
        let contents: Vec<Value> = request
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| {
                let role = if m.role == Role::Assistant {
                    "model"
                } else {
                    "user"
                };
                json!({"role": role, "parts": [{"text": m.content}]})
            })
            .collect();
        let mut body = json!({"contents": contents});
        if !system.is_empty() {
            body["systemInstruction"] = json!({"parts": system});
        }
        let sampling = request.sampling;
        let mut config = serde_json::Map::new();
        if let Some(t) = sampling.temperature {
            config.insert("temperature".into(), json!(t));
        }
        if let Some(p) = sampling.top_p {
            config.insert("topP".into(), json!(p));
        }
        if let Some(max) = sampling.max_tokens {
            config.insert("maxOutputTokens".into(), json!(max));
        }
        if let Some(seed) = sampling.seed {
            config.insert("seed".into(), json!(seed));
        }
        if !config.is_empty() {
            body["generationConfig"] = Value::Object(config);
        }
        body
    }

    fn read(&self, status: u16, _headers: &HeaderMap, text: &str) -> Result<Completion, Failure> {
        if !(200..300).contains(&status) {
            return Err(self.error(status, text));
        }
        let reply: GenerateReply =
            serde_json::from_str(text).map_err(|_| self.http.malformed(status, text))?;
        let Some(candidate) = reply.candidates.into_iter().next() else {
            let reason = reply
                .prompt_feedback
                .and_then(|f| f.block_reason)
                .map(|r| format!("the prompt was blocked ({r})"))
                .unwrap_or_else(|| "no candidates in the response".into());
            return Err(self.http.empty(reason));
        };
        let text: String = candidate
            .content
            .map(|c| c.parts)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.thought)
            .filter_map(|p| p.text)
            .collect();
        let finish = candidate.finish_reason;
        if text.is_empty() {
            let why = finish
                .map(|r| format!("the reply was blocked ({r})"))
                .unwrap_or_else(|| "empty reply".into());
            return Err(self.http.empty(why));
        }
        let usage = reply.usage_metadata.unwrap_or_default();
        Ok(Completion {
            text,
            usage: TokenUsage {
                cache_write_tokens: 0,
                input_tokens: usage.prompt_token_count,
                // Thinking is billed as output.
                output_tokens: usage.candidates_token_count + usage.thoughts_token_count,
                cached_tokens: usage.cached_content_token_count,
                reasoning_tokens: usage.thoughts_token_count,
            },
            finish_reason: finish,
            cost_usd: None,
        })
    }

    fn error(&self, status: u16, text: &str) -> Failure {
        let Ok(ErrorBody { error }) = serde_json::from_str::<ErrorBody>(text) else {
            let message = if text.trim().is_empty() {
                "empty response body"
            } else {
                text
            };
            return self.http.status(status, message, Retry::ByStatus);
        };
        let exhausted = status == 402
            || error.message.contains("prepayment credits are depleted")
            || text.contains("PerDay");
        let wait = error
            .details
            .iter()
            .find_map(|d| d.retry_delay.as_deref().and_then(parse_delay));
        let retry = match (exhausted, wait) {
            (true, _) => Retry::Never,
            (false, Some(wait)) => Retry::After(wait),
            (false, None) => Retry::ByStatus,
        };
        let message = match error.status {
            Some(code) => format!("{} ({code})", error.message),
            None => error.message,
        };
        self.http.status(status, &message, retry)
    }
}

/// `"37s"` or `"1.5s"`.
fn parse_delay(text: &str) -> Option<Duration> {
    text.strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

impl ChatModel for GeminiClient {
    fn complete<'a>(
        &'a self,
        request: ChatRequest<'a>,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move {
            let url = format!(
                "{}/v1beta/models/{}:generateContent",
                self.base_url, request.model
            );
            let body = Self::body(&request);
            let build = |client: &reqwest::Client| {
                client
                    .post(&url)
                    .header("x-goog-api-key", self.api_key.expose())
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
    #[serde(default)]
    message: String,
    status: Option<String>,
    #[serde(default)]
    details: Vec<ErrorInfo>,
}

#[derive(Deserialize)]
struct ErrorInfo {
    #[serde(rename = "retryDelay")]
    retry_delay: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateReply {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: i64,
    #[serde(default)]
    candidates_token_count: i64,
    #[serde(default)]
    cached_content_token_count: i64,
    #[serde(default)]
    thoughts_token_count: i64,
}
