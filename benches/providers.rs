//! How rlmd keeps a provider busy without flooding it: batched sub-calls with the server's
//! defaults (the adaptive per-provider cap), against a fake that keeps up and one that
//! answers 429 above 20 requests in flight. Prints figures; asserts nothing about time.
//!
//!     cargo bench --bench providers

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::fake_model::SeenRequest;
use common::{code, spawn_app_with, text, FakeModel, Reply};
use serde_json::json;

const LATENCY: Duration = Duration::from_millis(200);

fn batch_of(size: usize) -> impl Fn(&SeenRequest, usize) -> Reply + Send + Sync + 'static {
    move |request, _| {
        if request.is_root() {
            code(&format!(
                "r = llm_query_batched([f'q{{i}}' for i in range({size})])\n\
                 answer['content'] = str(sum(x == 'ok' for x in r))\nanswer['ready'] = True"
            ))
        } else {
            text("ok")
        }
    }
}

/// One run of one batch; wall time from submit to end, the answer (prompts answered "ok"),
/// and the sub-calls the fake saw from first to last.
async fn one_batch(model: &FakeModel, app: &common::TestApp) -> (Duration, String, Duration) {
    let before = model.requests().len();
    let started = Instant::now();
    let id = app.submit_ok(&json!({"prompt": "Fan out."})).await;
    let run = app.wait_for_end(&id).await;
    let wall = started.elapsed();
    let subs: Vec<SeenRequest> = model
        .requests()
        .into_iter()
        .skip(before)
        .filter(|r| !r.is_root())
        .collect();
    let first = subs.iter().map(|r| r.received_at).min().unwrap();
    let last = subs.iter().filter_map(|r| r.responded_at).max().unwrap();
    (
        wall,
        run["answer"].as_str().unwrap_or("").to_string(),
        last.duration_since(first),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn keeps_up() {
    let model = FakeModel::with_script(LATENCY, batch_of(64)).await;
    let app = spawn_app_with(&model, &[]).await;
    for label in ["first batch (cap from 32)", "second batch (cap learned)"] {
        let (wall, answered, inside) = one_batch(&model, &app).await;
        println!(
            "64 prompts x 200 ms, defaults, {label:<27} | run {:>6.1} ms | batch inside the block {:>6.1} ms | answered {answered}/64",
            ms(wall),
            ms(inside)
        );
    }
}

async fn rate_limited() {
    let model = FakeModel::with_capacity(LATENCY, 20, batch_of(200)).await;
    let app = spawn_app_with(&model, &[("RLM_PROVIDER_MAX_RETRIES", "4")]).await;
    let (wall, answered, inside) = one_batch(&model, &app).await;
    let refused = model.refused();
    println!(
        "200 prompts x 200 ms, 429 above 20 in flight | run {:>6.1} ms | batch {:>6.1} ms | answered {answered}/200 | refused (extra requests) {refused} = {:.1} %",
        ms(wall),
        ms(inside),
        refused as f64 / 2.0
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        keeps_up().await;
        rate_limited().await;
    });
}
