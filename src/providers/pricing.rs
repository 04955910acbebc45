//! What model calls cost: a price table shipped with rlmd (`prices.json`), which the
//! operator can override or extend with a file of the same shape (`RLM_PRICES_FILE`).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::TokenUsage;

const BUILTIN: &str = include_str!("prices.json");

/// USD per million tokens, and the model's context window in tokens.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached input tokens; the input price when absent.
    #[serde(default)]
    pub cached_input: Option<f64>,
    #[serde(default)]
    pub context_window: Option<u64>,
    /// The API family that serves the model (`openai`, `anthropic`, `gemini`).
    #[serde(default)]
    pub provider: Option<String>,
}

#[derive(Deserialize)]
struct PriceFile {
    models: HashMap<String, Price>,
}

#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: HashMap<String, Price>,
}

#[derive(Debug, thiserror::Error)]
#[error("price table {path}: {reason}")]
pub struct PriceError {
    path: String,
    reason: String,
}

impl PriceTable {
    pub fn builtin() -> Self {
        let file: PriceFile =
            serde_json::from_str(BUILTIN).expect("the shipped price table parses");
        Self {
            models: file.models,
        }
    }

    /// The shipped table with the operator's entries laid over it.
    pub fn with_overrides(path: Option<&Path>) -> Result<Self, PriceError> {
        let mut table = Self::builtin();
        if let Some(path) = path {
            let error = |reason: String| PriceError {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
            let file: PriceFile = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
            table.models.extend(file.models);
        }
        Ok(table)
    }

    /// The entry for `model`: exact, else the longest entry the name starts with
    /// (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`), ignoring a `provider/` prefix.
    pub fn lookup(&self, model: &str) -> Option<&Price> {
        let name = model.rsplit('/').next().unwrap_or(model);
        self.models.get(name).or_else(|| {
            self.models
                .iter()
                .filter(|(key, _)| name.starts_with(key.as_str()))
                .max_by_key(|(key, _)| key.len())
                .map(|(_, price)| price)
        })
    }

    /// USD for a call's usage; `None` for a model the table does not know.
    pub fn cost(&self, model: &str, usage: &TokenUsage) -> Option<f64> {
        let price = self.lookup(model)?;
        let cached = usage.cached_tokens.clamp(0, usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        let dollars = fresh as f64 * price.input
            + cached as f64 * price.cached_input.unwrap_or(price.input)
            + usage.output_tokens as f64 * price.output;
        Some(dollars / 1_000_000.0)
    }

    pub fn models(&self) -> impl Iterator<Item = (&String, &Price)> {
        self.models.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_and_prefixed_names_find_their_entry() {
        let table = PriceTable::builtin();
        let mini = table.lookup("gpt-4o-mini").cloned();
        assert!(mini.is_some());
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18").cloned(), mini);
        assert_eq!(table.lookup("openai/gpt-4o-mini").cloned(), mini);
        assert_ne!(
            table.lookup("gpt-4o-2024-08-06").cloned(),
            mini,
            "gpt-4o is not gpt-4o-mini"
        );
        assert!(table.lookup("my-local-llama").is_none());
    }

    #[test]
    fn cached_tokens_are_billed_at_the_cached_price() {
        let mut table = PriceTable::default();
        let price = Price {
            input: 2.0,
            output: 8.0,
            cached_input: Some(0.5),
            context_window: None,
            provider: None,
        };
        table.models.insert("m".into(), price);
        let usage = TokenUsage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
            cached_tokens: 400_000,
            reasoning_tokens: 0,
        };
        // 600k fresh at $2 + 400k cached at $0.50 + 500k out at $8
        assert_eq!(table.cost("m", &usage), Some(1.2 + 0.2 + 4.0));
        assert_eq!(table.cost("other", &usage), None);
    }
}
