//! Original example 07: the same task on several providers, compared.

mod common;

use std::time::{Duration, Instant};

use common::fake_http::FakeHttp;
use common::*;
use serde_json::{json, Value};

const PRIMES: &str = "total = sum(p for p in range(2, 100) if all(p % d for d in range(2, p)))\nanswer['content'] = str(total)\nanswer['ready'] = True";

fn fenced() -> String {
    format!("```repl\n{PRIMES}\n```")
}

#[tokio::test]
async fn one_task_on_three_providers_is_compared_side_by_side() {
    let openai = FakeModel::start(vec![code(PRIMES)], |_| text("unused")).await;
    let anthropic = FakeHttp::start(|_, _| Reply::Raw {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: json!({"content": [{"type": "text", "text": fenced()}], "stop_reason": "end_turn",
                     "usage": {"input_tokens": 40, "output_tokens": 20}})
        .to_string(),
    })
    .await;
    let gemini = FakeHttp::start(|_, _| Reply::Raw {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: json!({"candidates": [{"content": {"parts": [{"text": fenced()}]}, "finishReason": "STOP"}],
                     "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 10}}).to_string(),
    })
    .await;
    let app = spawn_app_with(
        &openai,
        &[
            ("ANTHROPIC_API_KEY", "a-key"),
            ("ANTHROPIC_BASE_URL", &anthropic.base_url),
            ("GOOGLE_API_KEY", "g-key"),
            ("GEMINI_BASE_URL", &gemini.base_url),
        ],
    )
    .await;

    let response = app
        .client
        .post(app.url("/v1/comparisons"))
        .json(&json!({
            "prompt": "What is the sum of the primes below 100?",
            "targets": [{"provider": "openai"}, {"provider": "anthropic", "model": "claude-sonnet-4"},
                        {"provider": "gemini"}],
            "max_iterations": 3
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["runs"].as_array().unwrap().len(), 3);

    let deadline = Instant::now() + Duration::from_secs(30);
    let comparison = loop {
        let (status, body) = app.get(&format!("/v1/comparisons/{id}")).await;
        assert_eq!(status, 200);
        if body["status"] == "finished" {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let results = comparison["results"].as_array().unwrap();
    let rows: Vec<(String, String, String)> = results
        .iter()
        .map(|r| {
            (
                r["provider"].as_str().unwrap().into(),
                r["model"].as_str().unwrap().into(),
                r["answer"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "openai".to_string(),
                "gpt-4o-mini".to_string(),
                "1060".to_string()
            ),
            (
                "anthropic".to_string(),
                "claude-sonnet-4".to_string(),
                "1060".to_string()
            ),
            (
                "gemini".to_string(),
                "gemini-2.5-flash".to_string(),
                "1060".to_string()
            ),
        ]
    );
    for result in results {
        assert_eq!(result["status"], "succeeded");
        assert!(result["wall_ms"].as_i64().unwrap() >= 0);
        assert_eq!(result["usage"]["llm_calls"], 1);
        // Each is a normal run with its own trajectory.
        let run_id = result["run_id"].as_str().unwrap();
        assert_eq!(
            app.trajectory(run_id).await["iterations"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            app.run(run_id).await["metadata"]["comparison_id"],
            id.as_str()
        );
    }
    // claude-sonnet-4: 40 in at $3/M + 20 out at $15/M.
    assert!(
        (results[1]["cost_usd"].as_f64().unwrap() - (40.0 * 3.0 + 20.0 * 15.0) / 1e6).abs() < 1e-12
    );
    assert!(comparison["fastest"].is_string() && comparison["cheapest"].is_string());
}

#[tokio::test]
async fn a_bad_target_rejects_the_whole_comparison() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let (status, body) = app
        .submit_to(
            "/v1/comparisons",
            &json!({"prompt": "p", "targets": [{"provider": "openai"}, {"provider": "gemini"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "provider_not_configured");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("targets[1]: provider \"gemini\""));
    let (_, list) = app.get("/v1/runs").await;
    assert_eq!(
        list["runs"],
        json!([]),
        "no run of a rejected comparison is stored"
    );
    let (status, _) = app
        .submit_to("/v1/comparisons", &json!({"prompt": "p", "targets": []}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .get("/v1/comparisons/0190b5c4-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
}
