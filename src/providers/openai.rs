//! OpenAI Chat Completions, and the services that speak it: Azure OpenAI, OpenRouter,
//! Portkey, a LiteLLM proxy, and any OpenAI-compatible server (vLLM, Ollama, llama.cpp).

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{Failure, Http, Retry};
use super::{ChatModel, ChatRequest, Completion, ProviderError, TokenUsage};
use crate::config::{ProviderSettings, Secret};

/// Which service behind the OpenAI wire format: how to address and authenticate it, and
/// its quirks.
#[derive(Debug, Clone)]
pub enum Flavor {
    OpenAi,
    /// `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…` with an
    /// `api-key` header; `api_version: "v1"` selects `{endpoint}/openai/v1/chat/completions`.
    Azure {
        deployment: Option<String>,
        api_version: String,
    },
    /// Reports each call's cost in `usage.cost`; may answer 200 with an error body.
    OpenRouter,
    /// `x-portkey-api-key`, and the provider as a header (or in the model, `@slug/model`).
    Portkey {
        provider: Option<String>,
        virtual_key: Option<Secret>,
    },
    /// Reports each call's cost in the `x-litellm-response-cost` header.
    LiteLlm,
}

pub struct OpenAiClient {
    http: Http,
    base_url: String,
    api_key: Option<Secret>,
    flavor: Flavor,
}

impl OpenAiClient {
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: Option<Secret>,
        flavor: Flavor,
        settings: &ProviderSettings,
    ) -> Result<Self, reqwest::Error> {
        let mut secrets: Vec<Secret> = api_key.iter().cloned().collect();
        if let Flavor::Portkey {
            virtual_key: Some(key),
            ..
        } = &flavor
        {
            secrets.push(key.clone());
        }
        Ok(Self {
            http: Http::new(name, settings, secrets)?,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            flavor,
        })
    }

    fn url(&self, model: &str) -> String {
        match &self.flavor {
            Flavor::Azure { api_version, .. } if api_version == "v1" => {
                format!("{}/openai/v1/chat/completions", self.base_url)
            }
            Flavor::Azure {
                deployment,
                api_version,
            } => format!(
                "{}/openai/deployments/{}/chat/completions?api-version={api_version}",
                self.base_url,
                deployment.as_deref().unwrap_or(model)
            ),
            _ => format!("{}/chat/completions", self.base_url),
        }
    }

    fn body(&self, request: &ChatRequest<'_>) -> Value {
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
            let field = match self.flavor {
                Flavor::OpenAi if self.base_url.contains("api.openai.com") => {
                    "max_completion_tokens"
                }
                Flavor::Azure { .. } => "max_completion_tokens",
                _ => "max_tokens",
            };
            body[field] = json!(max);
        }
        body
    }

    fn request(
        &self,
        client: &reqwest::Client,
        url: &str,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let mut request = client.post(url).json(body);
        let key = self.api_key.as_ref().map(Secret::expose);
        match (&self.flavor, key) {
            (Flavor::Azure { .. }, Some(key)) => request = request.header("api-key", key),
            (
                Flavor::Portkey {
                    provider,
                    virtual_key,
                },
                key,
            ) => {
                if let Some(key) = key {
                    request = request.header("x-portkey-api-key", key);
                }
                if let Some(provider) = provider {
                    request = request.header("x-portkey-provider", provider);
                }
                if let Some(virtual_key) = virtual_key {
                    request = request.header("x-portkey-virtual-key", virtual_key.expose());
                }
            }
            (_, Some(key)) => request = request.bearer_auth(key),
            (_, None) => {}
        }
        if let Flavor::OpenRouter = self.flavor {
            request = request.header("X-Title", "rlmd");
        }
        request
    }

    fn read(&self, status: u16, headers: &HeaderMap, text: &str) -> Result<Completion, Failure> {
        if !(200..300).contains(&status) {
            let (message, code) = error_message(text);
            return Err(self.http.status(
                status,
                &message,
                self.retry_for(status, &code, &message),
            ));
        }
        let parsed: ChatCompletion =
            serde_json::from_str(text).map_err(|_| self.http.malformed(status, text))?;
        if let Some(error) = parsed.error {
            // OpenRouter: the model failed after the response had begun, with a 200.
            let code = error.code.as_ref().and_then(Value::as_u64).unwrap_or(502) as u16;
            let message = error
                .message
                .unwrap_or_else(|| "the provider failed mid-response".into());
            return Err(self.http.status(code, &message, Retry::ByStatus));
        }
        let Some(choice) = parsed.choices.into_iter().next() else {
            return Err(self.http.malformed(status, "no choices in the response"));
        };
        let Some(content) = choice.message.content else {
            let why = choice
                .message
                .refusal
                .map(|r| format!("refused: {r}"))
                .or(choice.finish_reason)
                .unwrap_or_else(|| "unknown".into());
            return Err(self.http.empty(why));
        };
        let usage = parsed.usage.unwrap_or_default();
        let header_cost = headers
            .get("x-litellm-response-cost")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        Ok(Completion {
            text: content,
            usage: TokenUsage {
                cache_write_tokens: 0,
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                cached_tokens: usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
                reasoning_tokens: usage
                    .completion_tokens_details
                    .map_or(0, |d| d.reasoning_tokens),
            },
            finish_reason: choice.finish_reason,
            cost_usd: usage.cost.or(header_cost),
        })
    }

    /// Quota and budget errors look retryable (some are 429s) but never succeed on retry.
    fn retry_for(&self, status: u16, code: &str, message: &str) -> Retry {
        let exhausted = code == "insufficient_quota"
            || code == "budget_exceeded"
            || message.contains("insufficient_quota")
            || message.contains("Budget has been exceeded");
        if exhausted || status == 402 {
            Retry::Never
        } else {
            Retry::ByStatus
        }
    }
}

impl ChatModel for OpenAiClient {
    fn complete<'a>(
        &'a self,
        request: ChatRequest<'a>,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move {
            let url = self.url(request.model);
            let body = self.body(&request);
            self.http
                .exchange(
                    request.on_retry,
                    |client| self.request(client, &url, &body),
                    |s, h, t| self.read(s, h, t),
                )
                .await
        })
    }
}

/// The `error.message` of an OpenAI-style error body, and its code (or type).
fn error_message(body: &str) -> (String, String) {
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
            let text = if code.is_empty() {
                message
            } else {
                format!("{message} ({code})")
            };
            (text, code)
        }
        Err(_) if body.trim().is_empty() => ("empty response body".into(), String::new()),
        Err(_) => (body.to_string(), String::new()),
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
    code: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
    error: Option<ErrorDetail>,
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
    completion_tokens_details: Option<CompletionTokensDetails>,
    /// OpenRouter reports what the call cost.
    cost: Option<f64>,
}

#[derive(Deserialize)]
struct CompletionTokensDetails {
    #[serde(default)]
    reasoning_tokens: i64,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: i64,
}
