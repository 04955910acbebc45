//! OpenAI Chat Completions, and every server that speaks it (vLLM, Ollama, llama.cpp, ...).

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::retry::{is_retryable_status, should_retry_header, RetryPolicy};
use super::{redact, ChatModel, ChatRequest, Completion, ProviderError, TokenUsage};
use crate::config::{ProviderSettings, Secret};

pub struct OpenAiClient {
    name: String,
    http: reqwest::Client,
    completions_url: String,
    api_key: Option<Secret>,
    retry: RetryPolicy,
}

impl OpenAiClient {
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: Option<Secret>,
        settings: &ProviderSettings,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .build()?;
        Ok(Self {
            name: name.to_string(),
            http,
            completions_url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
            retry: RetryPolicy::from_settings(settings),
        })
    }

    async fn complete_with_retries(
        &self,
        request: ChatRequest<'_>,
    ) -> Result<Completion, ProviderError> {
        let body = self.body(&request);
        let mut retry = 0;
        loop {
            let (error, headers) = match self.send_once(&body).await {
                Ok(completion) => return Ok(completion),
                Err(failure) => failure,
            };
            let retryable = match (&error, &headers) {
                (_, Some(h)) if should_retry_header(h).is_some() => should_retry_header(h).unwrap(),
                (
                    ProviderError::Status {
                        status, message, ..
                    },
                    _,
                ) => is_retryable_status(*status) && !message.contains("insufficient_quota"),
                (ProviderError::Timeout { .. } | ProviderError::Transport { .. }, _) => true,
                _ => false,
            };
            if !retryable || retry >= self.retry.max_retries {
                return Err(error);
            }
            let wait = self.retry.delay(retry, headers.as_ref());
            tracing::warn!(provider = %self.name, retry = retry + 1, wait_ms = wait.as_millis() as u64, %error, "retrying model call");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    fn body(&self, request: &ChatRequest<'_>) -> serde_json::Value {
        let mut body = json!({"model": request.model, "messages": request.messages});
        let sampling = request.sampling;
        if let Some(t) = sampling.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(p) = sampling.top_p {
            body["top_p"] = json!(p);
        }
        if let Some(seed) = sampling.seed {
            body["seed"] = json!(seed);
        }
        if let Some(max) = sampling.max_tokens {
            // OpenAI itself wants the newer name (its reasoning models refuse the old one);
            // compatible servers know `max_tokens`.
            let field = if self.completions_url.contains("api.openai.com") {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            body[field] = json!(max);
        }
        body
    }

    /// One HTTP exchange. On failure, also the response headers (for `retry-after`).
    async fn send_once(
        &self,
        body: &serde_json::Value,
    ) -> Result<Completion, (ProviderError, Option<reqwest::header::HeaderMap>)> {
        let mut request = self.http.post(&self.completions_url).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| (self.transport_error(&e), None))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| (self.transport_error(&e), Some(headers.clone())))?;
        if !(200..300).contains(&status) {
            let message = error_message(&text);
            let error = ProviderError::Status {
                provider: self.name.clone(),
                status,
                message: self.redact(&message),
            };
            return Err((error, Some(headers)));
        }
        self.parse_completion(status, &text)
            .map_err(|e| (e, Some(headers)))
    }

    fn parse_completion(&self, status: u16, text: &str) -> Result<Completion, ProviderError> {
        let parsed: ChatCompletion =
            serde_json::from_str(text).map_err(|_| ProviderError::Malformed {
                provider: self.name.clone(),
                status,
                excerpt: self.redact(text),
            })?;
        let Some(choice) = parsed.choices.into_iter().next() else {
            return Err(ProviderError::Malformed {
                provider: self.name.clone(),
                status,
                excerpt: "no choices in the response".into(),
            });
        };
        let reason = choice.finish_reason.clone();
        let Some(text) = choice.message.content else {
            let why = choice
                .message
                .refusal
                .map(|r| format!("refused: {r}"))
                .or(reason)
                .unwrap_or_else(|| "unknown".into());
            return Err(ProviderError::Empty {
                provider: self.name.clone(),
                reason: why,
            });
        };
        let usage = parsed.usage.unwrap_or_default();
        Ok(Completion {
            text,
            usage: TokenUsage {
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                cached_tokens: usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            },
            finish_reason: choice.finish_reason,
            cost_usd: usage.cost,
        })
    }

    fn transport_error(&self, error: &reqwest::Error) -> ProviderError {
        if error.is_timeout() {
            ProviderError::Timeout {
                provider: self.name.clone(),
            }
        } else {
            // reqwest's message names the URL, never headers, so the key cannot appear.
            let mut message = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            ProviderError::Transport {
                provider: self.name.clone(),
                message: self.redact(&message),
            }
        }
    }

    fn redact(&self, text: &str) -> String {
        redact(text, self.api_key.as_ref().map(Secret::expose))
    }
}

impl ChatModel for OpenAiClient {
    fn complete<'a>(
        &'a self,
        request: ChatRequest<'a>,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(self.complete_with_retries(request))
    }
}

/// The `error.message` of an OpenAI error body (with its code), else the raw text.
fn error_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        message: Option<String>,
        code: Option<serde_json::Value>,
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(Envelope { error }) => {
            let code = error
                .code
                .map(|c| {
                    c.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| c.to_string())
                })
                .or(error.kind)
                .unwrap_or_default();
            let message = error.message.unwrap_or_default();
            if code.is_empty() {
                message
            } else {
                format!("{message} ({code})")
            }
        }
        Err(_) if body.trim().is_empty() => "empty response body".into(),
        Err(_) => body.to_string(),
    }
}

#[derive(Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    prompt_tokens: i64,
    #[serde(default)]
    completion_tokens: i64,
    prompt_tokens_details: Option<PromptTokensDetails>,
    /// OpenRouter reports what the call cost.
    cost: Option<f64>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: i64,
}
