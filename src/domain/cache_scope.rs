//! A run's `cache` setting (the sub-call cache's scope).

use serde::{Deserialize, Serialize};

/// `cache` of a run: whether its deterministic sub-calls are answered from earlier
/// identical ones, and whose: the same run tree's, or any run of the same API key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    #[default]
    Off,
    Tree,
    Global,
}

impl CacheScope {
    pub fn is_off(&self) -> bool {
        *self == CacheScope::Off
    }
}

impl std::str::FromStr for CacheScope {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "off" => Ok(Self::Off),
            "tree" => Ok(Self::Tree),
            "global" => Ok(Self::Global),
            _ => Err("must be `off`, `tree` or `global`".into()),
        }
    }
}
