//! `GET /metrics`: the Prometheus exposition changes as runs happen, and is behind a key
//! when keys are on (unless RLM_METRICS_PUBLIC). The registry is the process's, shared by
//! every server in this test binary: the tests compare before and after, on labels of
//! their own (the model name).

mod common;

use std::collections::HashMap;

use common::fake_model::{COMPLETION_TOKENS, PROMPT_TOKENS};
use common::*;
use serde_json::json;

/// The samples of an OpenMetrics text, by name with labels as printed.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(app: &TestApp, key: Option<&str>) -> (u16, String, String) {
    let mut request = app.client.get(app.url("/metrics"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_runs_calls_tokens_and_repls() {
    let model = FakeModel::start(
        vec![
            code("print(llm_query('half of 84?'))"),
            code("answer['content'] = '42'\nanswer['ready'] = True"),
        ],
        |_| text("42"),
    )
    .await;
    let app = spawn_app_with(&model, &[("RLM_OPENAI_MODEL", "metrics-model")]).await;
    let (status, content_type, before) = scrape(&app, None).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    for name in [
        "rlmd_runs_total",
        "rlmd_model_calls_total",
        "rlmd_model_call_duration_seconds",
        "rlmd_tokens_total",
        "rlmd_cost_usd_total",
        "rlmd_queue_depth",
        "rlmd_running_runs",
        "rlmd_repl_starts_total",
        "rlmd_repl_failures_total",
        "rlmd_block_duration_seconds",
        "rlmd_sse_clients",
    ] {
        let family = name.trim_end_matches("_total");
        assert!(
            before.contains(&format!("# TYPE {family} ")),
            "{name} missing:\n{before}"
        );
    }
    let before = samples(&before);

    let id = app.submit_ok(&task("What is 84 / 2?", json!("c"))).await;
    let events = app.events(&id, None).await;
    assert_eq!(events.last().unwrap().event, "run.succeeded");
    let after = samples(&scrape(&app, None).await.2);

    let delta = |name: &str| {
        after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    assert!(delta(r#"rlmd_runs_total{status="succeeded"}"#) >= 1.0);
    let root = r#"{provider="openai",model="metrics-model",kind="root"}"#;
    let sub = r#"{provider="openai",model="metrics-model",kind="sub"}"#;
    assert_eq!(delta(&format!("rlmd_model_calls_total{root}")), 2.0);
    assert_eq!(delta(&format!("rlmd_model_calls_total{sub}")), 1.0);
    let tokens = |direction: &str| {
        delta(&format!(
            r#"rlmd_tokens_total{{provider="openai",model="metrics-model",direction="{direction}"}}"#
        ))
    };
    assert_eq!(tokens("input"), 3.0 * PROMPT_TOKENS as f64);
    assert_eq!(tokens("output"), 3.0 * COMPLETION_TOKENS as f64);
    assert_eq!(
        delta(r#"rlmd_model_call_duration_seconds_count{provider="openai",model="metrics-model"}"#),
        3.0
    );
    assert!(delta("rlmd_repl_starts_total") >= 1.0);
    assert!(delta("rlmd_block_duration_seconds_count") >= 2.0);
}

#[tokio::test]
async fn queued_runs_and_open_streams_are_gauged() {
    let model = FakeModel::start(vec![], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    for _ in 0..3 {
        app.submit_ok(&task("Wait.", json!("c"))).await;
    }
    let after = samples(&scrape(&app, None).await.2);
    assert_eq!(
        after["rlmd_queue_depth"], 3.0,
        "the store's queue, read when scraped"
    );
}

#[tokio::test]
async fn metrics_need_a_key_once_keys_are_on_unless_public() {
    let model = FakeModel::start(vec![], |_| text("unused")).await;
    let app = spawn_app(&model).await;
    let key = app.create_key("scraper", Default::default()).await;
    let (status, _, body) = scrape(&app, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(scrape(&app, Some("rlmd_not_a_key")).await.0, 401);
    assert_eq!(
        scrape(&app, Some(&key)).await.0,
        200,
        "any valid key reads them"
    );

    let public = spawn_app_with(&model, &[("RLM_METRICS_PUBLIC", "true")]).await;
    public.create_key("someone", Default::default()).await;
    assert_eq!(scrape(&public, None).await.0, 200);
}
