//! The sub-call cache: which runs use it unless they say (`RLM_CACHE`), how long an entry
//! lives (`RLM_CACHE_TTL_S`), and whether a call with no temperature counts as
//! deterministic (`RLM_CACHE_UNSET_TEMPERATURE`).

use std::time::Duration;

use super::{ConfigError, Vars};
use crate::domain::CacheScope;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// A run's `cache` when its request does not say.
    pub default_scope: CacheScope,
    pub ttl: Duration,
    /// Calls that set no temperature are cached too: the operator trusts the provider's
    /// default to be deterministic enough. Otherwise only temperature 0 is.
    pub unset_temperature: bool,
}

impl CacheConfig {
    pub(super) fn from_vars(env: &Vars) -> Result<Self, ConfigError> {
        let default_scope = match env.get("RLM_CACHE") {
            None => CacheScope::Off,
            Some(raw) => raw.trim().parse().map_err(|reason| ConfigError {
                name: "RLM_CACHE".into(),
                value: raw.clone(),
                reason,
            })?,
        };
        let ttl = env.seconds("RLM_CACHE_TTL_S", 86_400.0)?;
        Ok(Self {
            default_scope,
            ttl,
            unset_temperature: env.flag("RLM_CACHE_UNSET_TEMPERATURE", false)?,
        })
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_scope: CacheScope::Off,
            ttl: Duration::from_secs(86_400),
            unset_temperature: false,
        }
    }
}
