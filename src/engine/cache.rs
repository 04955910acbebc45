//! The sub-call cache as the engine uses it: which sub-calls may be answered from it
//! (a run that opted in, sampling that is deterministic), under which key, and the record
//! of a call it answered.

use std::time::Instant;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::host::SubcallHost;
use super::recorder::CallInfo;
use crate::domain::{CacheScope, Sampling};
use crate::providers::{Completion, Message};
use crate::store::{CacheEntry, RunRecord, Write};

/// Where one sub-call's reply is looked for and kept.
pub struct CacheSlot {
    scope: String,
    key: String,
}

/// The cache scope of `run`'s sub-calls made with `sampling`, if they may be cached: the
/// run opted in, and the sampling is deterministic (temperature 0, or unset where the
/// operator trusts the sub-provider's default: `unset_trusted`). Whatever the scope, an
/// API key's entries serve its runs only.
pub fn scope(run: &RunRecord, sampling: &Sampling, unset_trusted: bool) -> Option<String> {
    let deterministic = match sampling.temperature {
        Some(t) => t == 0.0,
        None => unset_trusted,
    };
    if !deterministic {
        return None;
    }
    match run.spec.cache {
        CacheScope::Off => None,
        CacheScope::Tree => Some(format!("tree:{}", run.root_id)),
        CacheScope::Global => Some(format!(
            "key:{}",
            run.owner.map(|k| k.0.to_string()).unwrap_or_default()
        )),
    }
}

/// The key of a call: what makes two calls the same (provider, model, messages, sampling).
pub fn key(provider: &str, model: &str, messages: &[Message], sampling: &Sampling) -> String {
    let call = json!({"provider": provider, "model": model, "messages": messages,
                      "sampling": sampling});
    let digest = Sha256::digest(call.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl SubcallHost<'_> {
    /// The scope this run's sub-calls are cached in, if they are.
    pub(super) fn cache_scope(&self) -> Option<String> {
        let run = self.parent.run;
        let trusted = self
            .engine
            .cache
            .trusts_unset_temperature(run.spec.sub_provider());
        scope(run, run.spec.sub_sampling(), trusted)
    }

    /// Where, in `scope`, the sub-call sending `messages` to `model` is cached.
    pub(super) fn cache_slot(&self, scope: &str, messages: &[Message], model: &str) -> CacheSlot {
        let spec = &self.parent.run.spec;
        CacheSlot {
            scope: scope.to_string(),
            key: key(spec.sub_provider(), model, messages, spec.sub_sampling()),
        }
    }

    /// The cached reply for `slot`, recorded as a call answered from the cache.
    pub(super) async fn cached(&self, slot: &CacheSlot, info: &CallInfo<'_>) -> Option<String> {
        let started = Instant::now();
        let metrics = crate::metrics::get();
        match self.engine.store.cached_reply(&slot.scope, &slot.key).await {
            Ok(Some(reply)) => {
                metrics.cache_lookup(true);
                self.record_hit(info, reply.clone(), started);
                Some(reply)
            }
            Ok(None) => {
                metrics.cache_lookup(false);
                None
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the sub-call cache");
                None
            }
        }
    }

    /// Keeps a live call's reply for `slot`, with the call's record.
    pub(super) fn keep(&self, slot: CacheSlot, reply: &str) {
        let ttl = self.engine.cache.ttl.as_millis() as i64;
        self.parent.recorder.keep(Write::CacheEntry(CacheEntry {
            scope: slot.scope,
            key: slot.key,
            reply: reply.to_string(),
            expires_at: crate::store::now_ms().saturating_add(ttl),
        }));
    }

    /// Records a sub-call answered without a model call: marked, free, no tokens.
    pub(super) fn record_hit(&self, info: &CallInfo<'_>, reply: String, started: Instant) {
        let recorder = self.parent.recorder;
        let answered = Ok(Completion {
            text: reply,
            usage: Default::default(),
            finish_reason: None,
            cost_usd: Some(0.0),
        });
        let mut record =
            recorder.call_record(info, started.elapsed().as_millis() as i64, &answered);
        record.cache_hit = true;
        recorder.keep(Write::LlmCall(record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_tells_calls_apart_by_every_part() {
        let ask = |text: &str| vec![Message::user(text.to_string())];
        let zero = Sampling {
            temperature: Some(0.0),
            ..Sampling::default()
        };
        let base = key("openai", "m", &ask("q"), &zero);
        assert_eq!(base, key("openai", "m", &ask("q"), &zero));
        assert_eq!(base.len(), 64);
        assert_ne!(base, key("anthropic", "m", &ask("q"), &zero));
        assert_ne!(base, key("openai", "n", &ask("q"), &zero));
        assert_ne!(base, key("openai", "m", &ask("q2"), &zero));
        let seeded = Sampling {
            seed: Some(1),
            ..zero.clone()
        };
        assert_ne!(base, key("openai", "m", &ask("q"), &seeded));
    }
}
