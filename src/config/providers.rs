//! Where each provider is and how to authenticate, under the environment names of the
//! providers' own SDKs and of the original examples' `.env.sample`.

use std::collections::HashMap;

use super::{ConfigError, Secret, Vars};

/// A provider reached at a base URL with one key.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub api_key: Option<Secret>,
    pub base_url: String,
    pub default_model: String,
}

#[derive(Debug, Clone)]
pub struct AzureConfig {
    pub api_key: Option<Secret>,
    /// `https://<resource>.openai.azure.com`
    pub endpoint: Option<String>,
    /// The deployment to call; the requested model name when unset.
    pub deployment: Option<String>,
    /// `2024-02-01` and the like for the deployment URL form, `v1` for the v1 API.
    pub api_version: String,
    pub default_model: String,
}

#[derive(Debug, Clone)]
pub struct PortkeyConfig {
    pub api_key: Option<Secret>,
    pub base_url: String,
    /// `x-portkey-provider` (e.g. `@openai-prod`), when models are not given as `@slug/model`.
    pub provider: Option<String>,
    /// `x-portkey-virtual-key`, the older way to pick the provider.
    pub virtual_key: Option<Secret>,
    pub default_model: String,
}

#[derive(Debug, Clone)]
pub struct ProviderEndpoints {
    pub openai: EndpointConfig,
    pub anthropic: EndpointConfig,
    pub gemini: EndpointConfig,
    pub azure: AzureConfig,
    pub openrouter: EndpointConfig,
    pub portkey: PortkeyConfig,
    /// A LiteLLM proxy: configured by its base URL.
    pub litellm: Option<EndpointConfig>,
    /// `RLM_<PROVIDER>_MAX_CONCURRENCY`: model calls in flight per provider, for all runs.
    pub max_concurrency: HashMap<String, usize>,
    /// `RLM_PROVIDER_INITIAL_CONCURRENCY`: where each provider's adaptive cap starts (it
    /// then grows towards the maximum, or is cut when the provider says "too many").
    pub initial_concurrency: usize,
}

impl ProviderEndpoints {
    pub(super) fn from_vars(env: &Vars) -> Result<Self, ConfigError> {
        let key = |name: &str| env.get(name).map(Secret::new);
        let url = |name: &str, default: &str| {
            env.get(name)
                .unwrap_or_else(|| default.to_string())
                .trim_end_matches('/')
                .to_string()
        };
        let model = |names: &[&str], default: &str| {
            names
                .iter()
                .find_map(|n| env.get(n))
                .unwrap_or_else(|| default.to_string())
        };
        let litellm_base = env
            .get("LITELLM_PROXY_BASE_URL")
            .or_else(|| env.get("LITELLM_PROXY_API_BASE"));
        let mut max_concurrency = HashMap::new();
        for name in crate::providers::KNOWN_PROVIDERS {
            let var = format!("RLM_{}_MAX_CONCURRENCY", name.to_ascii_uppercase());
            max_concurrency.insert(name.to_string(), env.parse(&var, 64usize)?.max(1));
        }
        let initial_concurrency = env
            .parse("RLM_PROVIDER_INITIAL_CONCURRENCY", 32usize)?
            .max(1);
        Ok(Self {
            initial_concurrency,
            openai: EndpointConfig {
                api_key: key("OPENAI_API_KEY"),
                base_url: url("OPENAI_BASE_URL", "https://api.openai.com/v1"),
                default_model: model(&["RLM_OPENAI_MODEL"], "gpt-4o-mini"),
            },
            anthropic: EndpointConfig {
                api_key: key("ANTHROPIC_API_KEY"),
                base_url: url("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
                default_model: model(&["RLM_ANTHROPIC_MODEL"], "claude-sonnet-4-20250514"),
            },
            gemini: EndpointConfig {
                api_key: key("GOOGLE_API_KEY").or_else(|| key("GEMINI_API_KEY")),
                base_url: url(
                    "GEMINI_BASE_URL",
                    "https://generativelanguage.googleapis.com",
                ),
                default_model: model(&["RLM_GEMINI_MODEL"], "gemini-2.5-flash"),
            },
            azure: AzureConfig {
                api_key: key("AZURE_OPENAI_API_KEY"),
                endpoint: env
                    .get("AZURE_OPENAI_ENDPOINT")
                    .map(|e| e.trim_end_matches('/').to_string()),
                deployment: env.get("AZURE_OPENAI_DEPLOYMENT"),
                api_version: env
                    .get("AZURE_OPENAI_API_VERSION")
                    .or_else(|| env.get("OPENAI_API_VERSION"))
                    .unwrap_or_else(|| "2024-02-01".into()),
                default_model: model(
                    &["RLM_AZURE_MODEL", "RLM_AZURE_OPENAI_MODEL"],
                    "gpt-4o-mini",
                ),
            },
            openrouter: EndpointConfig {
                api_key: key("OPENROUTER_API_KEY"),
                base_url: url("OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"),
                default_model: model(&["RLM_OPENROUTER_MODEL"], "openai/gpt-4o-mini"),
            },
            portkey: PortkeyConfig {
                api_key: key("PORTKEY_API_KEY"),
                base_url: url("PORTKEY_BASE_URL", "https://api.portkey.ai/v1"),
                provider: env.get("PORTKEY_PROVIDER"),
                virtual_key: key("PORTKEY_VIRTUAL_KEY"),
                default_model: model(&["RLM_PORTKEY_MODEL"], "gpt-4o-mini"),
            },
            litellm: litellm_base.map(|base| EndpointConfig {
                api_key: key("LITELLM_PROXY_API_KEY").or_else(|| key("LITELLM_API_KEY")),
                base_url: base.trim_end_matches('/').to_string(),
                default_model: model(&["RLM_LITELLM_MODEL"], "gpt-4o-mini"),
            }),
            max_concurrency,
        })
    }
}
