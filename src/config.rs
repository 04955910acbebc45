//! Configuration, read once from the environment (and an optional `.env`).
//!
//! Nothing else in the crate reads environment variables: everything the server needs is
//! a field here, so tests build a `Config` directly and every knob is documented in
//! `.env.sample`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod auth;
mod cache;
mod providers;
mod sandbox;
mod webhooks;
pub use auth::{AuthConfig, AuthMode};
pub use cache::CacheConfig;
pub use providers::{AzureConfig, EndpointConfig, PortkeyConfig, ProviderEndpoints};
pub use sandbox::{SandboxConfig, SandboxMode};
pub use webhooks::{is_public, WebhookPolicy};

/// A secret (an API key). `Debug` and `Display` never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Settings shared by every provider client.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: u32,
    /// Upper bound of one backoff wait, including a server's `Retry-After`.
    pub max_retry_wait: Duration,
}

/// Defaults for the per-run knobs a request may override.
#[derive(Debug, Clone)]
pub struct RunDefaults {
    pub provider: String,
    pub max_iterations: u32,
    pub block_timeout: Duration,
    pub output_chars: usize,
    /// Unset: a batch may keep its sub-provider's whole cap busy.
    pub max_concurrent_subcalls: Option<usize>,
    pub max_depth: u32,
    pub timeout: Option<Duration>,
    pub max_tokens: Option<i64>,
    pub max_cost_usd: Option<f64>,
    pub max_llm_calls: Option<i64>,
    pub max_errors: Option<u32>,
    /// Where a run's `webhook` may point, and how deliveries are retried.
    pub webhooks: WebhookPolicy,
    /// The sub-call cache's default scope, its entries' life, what counts as deterministic.
    pub cache: CacheConfig,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Log filter (`RUST_LOG`, tracing's EnvFilter syntax).
    pub log_filter: String,
    pub bind: SocketAddr,
    pub database_url: String,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub lease_ttl: Duration,
    pub max_attempts: u32,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    pub defaults: RunDefaults,
    /// Operator's price table, laid over the shipped one.
    pub prices_file: Option<PathBuf>,
    /// Context window assumed for models the price table does not know (for compaction).
    pub default_context_window: u64,
    /// A session with no turn for this long is closed and its REPL freed.
    pub session_idle_timeout: Duration,
    pub providers: ProviderSettings,
    pub providers_endpoints: ProviderEndpoints,
    pub sandbox: SandboxConfig,
    pub auth: AuthConfig,
    pub contexts: ContextsConfig,
}

/// Where contexts are cached on this node, and how large an upload may be.
#[derive(Debug, Clone)]
pub struct ContextsConfig {
    /// `RLM_CONTEXT_CACHE_DIR`: this node's copies of large contexts (the database has
    /// them all; the cache can be lost).
    pub cache_dir: PathBuf,
    /// `RLM_CONTEXT_CACHE_MB`: beyond this, the least recently used copies are removed.
    pub cache_bytes: u64,
    /// `RLM_MAX_CONTEXT_BYTES`: the largest `POST /v1/contexts`.
    pub max_upload_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {name}={value:?}: {reason}")]
pub struct ConfigError {
    name: String,
    value: String,
    reason: String,
}

impl Config {
    /// Reads `.env` (if present, without overriding the real environment) and then the
    /// environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_vars(std::env::vars().collect())
    }

    /// Builds the configuration from a set of variables; unset ones take their default.
    pub fn from_vars(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Vars(vars);
        Ok(Self {
            log_filter: env.get("RUST_LOG").unwrap_or_else(|| "info".into()),
            bind: env.parse("RLM_BIND", "127.0.0.1:8080".parse().unwrap())?,
            database_url: env
                .get("DATABASE_URL")
                .unwrap_or_else(|| "sqlite://rlmd.db".into()),
            workers: env.parse("RLM_WORKERS", 16)?,
            max_body_bytes: env.parse("RLM_MAX_BODY_BYTES", 64 * 1024 * 1024)?,
            lease_ttl: env.seconds("RLM_LEASE_TTL_S", 30.0)?,
            max_attempts: env.parse("RLM_MAX_ATTEMPTS", 3)?,
            poll_interval: env.seconds("RLM_POLL_INTERVAL_S", 1.0)?,
            shutdown_grace: env.seconds("RLM_SHUTDOWN_GRACE_S", 20.0)?,
            prices_file: env.get("RLM_PRICES_FILE").map(PathBuf::from),
            default_context_window: env.parse("RLM_DEFAULT_CONTEXT_WINDOW", 128_000)?,
            session_idle_timeout: env.seconds("RLM_SESSION_IDLE_TIMEOUT_S", 1800.0)?,
            defaults: RunDefaults {
                provider: env
                    .get("RLM_DEFAULT_PROVIDER")
                    .unwrap_or_else(|| "openai".into()),
                max_iterations: env.parse("RLM_MAX_ITERATIONS", 30)?,
                block_timeout: env.seconds("RLM_BLOCK_TIMEOUT_S", 60.0)?,
                output_chars: env.parse("RLM_OUTPUT_CHARS", 20_000)?,
                max_concurrent_subcalls: env.optional("RLM_MAX_CONCURRENT_SUBCALLS")?,
                max_depth: env.parse("RLM_MAX_DEPTH", 1)?,
                timeout: env.optional_seconds("RLM_TIMEOUT_S", Some(3600.0))?,
                max_tokens: env.optional("RLM_MAX_TOKENS")?,
                max_cost_usd: env.optional("RLM_MAX_COST_USD")?,
                max_llm_calls: env.optional("RLM_MAX_LLM_CALLS")?,
                max_errors: env.optional("RLM_MAX_ERRORS")?,
                webhooks: WebhookPolicy::from_vars(&env)?,
                cache: CacheConfig::from_vars(&env)?,
            },
            providers: ProviderSettings {
                connect_timeout: env.seconds("RLM_PROVIDER_CONNECT_TIMEOUT_S", 10.0)?,
                request_timeout: env.seconds("RLM_PROVIDER_TIMEOUT_S", 600.0)?,
                max_retries: env.parse("RLM_PROVIDER_MAX_RETRIES", 4)?,
                max_retry_wait: env.seconds("RLM_PROVIDER_MAX_RETRY_WAIT_S", 60.0)?,
            },
            providers_endpoints: ProviderEndpoints::from_vars(&env)?,
            sandbox: SandboxConfig::from_vars(&env)?,
            auth: AuthConfig::from_vars(&env)?,
            contexts: ContextsConfig {
                cache_dir: env
                    .get("RLM_CONTEXT_CACHE_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| std::env::temp_dir().join("rlmd-contexts")),
                cache_bytes: env.parse::<u64>("RLM_CONTEXT_CACHE_MB", 20_480)? << 20,
                max_upload_bytes: env.parse("RLM_MAX_CONTEXT_BYTES", 4u64 << 30)?,
            },
        })
    }
}

struct Vars(HashMap<String, String>);

impl Vars {
    /// A variable's value; set-but-empty counts as unset, as in most `.env` files.
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }

    fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|e: T::Err| ConfigError {
                name: name.into(),
                value: raw.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// A yes/no switch: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`.
    fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError {
                name: name.into(),
                value: raw.clone(),
                reason: "must be true or false".into(),
            }),
        }
    }

    /// An optional number: unset (or `none`) means no limit.
    fn optional<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(None),
            Some(raw) if raw.trim().eq_ignore_ascii_case("none") => Ok(None),
            Some(raw) => raw
                .trim()
                .parse()
                .map(Some)
                .map_err(|e: T::Err| ConfigError {
                    name: name.into(),
                    value: raw.clone(),
                    reason: e.to_string(),
                }),
        }
    }

    fn optional_seconds(
        &self,
        name: &str,
        default: Option<f64>,
    ) -> Result<Option<Duration>, ConfigError> {
        let secs = match self.get(name) {
            None => default,
            Some(raw) if raw.trim().eq_ignore_ascii_case("none") => None,
            Some(_) => self.optional::<f64>(name)?,
        };
        secs.map(|s| {
            Duration::try_from_secs_f64(s).map_err(|e| ConfigError {
                name: name.into(),
                value: s.to_string(),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    fn seconds(&self, name: &str, default: f64) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(name, default)?;
        Duration::try_from_secs_f64(secs).map_err(|e| ConfigError {
            name: name.into(),
            value: secs.to_string(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::from_vars(HashMap::new()).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://rlmd.db");
        assert_eq!(config.max_body_bytes, 64 * 1024 * 1024);
        assert_eq!(config.defaults.block_timeout, Duration::from_secs(60));
        assert!(config.providers_endpoints.openai.api_key.is_none());
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let vars = HashMap::from([("RLM_WORKERS".to_string(), "many".to_string())]);
        let err = Config::from_vars(vars).unwrap_err().to_string();
        assert!(err.contains("RLM_WORKERS"), "{err}");
    }

    #[test]
    fn the_documented_sample_parses_and_names_only_known_variables() {
        let sample = include_str!("../.env.sample");
        let vars: HashMap<String, String> = sample
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
            .map(|l| l.split_once('=').unwrap())
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let config = Config::from_vars(vars.clone()).unwrap();
        assert_eq!(config.defaults.timeout, Some(Duration::from_secs(3600)));
        assert_eq!(config.defaults.max_tokens, None);
        let source = [
            include_str!("config.rs"),
            include_str!("config/providers.rs"),
            include_str!("config/sandbox.rs"),
            include_str!("config/auth.rs"),
            include_str!("config/webhooks.rs"),
            include_str!("config/cache.rs"),
        ]
        .concat();
        for name in vars.keys() {
            // RLM_<PROVIDER>_MAX_CONCURRENCY names are built from the provider list.
            let per_provider = name
                .strip_prefix("RLM_")
                .and_then(|n| n.strip_suffix("_MAX_CONCURRENCY"))
                .is_some_and(|p| {
                    crate::providers::KNOWN_PROVIDERS.contains(&p.to_lowercase().as_str())
                });
            assert!(
                per_provider || source.contains(&format!("\"{name}\"")),
                "{name} is documented but never read"
            );
        }
    }

    #[test]
    fn none_means_no_limit() {
        let vars = HashMap::from([("RLM_TIMEOUT_S".to_string(), "none".to_string())]);
        assert_eq!(Config::from_vars(vars).unwrap().defaults.timeout, None);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let vars = HashMap::from([("OPENAI_API_KEY".to_string(), "sk-live-123".to_string())]);
        let config = Config::from_vars(vars).unwrap();
        assert!(!format!("{config:?}").contains("sk-live-123"));
    }
}
