//! A chat-completions request as a run: which model, which prompt, which context.
//!
//! - `model`: `rlm` (the server's defaults), `rlm:<provider>` or `rlm:<provider>/<model>`.
//! - The prompt is the last message, which must be the user's: its text, or its first text
//!   part when it is a list of parts.
//! - The context is, first that applies: the `context` field (`extra_body` in the SDKs,
//!   any JSON, as in `POST /v1/runs`); the further text parts of the last message (one part:
//!   a string; several: a list of strings), so a client can attach a document; the earlier
//!   messages, as a list of `{role, content}`; else empty.
//! - `temperature`, `top_p`, `max_tokens` (or `max_completion_tokens`) and `seed` are the
//!   root model's sampling; rlmd's own run fields ride along in the body as well.
//! - `response_format` `json_schema` is the run's answer schema (`json_object`: any
//!   object); the message's content is then the answer's JSON.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::super::error::ApiError;
use super::super::submit::SubmitRun;
use crate::domain::Sampling;
use crate::providers::Providers;

/// The name of the model that stands for the server's defaults.
pub const RLM_MODEL: &str = "rlm";

/// Fields OpenAI defines are read; unknown ones (`user`, `logprobs`: false, ...) are
/// ignored, as the SDKs send fields a server may not know.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    seed: Option<i64>,
    n: Option<u32>,
    /// `text`, `json_object`, or `json_schema` (`{"json_schema": {"name", "schema"}}`):
    /// the answer must then fit the schema, and the content is its JSON.
    response_format: Option<Value>,
    /// Function calling is not supported (refused when given).
    tools: Option<Value>,
    // rlmd's own run fields.
    #[schema(value_type = Option<Object>)]
    context: Option<Box<RawValue>>,
    /// Instead of `context`: an uploaded context's id (`POST /v1/contexts`).
    context_id: Option<String>,
    sub_model: Option<String>,
    sub_provider: Option<String>,
    max_depth: Option<u32>,
    max_iterations: Option<u32>,
    system_prompt: Option<String>,
    #[schema(value_type = Option<Object>)]
    limits: Option<Box<RawValue>>,
    #[schema(value_type = Option<Object>)]
    sub_sampling: Option<Box<RawValue>>,
    #[schema(value_type = Option<Object>)]
    compaction: Option<Box<RawValue>>,
    metadata: Option<serde_json::Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    webhook: Option<Box<RawValue>>,
    /// As in `POST /v1/runs` (or give it as `response_format`).
    #[schema(value_type = Option<Object>)]
    answer_schema: Option<Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// The run body `POST /v1/runs` would take for this request.
#[derive(Serialize)]
struct RunBody<'a> {
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    sampling: Sampling,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_depth: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_iterations: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_sampling: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compaction: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a serde_json::Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer_schema: Option<Value>,
}

/// The provider and model a model name picks; `None`s are the server's defaults.
pub fn parse_model<'a>(
    name: &'a str,
    providers: &Providers,
) -> Result<(Option<&'a str>, Option<&'a str>), ApiError> {
    let not_found = || ApiError::ModelNotFound(name.to_string());
    if name == RLM_MODEL {
        return Ok((None, None));
    }
    let picked = name.strip_prefix("rlm:").ok_or_else(not_found)?;
    let (provider, model) = match picked.split_once('/') {
        Some((provider, model)) if !model.is_empty() => (provider, Some(model)),
        Some(_) => return Err(not_found()),
        None => (picked, None),
    };
    if providers.get(provider).is_none() {
        return Err(not_found());
    }
    Ok((Some(provider), model))
}

impl ChatRequest {
    /// Refuses what rlmd cannot honour, rather than ignoring it.
    pub fn check_supported(&self) -> Result<(), ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("`n` must be 1: a run gives one answer"));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_null()) {
            return Err(ApiError::bad_request(
                "unsupported_parameter",
                "`tools` (function calling) is not supported: the model works in its REPL; \
                 give Python tools with POST /v1/runs",
            ));
        }
        self.answer_schema().map(|_| ())
    }

    /// The answer schema `response_format` (or rlmd's own `answer_schema`) asks for.
    fn answer_schema(&self) -> Result<Option<Value>, ApiError> {
        let own = self.answer_schema.clone().filter(|s| !s.is_null());
        let format = match self.response_format.as_ref().filter(|f| !f.is_null()) {
            None => return Ok(own),
            Some(format) => format,
        };
        let from_format = match format.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(json!({"type": "object"})),
            Some("json_schema") => match format.pointer("/json_schema/schema") {
                Some(schema) if !schema.is_null() => Some(schema.clone()),
                _ => {
                    return Err(ApiError::invalid(
                        "`response_format.json_schema.schema` is required for type json_schema",
                    ))
                }
            },
            other => {
                return Err(ApiError::bad_request(
                    "unsupported_response_format",
                    format!(
                        "`response_format` of type {} is not supported: use text, json_object \
                         or json_schema",
                        other.map_or("(none)".to_string(), |k| format!("{k:?}"))
                    ),
                ))
            }
        };
        match (own, from_format) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "give `response_format` or `answer_schema`, not both",
            )),
            (own, from_format) => Ok(own.or(from_format)),
        }
    }

    /// The run this request asks for, as `POST /v1/runs` would take it.
    pub fn to_submit(&self, providers: &Providers) -> Result<SubmitRun, ApiError> {
        let (provider, model) = parse_model(&self.model, providers)?;
        let (prompt, context) = self.prompt_and_context()?;
        let context = match &self.context {
            Some(raw) => raw.clone(),
            None => RawValue::from_string(context.to_string()).expect("a value is JSON"),
        };
        let body = RunBody {
            prompt,
            // An uploaded context replaces the one the messages carry.
            context: (self.context.is_some() || self.context_id.is_none()).then_some(&*context),
            context_id: self.context_id.as_deref(),
            provider,
            model,
            sampling: Sampling {
                temperature: self.temperature,
                top_p: self.top_p,
                max_tokens: self.max_completion_tokens.or(self.max_tokens),
                seed: self.seed,
            },
            sub_model: self.sub_model.as_deref(),
            sub_provider: self.sub_provider.as_deref(),
            max_depth: self.max_depth,
            max_iterations: self.max_iterations,
            system_prompt: self.system_prompt.as_deref(),
            limits: self.limits.as_deref(),
            sub_sampling: self.sub_sampling.as_deref(),
            compaction: self.compaction.as_deref(),
            metadata: self.metadata.as_ref(),
            webhook: self.webhook.as_deref(),
            answer_schema: self.answer_schema()?,
        };
        let text = serde_json::to_string(&body).expect("a run body serializes");
        super::super::json::parse(text.as_bytes())
    }

    /// The prompt, and the context the messages carry (unused when `context` is given).
    fn prompt_and_context(&self) -> Result<(String, Value), ApiError> {
        let (last, earlier) = self
            .messages
            .split_last()
            .ok_or_else(|| ApiError::invalid("`messages` is empty"))?;
        if last.role != "user" {
            return Err(ApiError::invalid(
                "the last message must be the user's: it is the prompt",
            ));
        }
        let mut texts = texts_of(&last.content, earlier.len())?;
        if texts.is_empty() {
            return Err(ApiError::invalid("the last message has no text"));
        }
        let prompt = texts.remove(0);
        let context = match texts.len() {
            0 if earlier.is_empty() => json!(""),
            0 => {
                let mut history = Vec::with_capacity(earlier.len());
                for (index, message) in earlier.iter().enumerate() {
                    let text = texts_of(&message.content, index)?.join("\n\n");
                    history.push(json!({"role": message.role, "content": text}));
                }
                Value::Array(history)
            }
            1 => json!(texts.remove(0)),
            _ => json!(texts),
        };
        Ok((prompt, context))
    }
}

/// The text of a message's content: a string, or its text parts in order.
fn texts_of(content: &Value, index: usize) -> Result<Vec<String>, ApiError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(parts) => parts
            .iter()
            .map(
                |part| match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(text))) => Ok(text.clone()),
                    (kind, _) => Err(ApiError::bad_request(
                        "unsupported_content",
                        format!(
                            "messages[{index}]: only text parts are supported, not {}",
                            kind.unwrap_or("a part without a type")
                        ),
                    )),
                },
            )
            .collect(),
        _ => Err(ApiError::invalid(format!(
            "messages[{index}].content must be a string or a list of parts"
        ))),
    }
}
