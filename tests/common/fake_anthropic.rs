//! A fake Anthropic Messages API with a prompt cache that behaves like the real one, so
//! that what rlmd's cache breakpoints save can be measured: a request's prefix up to a
//! `cache_control` block is written to the cache (if at least `MIN_CACHED_TOKENS` long);
//! a later request whose prompt starts with a cached prefix (ending at one of its block
//! boundaries, at most 20 blocks before a breakpoint) reads it back. Tokens are counted as
//! characters / 4. The usage it answers splits input as Anthropic does: uncached
//! `input_tokens`, `cache_read_input_tokens`, `cache_creation_input_tokens`.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::fake_http::{FakeHttp, Seen};
use super::fake_model::Reply;

/// The shortest prefix Anthropic caches (Claude Sonnet and Opus).
pub const MIN_CACHED_TOKENS: i64 = 1024;
/// How far back from a breakpoint the cache looks for an earlier entry, in blocks.
const LOOKBACK_BLOCKS: usize = 20;

/// What the fake answered one request with.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheUsage {
    pub input: i64,
    pub read: i64,
    pub written: i64,
}

pub struct FakeAnthropic {
    pub http: FakeHttp,
    usages: Arc<Mutex<Vec<CacheUsage>>>,
}

impl FakeAnthropic {
    /// Answers every request with `reply(request)`'s text (a root turn's code, say), and
    /// `output_tokens` output tokens.
    pub async fn start(
        output_tokens: i64,
        reply: impl Fn(&Seen) -> String + Send + Sync + 'static,
    ) -> Self {
        let cache: Arc<Mutex<HashSet<String>>> = Default::default();
        let usages: Arc<Mutex<Vec<CacheUsage>>> = Default::default();
        let seen_usages = usages.clone();
        let http = FakeHttp::start(move |seen, _| {
            let usage = account(&mut cache.lock().unwrap(), &seen.body);
            seen_usages.lock().unwrap().push(usage);
            Reply::Raw {
                status: 200,
                headers: vec![("content-type", "application/json".into())],
                body: json!({
                    "id": "msg_1", "type": "message", "role": "assistant",
                    "model": seen.body["model"],
                    "content": [{"type": "text", "text": reply(seen)}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": usage.input, "output_tokens": output_tokens,
                              "cache_read_input_tokens": usage.read,
                              "cache_creation_input_tokens": usage.written}
                })
                .to_string(),
            }
        })
        .await;
        Self { http, usages }
    }

    /// rlmd with its `anthropic` provider pointed at this fake.
    pub async fn app(&self) -> super::TestApp {
        let unused =
            super::FakeModel::start(vec![super::text("unused")], |_| super::text("unused")).await;
        let base = self.http.base_url.as_str();
        let vars = [("ANTHROPIC_API_KEY", "a-key"), ("ANTHROPIC_BASE_URL", base)];
        super::spawn_app_with(&unused, &vars).await
    }

    pub fn usages(&self) -> Vec<CacheUsage> {
        self.usages.lock().unwrap().clone()
    }
}

/// The prompt as blocks: each with its text and whether it carries a breakpoint.
fn blocks(body: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut push = |content: &Value, role: &str| match content {
        Value::String(text) => out.push((format!("{role}:{text}"), false)),
        Value::Array(parts) => {
            for part in parts {
                let text = part["text"].as_str().unwrap_or_default();
                out.push((
                    format!("{role}:{text}"),
                    part.get("cache_control").is_some(),
                ));
            }
        }
        _ => {}
    };
    push(&body["system"], "system");
    for message in body["messages"].as_array().into_iter().flatten() {
        push(
            &message["content"],
            message["role"].as_str().unwrap_or_default(),
        );
    }
    out
}

fn tokens(text: &str) -> i64 {
    (text.chars().count() as i64 + 3) / 4
}

/// Reads and writes the cache for one request; returns how its input splits.
fn account(cache: &mut HashSet<String>, body: &Value) -> CacheUsage {
    let blocks = blocks(body);
    // The prompt up to the end of each block: its key and its tokens.
    let mut prefixes = Vec::with_capacity(blocks.len());
    let (mut key, mut total) = (String::new(), 0);
    for (text, _) in &blocks {
        key.push_str(text);
        key.push('\u{0}');
        total += tokens(text);
        prefixes.push((key.clone(), total));
    }
    let breakpoints: Vec<usize> = (0..blocks.len()).filter(|&i| blocks[i].1).collect();
    let Some(&last) = breakpoints.last() else {
        return CacheUsage {
            input: total,
            ..CacheUsage::default()
        };
    };
    // The longest cached prefix ending at a block boundary near a breakpoint.
    let read = breakpoints
        .iter()
        .flat_map(|&b| (b.saturating_sub(LOOKBACK_BLOCKS)..=b).rev())
        .filter(|&i| cache.contains(&prefixes[i].0))
        .map(|i| prefixes[i].1)
        .max()
        .unwrap_or(0);
    let cached_end = prefixes[last].1;
    let mut written = 0;
    if cached_end >= MIN_CACHED_TOKENS {
        for &b in &breakpoints {
            if prefixes[b].1 >= MIN_CACHED_TOKENS {
                cache.insert(prefixes[b].0.clone());
            }
        }
        written = cached_end - read;
    }
    let read = if cached_end >= MIN_CACHED_TOKENS {
        read
    } else {
        0
    };
    CacheUsage {
        input: total - read - written,
        read,
        written,
    }
}
