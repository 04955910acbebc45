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
    /// Input tokens written to the prompt cache (Anthropic); 1.25 times the input price
    /// (its five-minute cache) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input: Option<f64>,
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

    /// USD for a call's usage; `None` for a model the table does not know. Input tokens
    /// read from the provider's cache are billed at the cached price, those written to it
    /// at the write price, the rest at the input price.
    pub fn cost(&self, model: &str, usage: &TokenUsage) -> Option<f64> {
        let price = self.lookup(model)?;
        let (cached, written) = cache_split(usage);
        let fresh = usage.input_tokens - cached - written;
        let dollars = fresh as f64 * price.input
            + cached as f64 * price.cached_input()
            + written as f64 * price.cache_write_input()
            + usage.output_tokens as f64 * price.output;
        Some(dollars / 1_000_000.0)
    }

    /// USD the provider's prompt cache saved on a call: its reads at the input price
    /// minus what they cost, less the premium paid for its writes (negative for a call
    /// that only wrote). 0 for a model the table does not know.
    pub fn cache_savings(&self, model: &str, usage: &TokenUsage) -> f64 {
        let (cached, written) = cache_split(usage);
        // Most calls touch no cache: no second price lookup for them.
        if cached == 0 && written == 0 {
            return 0.0;
        }
        let Some(price) = self.lookup(model) else {
            return 0.0;
        };
        let saved = cached as f64 * (price.input - price.cached_input())
            - written as f64 * (price.cache_write_input() - price.input);
        saved / 1_000_000.0
    }

    pub fn models(&self) -> impl Iterator<Item = (&String, &Price)> {
        self.models.iter()
    }
}

impl Price {
    fn cached_input(&self) -> f64 {
        self.cached_input.unwrap_or(self.input)
    }

    fn cache_write_input(&self) -> f64 {
        self.cache_write_input.unwrap_or(self.input * 1.25)
    }
}

/// The input tokens of `usage` read from and written to the cache, within its input.
fn cache_split(usage: &TokenUsage) -> (i64, i64) {
    let cached = usage.cached_tokens.clamp(0, usage.input_tokens);
    let written = usage
        .cache_write_tokens
        .clamp(0, usage.input_tokens - cached);
    (cached, written)
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
            cache_write_input: None,
            context_window: None,
            provider: None,
        };
        table.models.insert("m".into(), price);
        let usage = TokenUsage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
            cached_tokens: 400_000,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
        };
        // 600k fresh at $2 + 400k cached at $0.50 + 500k out at $8
        assert_eq!(table.cost("m", &usage), Some(1.2 + 0.2 + 4.0));
        assert_eq!(table.cost("other", &usage), None);
        // Reads save $1.50 a million.
        assert!((table.cache_savings("m", &usage) - 0.6).abs() < 1e-9);
    }

    #[test]
    fn cache_writes_are_billed_at_a_quarter_above_the_input_price() {
        let table = PriceTable::builtin();
        // Claude Sonnet 4: $3 input, $0.30 cache read, $3.75 cache write, $15 output.
        let usage = TokenUsage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cached_tokens: 600_000,
            cache_write_tokens: 300_000,
            reasoning_tokens: 0,
        };
        let cost = table.cost("claude-sonnet-4-20250514", &usage).unwrap();
        let expected = 0.1 * 3.0 + 0.6 * 0.3 + 0.3 * 3.75 + 0.1 * 15.0;
        assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
        let saved = table.cache_savings("claude-sonnet-4", &usage);
        let expected = 0.6 * (3.0 - 0.3) - 0.3 * 0.75;
        assert!((saved - expected).abs() < 1e-9, "{saved} != {expected}");
    }
}
