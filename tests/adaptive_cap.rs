//! Each provider's concurrency cap adapts: a provider that answers 429 gets fewer calls at
//! once (and every call still gets its answer), one that keeps up gets the whole cap, and
//! batches fill the cap by default. The cap is shown in `/v1/providers` and the metrics.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const BATCH: usize = 200;

fn fan_out(request: &common::fake_model::SeenRequest, _: usize) -> Reply {
    if request.is_root() {
        code(&format!(
            "r = llm_query_batched([f'q{{i}}' for i in range({BATCH})])\n\
             bad = [x for x in r if x != 'ok']\nassert not bad, bad[:3]\n\
             answer['content'] = str(len(r))\nanswer['ready'] = True"
        ))
    } else {
        text("ok")
    }
}

async fn openai_cap(app: &TestApp) -> Value {
    let body: Value = app
        .client
        .get(app.url("/v1/providers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "openai")
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_rate_limited_provider_has_its_cap_cut_and_every_prompt_is_answered() {
    let model = FakeModel::with_capacity(Duration::from_millis(50), 20, fan_out).await;
    let app = spawn_app_with(&model, &[("RLM_PROVIDER_MAX_RETRIES", "4")]).await;
    assert_eq!(openai_cap(&app).await["concurrency_limit"], 32);

    let id = app.submit_ok(&json!({"prompt": "Fan out."})).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], BATCH.to_string());
    // By default a batch may fill the provider's whole cap.
    assert_eq!(run["limits"]["max_concurrent_subcalls"], 64);
    assert_eq!(model.sub_requests().len(), BATCH);
    let refused = model.refused();
    // The first burst (the initial cap of 32 against a capacity of 20) is refused in part;
    // after the cut, the cap stays near what the provider takes.
    assert!(refused > 0, "the provider was never over its capacity");
    assert!(
        refused <= BATCH / 10,
        "{refused} extra requests for {BATCH} prompts"
    );
    let cap = openai_cap(&app).await;
    assert!(cap["concurrency_limit"].as_u64().unwrap() <= 20, "{cap}");
    assert_eq!(cap["max_concurrency"], 64);
    assert_eq!(cap["in_flight"], 0);
    let overloads = app
        .metric("rlmd_provider_overloads_total{provider=\"openai\"}")
        .await;
    assert_eq!(overloads, refused as f64);
    let limit = app
        .metric("rlmd_provider_concurrency_limit{provider=\"openai\"}")
        .await;
    assert_eq!(Some(limit as u64), cap["concurrency_limit"].as_u64());
    // Each refusal was a retry the run's events show.
    let retries = app
        .events(&id, None)
        .await
        .iter()
        .filter(|e| e.event == "provider.retrying" && e.data["data"]["status"] == 429)
        .count();
    assert_eq!(retries, refused);
}

#[tokio::test]
async fn a_provider_that_keeps_up_gets_the_whole_cap() {
    let model = FakeModel::with_script(Duration::from_millis(20), fan_out).await;
    let app = spawn_app_with(&model, &[]).await;

    let id = app.submit_ok(&json!({"prompt": "Fan out."})).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(model.refused(), 0);
    // Slow start: from 32, the cap doubled to its maximum as calls came back.
    assert_eq!(openai_cap(&app).await["concurrency_limit"], 64);
    let peak = common::fake_model::peak_in_flight(&model.sub_requests());
    assert!(peak > 32 && peak <= 64, "peak {peak} calls at once");
}

#[tokio::test]
async fn the_batch_default_is_the_sub_providers_cap_and_a_set_value_wins() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_OPENAI_MAX_CONCURRENCY", "12")]).await;
    let run = app.submit_ok(&json!({"prompt": "P."})).await;
    assert_eq!(app.run(&run).await["limits"]["max_concurrent_subcalls"], 12);
    let run = app
        .submit_ok(&json!({"prompt": "P.", "limits": {"max_concurrent_subcalls": 3}}))
        .await;
    assert_eq!(app.run(&run).await["limits"]["max_concurrent_subcalls"], 3);
    let cap = openai_cap(&app).await;
    assert_eq!(
        (
            cap["max_concurrency"].clone(),
            cap["concurrency_limit"].clone()
        ),
        (json!(12), json!(12))
    );
}
