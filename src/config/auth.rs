//! Who may call the API: API keys (`RLM_AUTH`), their default limits, and CORS.

use super::{ConfigError, Vars};

/// `RLM_AUTH`: whether requests must carry an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Keys are required as soon as one has been created (`rlmd keys create`); until then
    /// the API is open and the server refuses to listen on anything but loopback.
    Auto,
    /// No authentication at all, on any address: the operator's explicit choice.
    Off,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// Root runs of one key running at once, unless its own limit says otherwise.
    /// `None`: no limit.
    pub max_concurrent_runs: Option<u32>,
    /// Root runs of one key waiting in the queue; a submit beyond it gets 429.
    pub max_queued_runs: Option<u32>,
    /// Origins allowed to call the API from a browser; empty: CORS is off.
    pub cors_origins: Vec<String>,
    /// `RLM_METRICS_PUBLIC`: `/metrics` answers without a key even when keys are on.
    pub metrics_public: bool,
}

impl AuthConfig {
    pub(super) fn from_vars(env: &Vars) -> Result<Self, ConfigError> {
        let mode = match env.get("RLM_AUTH").as_deref().map(str::trim) {
            None | Some("auto") => AuthMode::Auto,
            Some("off") => AuthMode::Off,
            Some(other) => {
                return Err(ConfigError {
                    name: "RLM_AUTH".into(),
                    value: other.into(),
                    reason: "must be `auto` or `off`".into(),
                })
            }
        };
        let cors_origins = env
            .get("RLM_CORS_ORIGINS")
            .map(|raw| {
                raw.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            mode,
            max_concurrent_runs: limit(env, "RLM_KEY_MAX_CONCURRENT_RUNS", 16)?,
            max_queued_runs: limit(env, "RLM_KEY_MAX_QUEUED_RUNS", 256)?,
            cors_origins,
            metrics_public: env.flag("RLM_METRICS_PUBLIC", false)?,
        })
    }
}

/// A per-key limit: a number, `none` for no limit, or unset for `default`.
fn limit(env: &Vars, name: &str, default: u32) -> Result<Option<u32>, ConfigError> {
    match env.get(name) {
        None => Ok(Some(default)),
        Some(_) => env.optional(name),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<AuthConfig, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AuthConfig::from_vars(&Vars(vars))
    }

    #[test]
    fn defaults_are_auto_with_limits_and_no_cors() {
        let auth = read(&[]).unwrap();
        assert_eq!(auth.mode, AuthMode::Auto);
        assert_eq!(auth.max_concurrent_runs, Some(16));
        assert_eq!(auth.max_queued_runs, Some(256));
        assert!(auth.cors_origins.is_empty());
        assert!(!auth.metrics_public);
    }

    #[test]
    fn none_lifts_a_limit_and_origins_are_split() {
        let auth = read(&[
            ("RLM_AUTH", "off"),
            ("RLM_KEY_MAX_QUEUED_RUNS", "none"),
            ("RLM_CORS_ORIGINS", "https://a.example, https://b.example/"),
        ])
        .unwrap();
        assert_eq!(auth.mode, AuthMode::Off);
        assert_eq!(auth.max_queued_runs, None);
        assert_eq!(
            auth.cors_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn an_unknown_mode_is_refused() {
        let err = read(&[("RLM_AUTH", "maybe")]).unwrap_err().to_string();
        assert!(err.contains("RLM_AUTH"), "{err}");
        let err = read(&[("RLM_METRICS_PUBLIC", "perhaps")]).unwrap_err();
        assert!(err.to_string().contains("RLM_METRICS_PUBLIC"), "{err}");
        assert!(
            read(&[("RLM_METRICS_PUBLIC", "yes")])
                .unwrap()
                .metrics_public
        );
    }
}
