//! The sub-call cache: which runs use it unless they say (`RLM_CACHE`), how long an entry
//! lives (`RLM_CACHE_TTL_S`), and for which providers a call with no temperature counts
//! as deterministic (`RLM_CACHE_UNSET_TEMPERATURE`).

use std::time::Duration;

use super::{ConfigError, Vars};
use crate::domain::CacheScope;
use crate::providers::KNOWN_PROVIDERS;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// A run's `cache` when its request does not say.
    pub default_scope: CacheScope,
    pub ttl: Duration,
    /// Providers whose calls are cached even without a temperature: the operator trusts
    /// their defaults to be deterministic enough. Otherwise only temperature 0 is.
    pub unset_temperature: Vec<String>,
}

impl CacheConfig {
    pub(super) fn from_vars(env: &Vars) -> Result<Self, ConfigError> {
        let error = |name: &str, value: &str, reason: String| ConfigError {
            name: name.into(),
            value: value.into(),
            reason,
        };
        let default_scope = match env.get("RLM_CACHE") {
            None => CacheScope::Off,
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|reason| error("RLM_CACHE", &raw, reason))?,
        };
        let ttl = env.seconds("RLM_CACHE_TTL_S", 86_400.0)?;
        // `true` (every provider), `false` (none), or a list of providers.
        let name = "RLM_CACHE_UNSET_TEMPERATURE";
        let unset_temperature = match (env.flag(name, false), env.get(name)) {
            (Ok(true), _) => KNOWN_PROVIDERS.iter().map(|p| p.to_string()).collect(),
            (Ok(false), _) | (Err(_), None) => Vec::new(),
            (Err(_), Some(raw)) => raw
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match KNOWN_PROVIDERS.contains(&p) {
                    true => Ok(p.to_string()),
                    false => Err(error(
                        name,
                        &raw,
                        format!(
                            "must be true, false or a list of providers ({})",
                            KNOWN_PROVIDERS.join(", ")
                        ),
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            default_scope,
            ttl,
            unset_temperature,
        })
    }

    /// Whether a call to `provider` that sets no temperature may be cached.
    pub fn trusts_unset_temperature(&self, provider: &str) -> bool {
        self.unset_temperature.iter().any(|p| p == provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(value: &str) -> Result<CacheConfig, ConfigError> {
        let vars = HashMap::from([("RLM_CACHE_UNSET_TEMPERATURE".to_string(), value.to_string())]);
        CacheConfig::from_vars(&Vars(vars))
    }

    #[test]
    fn unset_temperatures_are_trusted_for_all_none_or_the_providers_named() {
        assert!(config("true").unwrap().trusts_unset_temperature("gemini"));
        assert!(!config("false").unwrap().trusts_unset_temperature("openai"));
        let some = config("openai, anthropic").unwrap();
        assert!(some.trusts_unset_temperature("anthropic"));
        assert!(!some.trusts_unset_temperature("gemini"));
        assert!(config("openai,nobody").is_err());
    }
}
