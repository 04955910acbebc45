//! `POST /v1/runs`: the request body, checked and turned into a run to queue.

use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::answers::AnswerSchema;
use crate::config::RunDefaults;
use crate::contexts::ContextRef;
use crate::domain::{CacheScope, Compaction, Limits, RunId, RunSpec, Sampling, Tool, Webhook};
use crate::providers::{Providers, KNOWN_PROVIDERS};
use crate::store::{NewRun, RunContext};

const MAX_ITERATIONS: u32 = 1_000;
const MAX_DEPTH: u32 = 8;
const MAX_BLOCK_TIMEOUT_S: f64 = 24.0 * 3600.0;
const MAX_CONCURRENT_SUBCALLS: usize = 256;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRun {
    prompt: String,
    /// Any JSON: a string, a list or an object; the REPL's `context`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Option<Box<RawValue>>,
    /// Instead of `context`: the id of a context uploaded with `POST /v1/contexts`.
    #[serde(default)]
    context_id: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    sub_model: Option<String>,
    sub_provider: Option<String>,
    max_depth: Option<u32>,
    max_iterations: Option<u32>,
    system_prompt: Option<String>,
    #[serde(default)]
    limits: Option<LimitsInput>,
    #[serde(default)]
    sampling: Option<Sampling>,
    #[serde(default)]
    sub_sampling: Option<Sampling>,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
    #[serde(default)]
    sub_tools: Option<Vec<Tool>>,
    #[serde(default)]
    compaction: Option<CompactionInput>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    webhook: Option<Webhook>,
    /// A JSON Schema the answer must fit: the run ends only on an answer that does, and
    /// its `answer` is then that JSON value.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    answer_schema: Option<serde_json::Value>,
    /// `off`, `tree` or `global`: deterministic sub-calls answered from earlier identical
    /// ones of this run tree, or of any run of this API key.
    #[serde(default)]
    cache: Option<CacheScope>,
}

/// `"compaction": true`, or `{"threshold_pct": 0.5}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
enum CompactionInput {
    On(bool),
    Settings(CompactionSettings),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CompactionSettings {
    #[serde(default)]
    threshold_pct: Option<f64>,
}

impl CompactionInput {
    fn resolve(self) -> Result<Option<Compaction>, ApiError> {
        let threshold_pct = match self {
            CompactionInput::On(false) => return Ok(None),
            CompactionInput::On(true) => Compaction::DEFAULT_THRESHOLD,
            CompactionInput::Settings(settings) => settings
                .threshold_pct
                .unwrap_or(Compaction::DEFAULT_THRESHOLD),
        };
        if !(threshold_pct > 0.0 && threshold_pct <= 1.0) {
            return Err(ApiError::invalid(
                "`compaction.threshold_pct` must be above 0 and at most 1",
            ));
        }
        Ok(Some(Compaction { threshold_pct }))
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LimitsInput {
    block_timeout_s: Option<f64>,
    output_chars: Option<usize>,
    max_concurrent_subcalls: Option<usize>,
    timeout_s: Option<f64>,
    max_tokens: Option<i64>,
    max_cost_usd: Option<f64>,
    max_llm_calls: Option<i64>,
    max_errors: Option<u32>,
}

impl SubmitRun {
    /// The run this body asks for, fully checked (fields, tools and context), owned by
    /// `owner`: what every submitting route stores.
    pub async fn checked_run(
        self,
        state: &super::AppState,
        owner: Option<crate::store::KeyId>,
    ) -> Result<NewRun, ApiError> {
        let (new_run, context) = self.into_new_run(&state.defaults, &state.providers)?;
        let mut new_run = super::preflight::check(new_run).await?;
        new_run.context = context.resolve(state, owner).await?;
        new_run.owner = owner;
        Ok(new_run)
    }

    /// Checks every field and fills the gaps from the server's defaults. The context is
    /// given back as asked for: it is resolved (scanned, or looked up) apart.
    pub fn into_new_run(
        self,
        defaults: &RunDefaults,
        providers: &Providers,
    ) -> Result<(NewRun, ContextRequest), ApiError> {
        if self.prompt.trim().is_empty() {
            return Err(ApiError::invalid("`prompt` must not be empty"));
        }
        let context = ContextRequest::of(self.context, self.context_id)?;
        let provider =
            non_empty("provider", self.provider)?.unwrap_or_else(|| defaults.provider.clone());
        let default_model = check_provider(&provider, providers)?;
        let model = non_empty("model", self.model)?.unwrap_or_else(|| default_model.to_string());
        let sub_model = non_empty("sub_model", self.sub_model)?;
        let system_prompt = non_empty("system_prompt", self.system_prompt)?;
        let max_iterations = self.max_iterations.unwrap_or(defaults.max_iterations);
        if !(1..=MAX_ITERATIONS).contains(&max_iterations) {
            return Err(ApiError::invalid(format!(
                "`max_iterations` must be between 1 and {MAX_ITERATIONS}"
            )));
        }
        let sub_provider = non_empty("sub_provider", self.sub_provider)?;
        if let Some(name) = &sub_provider {
            check_provider(name, providers)?;
        }
        let max_depth = self.max_depth.unwrap_or(defaults.max_depth);
        if max_depth > MAX_DEPTH {
            return Err(ApiError::invalid(format!(
                "`max_depth` must be between 0 and {MAX_DEPTH}"
            )));
        }
        // A batch may fill its sub-provider's cap unless told otherwise.
        let sub_cap = providers
            .get(sub_provider.as_deref().unwrap_or(&provider))
            .map_or(MAX_CONCURRENT_SUBCALLS, |h| h.limiter.state().max);
        let limits = resolve_limits(self.limits.unwrap_or_default(), defaults, sub_cap)?;
        let sampling = self.sampling.unwrap_or_default();
        sampling.check("sampling").map_err(ApiError::invalid)?;
        if let Some(sub) = &self.sub_sampling {
            sub.check("sub_sampling").map_err(ApiError::invalid)?;
        }
        let compaction = match self.compaction {
            Some(input) => input.resolve()?,
            None => None,
        };
        let tools = self.tools.unwrap_or_default();
        Tool::check_all(&tools, "tools").map_err(ApiError::invalid)?;
        if let Some(sub_tools) = &self.sub_tools {
            Tool::check_all(sub_tools, "sub_tools").map_err(ApiError::invalid)?;
        }
        if let Some(webhook) = &self.webhook {
            defaults
                .webhooks
                .check(&webhook.url)
                .map_err(|why| ApiError::bad_request("invalid_webhook", why))?;
            if webhook
                .secret
                .as_ref()
                .is_some_and(|s| s.is_empty() || s.len() > 1024)
            {
                return Err(ApiError::bad_request(
                    "invalid_webhook",
                    "`webhook.secret` must be 1 to 1024 characters",
                ));
            }
        }
        let answer_schema = self.answer_schema.filter(|s| !s.is_null());
        if let Some(schema) = &answer_schema {
            AnswerSchema::compile(schema).map_err(|why| {
                ApiError::bad_request(
                    "invalid_answer_schema",
                    format!("`answer_schema` is not a usable JSON Schema: {why}"),
                )
            })?;
        }
        let id = RunId::new();
        let new_run = NewRun {
            id,
            root_id: id,
            parent_id: None,
            depth: 0,
            prompt: self.prompt,
            spec: RunSpec {
                provider,
                model,
                sub_model,
                sub_provider,
                max_depth,
                max_iterations,
                system_prompt,
                limits,
                sampling,
                sub_sampling: self.sub_sampling,
                tools,
                sub_tools: self.sub_tools,
                compaction,
                metadata: self.metadata.unwrap_or_default(),
                webhook: self.webhook,
                answer_schema,
                cache: self.cache.unwrap_or(defaults.cache.default_scope),
            },
            context: RunContext::Empty,
            session_id: None,
            owner: None,
        };
        Ok((new_run, context))
    }
}

/// The context a body asks for, before it is resolved.
#[derive(Debug, Clone)]
pub enum ContextRequest {
    None,
    /// JSON text from the body (a string, a list or an object).
    Inline(String),
    /// An upload's id, as given.
    Id(String),
}

impl ContextRequest {
    fn of(inline: Option<Box<RawValue>>, id: Option<String>) -> Result<Self, ApiError> {
        let inline = inline.filter(|raw| raw.get().trim() != "null");
        match (inline, id) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "give `context` or `context_id`, not both",
            )),
            (None, Some(id)) => Ok(Self::Id(id)),
            (None, None) => Ok(Self::None),
            (Some(raw), None) => match raw.get().trim_start().as_bytes().first() {
                // Into a String without copying: contexts run to tens of megabytes.
                Some(b'"' | b'[' | b'{') => Ok(Self::Inline(Box::<str>::from(raw).into_string())),
                _ => Err(ApiError::invalid(
                    "`context` must be a string, a list or an object",
                )),
            },
        }
    }

    /// What the run is given: an inline context checked and described (off the async
    /// runtime: it may be tens of megabytes), or the upload `owner` has under that id.
    pub async fn resolve(
        self,
        state: &super::AppState,
        owner: Option<crate::store::KeyId>,
    ) -> Result<RunContext, ApiError> {
        match self {
            Self::None => Ok(RunContext::Empty),
            Self::Id(raw) => match super::contexts::find(state, owner, &raw).await {
                Ok(entry) => Ok(RunContext::Stored(entry.reference())),
                Err(ApiError::NotFound(_)) => Err(ApiError::bad_request(
                    "unknown_context",
                    format!("`context_id`: no context with id {raw:?} was uploaded with this key"),
                )),
                Err(other) => Err(other),
            },
            Self::Inline(json) => {
                let cache = state.contexts.clone();
                tokio::task::spawn_blocking(move || {
                    let reference = ContextRef::of_json(&json)
                        .map_err(|why| ApiError::bad_request("invalid_context", why))?;
                    cache.put(&reference.id, json.as_bytes());
                    Ok(RunContext::Inline {
                        reference,
                        json: json.into(),
                    })
                })
                .await
                .map_err(|e| ApiError::Internal(format!("the context check failed: {e}")))?
            }
        }
    }
}

fn resolve_limits(
    input: LimitsInput,
    defaults: &RunDefaults,
    sub_cap: usize,
) -> Result<Limits, ApiError> {
    let block_timeout_s = input
        .block_timeout_s
        .unwrap_or(defaults.block_timeout.as_secs_f64());
    if !(block_timeout_s > 0.0 && block_timeout_s <= MAX_BLOCK_TIMEOUT_S) {
        return Err(ApiError::invalid(
            "`limits.block_timeout_s` must be above 0 and at most 86400",
        ));
    }
    let output_chars = input.output_chars.unwrap_or(defaults.output_chars);
    if !(100..=10_000_000).contains(&output_chars) {
        return Err(ApiError::invalid(
            "`limits.output_chars` must be between 100 and 10000000",
        ));
    }
    let max_concurrent_subcalls = input
        .max_concurrent_subcalls
        .or(defaults.max_concurrent_subcalls)
        .unwrap_or(sub_cap.min(MAX_CONCURRENT_SUBCALLS));
    if !(1..=MAX_CONCURRENT_SUBCALLS).contains(&max_concurrent_subcalls) {
        return Err(ApiError::invalid(format!(
            "`limits.max_concurrent_subcalls` must be between 1 and {MAX_CONCURRENT_SUBCALLS}"
        )));
    }
    let timeout_s = input
        .timeout_s
        .or(defaults.timeout.map(|t| t.as_secs_f64()));
    if timeout_s.is_some_and(|t| !(t > 0.0 && t <= MAX_BLOCK_TIMEOUT_S)) {
        return Err(ApiError::invalid(
            "`limits.timeout_s` must be above 0 and at most 86400",
        ));
    }
    let max_tokens = input.max_tokens.or(defaults.max_tokens);
    if max_tokens.is_some_and(|n| n < 1) {
        return Err(ApiError::invalid("`limits.max_tokens` must be at least 1"));
    }
    let max_cost_usd = input.max_cost_usd.or(defaults.max_cost_usd);
    if max_cost_usd.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
        return Err(ApiError::invalid("`limits.max_cost_usd` must be above 0"));
    }
    let max_llm_calls = input.max_llm_calls.or(defaults.max_llm_calls);
    if max_llm_calls.is_some_and(|n| n < 1) {
        return Err(ApiError::invalid(
            "`limits.max_llm_calls` must be at least 1",
        ));
    }
    let max_errors = input.max_errors.or(defaults.max_errors);
    if max_errors == Some(0) {
        return Err(ApiError::invalid("`limits.max_errors` must be at least 1"));
    }
    Ok(Limits {
        block_timeout_s,
        output_chars,
        max_concurrent_subcalls,
        timeout_s,
        max_tokens,
        max_cost_usd,
        max_llm_calls,
        max_errors,
    })
}

/// A provider name this server knows and has credentials for; returns its default model.
fn check_provider<'p>(name: &str, providers: &'p Providers) -> Result<&'p str, ApiError> {
    if !KNOWN_PROVIDERS.contains(&name) {
        return Err(ApiError::bad_request(
            "unknown_provider",
            format!(
                "unknown provider {name:?}; known providers: {}",
                KNOWN_PROVIDERS.join(", ")
            ),
        ));
    }
    providers.default_model(name).ok_or_else(|| {
        ApiError::bad_request(
            "provider_not_configured",
            format!(
                "provider {name:?} is not configured on this server (set its API key or base URL)"
            ),
        )
    })
}

fn non_empty(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.trim().is_empty() => {
            Err(ApiError::invalid(format!("`{field}` must not be empty")))
        }
        other => Ok(other),
    }
}
