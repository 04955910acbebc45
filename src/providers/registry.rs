//! The configured providers: a client for each, with its default model and a concurrency
//! cap shared by every run, so a burst of sub-calls cannot overrun an account's limits.

use std::collections::HashMap;
use std::sync::Arc;

use super::limiter::Limiter;
use super::{
    AnthropicClient, ChatModel, Flavor, GeminiClient, OpenAiClient, PriceTable, KNOWN_PROVIDERS,
};
use crate::config::{Config, ProviderSettings, Secret};
use serde_json::{json, Value};

/// One configured provider.
pub struct ProviderHandle {
    pub name: String,
    pub client: Arc<dyn ChatModel>,
    pub default_model: String,
    /// Model calls in flight to this provider, across all runs, under an adaptive cap (its
    /// state holds the configured maximum).
    pub limiter: Arc<Limiter>,
}

/// What `/v1/providers` says of a provider, configured or not (never its key).
#[derive(Debug, Clone)]
struct ProviderInfo {
    name: &'static str,
    base_url: Option<String>,
    default_model: String,
}

#[derive(Clone, Default)]
pub struct Providers {
    handles: HashMap<String, Arc<ProviderHandle>>,
    known: Vec<ProviderInfo>,
}

impl Providers {
    pub fn from_config(config: &Config) -> Result<Self, reqwest::Error> {
        let p = &config.providers_endpoints;
        let settings = &config.providers;
        let mut providers = Self::default();
        let cap = |name: &str| p.max_concurrency.get(name).copied().unwrap_or(64);
        let initial = p.initial_concurrency;
        let mut add = |info: ProviderInfo, client: Option<Arc<dyn ChatModel>>| {
            if let Some(client) = client {
                let limiter = Limiter::new(cap(info.name), initial);
                providers.insert(info.name, client, &info.default_model, limiter);
            }
            providers.known.push(info);
        };
        let compatible =
            |name: &str, base: &str, key: Option<Secret>, flavor: Flavor, s: &ProviderSettings| {
                OpenAiClient::new(name, base, key, flavor, s)
                    .map(|c| Arc::new(c) as Arc<dyn ChatModel>)
            };

        let openai = &p.openai;
        // A local OpenAI-compatible server needs no key, only its base URL.
        let usable = openai.api_key.is_some() || !openai.base_url.contains("api.openai.com");
        let client = usable
            .then(|| {
                compatible(
                    "openai",
                    &openai.base_url,
                    openai.api_key.clone(),
                    Flavor::OpenAi,
                    settings,
                )
            })
            .transpose()?;
        add(
            info("openai", Some(&openai.base_url), &openai.default_model),
            client,
        );

        let anthropic = &p.anthropic;
        let client = match &anthropic.api_key {
            Some(key) => Some(Arc::new(AnthropicClient::new(
                &anthropic.base_url,
                key.clone(),
                settings,
            )?) as Arc<dyn ChatModel>),
            None => None,
        };
        add(
            info(
                "anthropic",
                Some(&anthropic.base_url),
                &anthropic.default_model,
            ),
            client,
        );

        let gemini = &p.gemini;
        let client = match &gemini.api_key {
            Some(key) => Some(
                Arc::new(GeminiClient::new(&gemini.base_url, key.clone(), settings)?)
                    as Arc<dyn ChatModel>,
            ),
            None => None,
        };
        add(
            info("gemini", Some(&gemini.base_url), &gemini.default_model),
            client,
        );

        let azure = &p.azure;
        let client = match (&azure.api_key, &azure.endpoint) {
            (Some(key), Some(endpoint)) => {
                let flavor = Flavor::Azure {
                    deployment: azure.deployment.clone(),
                    api_version: azure.api_version.clone(),
                };
                Some(compatible(
                    "azure_openai",
                    endpoint,
                    Some(key.clone()),
                    flavor,
                    settings,
                )?)
            }
            _ => None,
        };
        add(
            info(
                "azure_openai",
                azure.endpoint.as_deref(),
                &azure.default_model,
            ),
            client,
        );

        let openrouter = &p.openrouter;
        let client = openrouter
            .api_key
            .as_ref()
            .map(|key| {
                compatible(
                    "openrouter",
                    &openrouter.base_url,
                    Some(key.clone()),
                    Flavor::OpenRouter,
                    settings,
                )
            })
            .transpose()?;
        add(
            info(
                "openrouter",
                Some(&openrouter.base_url),
                &openrouter.default_model,
            ),
            client,
        );

        let portkey = &p.portkey;
        let client = match &portkey.api_key {
            Some(key) => {
                let flavor = Flavor::Portkey {
                    provider: portkey.provider.clone(),
                    virtual_key: portkey.virtual_key.clone(),
                };
                Some(compatible(
                    "portkey",
                    &portkey.base_url,
                    Some(key.clone()),
                    flavor,
                    settings,
                )?)
            }
            None => None,
        };
        add(
            info("portkey", Some(&portkey.base_url), &portkey.default_model),
            client,
        );

        let (client, litellm_info) = match &p.litellm {
            Some(litellm) => (
                Some(compatible(
                    "litellm",
                    &litellm.base_url,
                    litellm.api_key.clone(),
                    Flavor::LiteLlm,
                    settings,
                )?),
                info("litellm", Some(&litellm.base_url), &litellm.default_model),
            ),
            None => (None, info("litellm", None, "gpt-4o-mini")),
        };
        add(litellm_info, client);
        Ok(providers)
    }

    fn insert(
        &mut self,
        name: &str,
        client: Arc<dyn ChatModel>,
        default_model: &str,
        limiter: Arc<Limiter>,
    ) {
        let handle = ProviderHandle {
            name: name.to_string(),
            client,
            default_model: default_model.to_string(),
            limiter,
        };
        self.handles.insert(name.to_string(), Arc::new(handle));
    }

    pub fn get(&self, name: &str) -> Option<Arc<ProviderHandle>> {
        self.handles.get(name).cloned()
    }

    /// The configured providers, by name, with their default models.
    pub fn configured(&self) -> impl Iterator<Item = (&str, &str)> {
        self.handles
            .values()
            .map(|h| (h.name.as_str(), h.default_model.as_str()))
    }

    /// Each configured provider's adaptive cap as it stands.
    pub fn caps(&self) -> impl Iterator<Item = (&str, super::LimiterState)> {
        self.handles
            .values()
            .map(|h| (h.name.as_str(), h.limiter.state()))
    }

    pub fn default_model(&self, name: &str) -> Option<&str> {
        self.handles.get(name).map(|h| h.default_model.as_str())
    }

    /// Every known provider: configured or not, default model, base URL, concurrency, and
    /// the models the price table knows for its API family.
    pub fn describe(&self, prices: &PriceTable) -> Vec<Value> {
        KNOWN_PROVIDERS
            .iter()
            .map(|name| {
                let info = self.known.iter().find(|i| i.name == *name);
                let handle = self.handles.get(*name);
                let family = family_of(name);
                let mut models: Vec<Value> = prices
                    .models()
                    .filter(|(_, price)| family.is_none() || price.provider.as_deref() == family)
                    .map(|(model, price)| json!({"model": model, "usd_per_million_tokens": {
                        "input": price.input, "output": price.output, "cached_input": price.cached_input},
                        "context_window": price.context_window}))
                    .collect();
                models.sort_by(|a, b| a["model"].as_str().cmp(&b["model"].as_str()));
                // One snapshot, so the three figures agree.
                let cap = handle.map(|h| h.limiter.state());
                json!({
                    "name": name,
                    "configured": handle.is_some(),
                    "default_model": info.map(|i| i.default_model.clone()),
                    "base_url": info.and_then(|i| i.base_url.clone()),
                    "max_concurrency": cap.map(|c| c.max),
                    "concurrency_limit": cap.map(|c| c.limit),
                    "in_flight": cap.map(|c| c.in_flight),
                    "models": models,
                })
            })
            .collect()
    }
}

fn info(name: &'static str, base_url: Option<&str>, default_model: &str) -> ProviderInfo {
    ProviderInfo {
        name,
        base_url: base_url.map(str::to_string),
        default_model: default_model.to_string(),
    }
}

/// The API family whose models a provider serves; `None`: any (gateways and routers).
fn family_of(provider: &str) -> Option<&'static str> {
    match provider {
        "openai" | "azure_openai" => Some("openai"),
        "anthropic" => Some("anthropic"),
        "gemini" => Some("gemini"),
        _ => None,
    }
}
