//! Prometheus metrics (`GET /metrics`, OpenMetrics text). One registry per process: the
//! engine, the REPL slot and the event stream count into it wherever the thing happens;
//! the gauges that describe the store (queue depth) are read when scraped.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::{LlmCallRecord, StoredEvent};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: String,
    model: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    model: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    runs: Family<StatusLabel, Counter>,
    model_calls: Family<CallLabels, Counter>,
    model_call_errors: Family<CallLabels, Counter>,
    model_call_seconds: Histograms<ModelLabels>,
    tokens: Family<TokenLabels, Counter>,
    cost_usd: Family<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    cache_saved_usd: Family<ModelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    repl_starts: Counter,
    repl_failures: Family<ReasonLabel, Counter>,
    block_seconds: Histogram,
    pub queue_depth: Gauge,
    pub running_runs: Gauge,
    sse_clients: Gauge,
    provider_limit: Family<ProviderLabel, Gauge>,
    provider_max: Family<ProviderLabel, Gauge>,
    provider_in_flight: Family<ProviderLabel, Gauge>,
    provider_overloads: Family<ProviderLabel, Counter>,
    answers_rejected: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
}

/// Model calls take from milliseconds (a cached fake) to minutes (a long reasoning reply).
fn call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            runs: Family::default(),
            model_calls: Family::default(),
            model_call_errors: Family::default(),
            model_call_seconds: Family::new_with_constructor(call_buckets),
            tokens: Family::default(),
            cost_usd: Family::default(),
            cache_saved_usd: Family::default(),
            repl_starts: Counter::default(),
            repl_failures: Family::default(),
            block_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            queue_depth: Gauge::default(),
            running_runs: Gauge::default(),
            sse_clients: Gauge::default(),
            provider_limit: Family::default(),
            provider_max: Family::default(),
            provider_in_flight: Family::default(),
            provider_overloads: Family::default(),
            answers_rejected: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            registry: Registry::default(),
        };
        // Counters are exposed with the `_total` suffix OpenMetrics gives them.
        let m = &metrics;
        registry.register("rlmd_runs", "Root runs ended, by status", m.runs.clone());
        registry.register(
            "rlmd_model_calls",
            "Model calls made, by provider, model and kind (root, sub, final, compaction)",
            m.model_calls.clone(),
        );
        registry.register(
            "rlmd_model_call_errors",
            "Model calls that failed after their retries",
            m.model_call_errors.clone(),
        );
        registry.register(
            "rlmd_model_call_duration_seconds",
            "Time a model call took, retries included",
            m.model_call_seconds.clone(),
        );
        registry.register(
            "rlmd_tokens",
            "Tokens spent, by direction (input, output, cached, reasoning)",
            m.tokens.clone(),
        );
        registry.register(
            "rlmd_cost_usd",
            "Money spent on model calls, in US dollars",
            m.cost_usd.clone(),
        );
        registry.register(
            "rlmd_repl_starts",
            "REPL processes started",
            m.repl_starts.clone(),
        );
        registry.register(
            "rlmd_repl_failures",
            "REPL failures, by reason (spawn, init, timeout, crashed, protocol, tools)",
            m.repl_failures.clone(),
        );
        registry.register(
            "rlmd_block_duration_seconds",
            "Time a code block ran in its REPL",
            m.block_seconds.clone(),
        );
        registry.register(
            "rlmd_queue_depth",
            "Runs queued and not yet claimed (all nodes)",
            m.queue_depth.clone(),
        );
        registry.register(
            "rlmd_running_runs",
            "Root runs this node is running",
            m.running_runs.clone(),
        );
        registry.register(
            "rlmd_sse_clients",
            "Event streams open on this node",
            m.sse_clients.clone(),
        );
        registry.register(
            "rlmd_provider_concurrency_limit",
            "A provider's adaptive cap on calls in flight (this node)",
            m.provider_limit.clone(),
        );
        registry.register(
            "rlmd_provider_concurrency_max",
            "The configured maximum of a provider's cap",
            m.provider_max.clone(),
        );
        registry.register(
            "rlmd_provider_in_flight",
            "Model calls in flight to a provider (this node)",
            m.provider_in_flight.clone(),
        );
        registry.register(
            "rlmd_provider_overloads",
            "Answers of a provider saying too many requests (429, 503, 529)",
            m.provider_overloads.clone(),
        );
        registry.register(
            "rlmd_answers_rejected",
            "Submitted answers that did not fit their run's answer schema",
            m.answers_rejected.clone(),
        );
        registry.register(
            "rlmd_prompt_cache_saved_usd",
            "US dollars the providers' prompt caches saved (reads below the input price, less \
             the premium of writes), this node's calls since it started",
            m.cache_saved_usd.clone(),
        );
        registry.register(
            "rlmd_subcall_cache_hits",
            "Sub-calls answered from the sub-call cache (no model call, nothing paid)",
            m.cache_hits.clone(),
        );
        registry.register(
            "rlmd_subcall_cache_misses",
            "Cacheable sub-calls the cache could not answer (made, then kept)",
            m.cache_misses.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Creates the series a scraper can expect from the start at zero (a labelled family
    /// shows nothing until its first sample otherwise): runs by status, REPL failures by
    /// reason, and the calls, tokens and cost of each configured provider's default model.
    pub fn prime<'a>(&self, providers: impl Iterator<Item = (&'a str, &'a str)>) {
        for status in ["succeeded", "failed", "cancelled"] {
            let status = status.to_string();
            drop(self.runs.get_or_create(&StatusLabel { status }));
        }
        for reason in ["spawn", "init", "timeout", "crashed", "protocol", "tools"] {
            let reason = reason.to_string();
            drop(self.repl_failures.get_or_create(&ReasonLabel { reason }));
        }
        for (provider, model) in providers {
            let provider_label = ProviderLabel {
                provider: provider.to_string(),
            };
            drop(self.provider_overloads.get_or_create(&provider_label));
            let model = ModelLabels {
                provider: provider.to_string(),
                model: model.to_string(),
            };
            for kind in ["root", "sub"] {
                let labels = CallLabels {
                    provider: model.provider.clone(),
                    model: model.model.clone(),
                    kind: kind.to_string(),
                };
                drop(self.model_calls.get_or_create(&labels));
            }
            for direction in ["input", "output"] {
                let labels = TokenLabels {
                    provider: model.provider.clone(),
                    model: model.model.clone(),
                    direction,
                };
                drop(self.tokens.get_or_create(&labels));
            }
            drop(self.model_call_seconds.get_or_create(&model));
            drop(self.cost_usd.get_or_create(&model));
        }
    }

    /// The exposition, in OpenMetrics text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// A stored event: a root run's terminal one counts the run.
    pub fn event(&self, event: &StoredEvent) {
        if event.is_terminal() && event.run_id == event.root_id {
            let status = event.kind.trim_start_matches("run.").to_string();
            self.runs.get_or_create(&StatusLabel { status }).inc();
        }
    }

    /// One model call, made (replayed calls are not: they were counted when they were made).
    pub fn model_call(&self, call: &LlmCallRecord) {
        let labels = CallLabels {
            provider: call.provider.clone(),
            model: call.model.clone(),
            kind: call.kind.clone(),
        };
        self.model_calls.get_or_create(&labels).inc();
        if call.error.is_some() {
            self.model_call_errors.get_or_create(&labels).inc();
        }
        let model = ModelLabels {
            provider: call.provider.clone(),
            model: call.model.clone(),
        };
        self.model_call_seconds
            .get_or_create(&model)
            .observe(call.latency_ms as f64 / 1000.0);
        for (direction, tokens) in [
            ("input", call.input_tokens),
            ("output", call.output_tokens),
            ("cached", call.cached_tokens),
            ("reasoning", call.reasoning_tokens),
            ("cache_write", call.cache_write_tokens),
        ] {
            let labels = TokenLabels {
                provider: call.provider.clone(),
                model: call.model.clone(),
                direction,
            };
            self.tokens
                .get_or_create(&labels)
                .inc_by(tokens.max(0) as u64);
        }
        if call.cost_usd > 0.0 {
            self.cost_usd.get_or_create(&model).inc_by(call.cost_usd);
        }
        // A net figure: a call that only wrote to the cache takes its premium off.
        if call.cache_saved_usd != 0.0 {
            self.cache_saved_usd
                .get_or_create(&model)
                .inc_by(call.cache_saved_usd);
        }
    }

    /// A provider answered "too many"; `limit` is its cap now.
    pub fn provider_overloaded(&self, provider: &str, limit: usize) {
        let label = ProviderLabel {
            provider: provider.to_string(),
        };
        self.provider_overloads.get_or_create(&label).inc();
        self.provider_limit.get_or_create(&label).set(limit as i64);
    }

    /// The providers' caps as they stand (read when scraped).
    pub fn provider_caps<'a>(
        &self,
        caps: impl Iterator<Item = (&'a str, crate::providers::LimiterState)>,
    ) {
        for (provider, cap) in caps {
            let label = ProviderLabel {
                provider: provider.to_string(),
            };
            self.provider_limit
                .get_or_create(&label)
                .set(cap.limit as i64);
            self.provider_max.get_or_create(&label).set(cap.max as i64);
            self.provider_in_flight
                .get_or_create(&label)
                .set(cap.in_flight as i64);
        }
    }

    pub fn repl_started(&self) {
        self.repl_starts.inc();
    }

    pub fn repl_failed(&self, reason: &str) {
        let reason = reason.to_string();
        self.repl_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn cache_lookup(&self, hit: bool) {
        match hit {
            true => self.cache_hits.inc(),
            false => self.cache_misses.inc(),
        };
    }

    pub fn answer_rejected(&self) {
        self.answers_rejected.inc();
    }

    pub fn block_ran(&self, seconds: f64) {
        self.block_seconds.observe(seconds);
    }

    /// Counts an open event stream until the guard is dropped.
    pub fn sse_client(&'static self) -> SseClient {
        self.sse_clients.inc();
        SseClient(self)
    }
}

pub struct SseClient(&'static Metrics);

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.sse_clients.dec();
    }
}
