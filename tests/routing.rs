//! Which model and which sampling each call uses: root, sub-calls, children.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn sampling_and_models_reach_the_provider_for_root_and_sub_calls() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        if request.is_root() {
            code("a = llm_query('default sub')\nb = llm_query('named', model='special')\nanswer['content'] = a + '|' + b\nanswer['ready'] = True")
        } else {
            text(request.body["model"].as_str().unwrap_or_default())
        }
    })
    .await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&json!({
            "prompt": "Route.", "model": "big", "sub_model": "small",
            "sampling": {"temperature": 0.2, "seed": 7, "max_tokens": 300},
            "sub_sampling": {"temperature": 0.0, "top_p": 0.5}
        }))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "small|special");
    let root = &model.root_requests()[0].body;
    assert_eq!(root["model"], "big");
    assert_eq!(
        (root["temperature"].clone(), root["seed"].clone()),
        (json!(0.2), json!(7))
    );
    // A test server is "OpenAI-compatible", so the classic field name is used.
    assert_eq!(root["max_tokens"], 300);
    assert!(root.get("top_p").is_none());
    for sub in model.sub_requests() {
        assert_eq!(
            (sub.body["temperature"].clone(), sub.body["top_p"].clone()),
            (json!(0.0), json!(0.5))
        );
        assert!(sub.body.get("seed").is_none());
    }
    assert_eq!(run["usage_by_model"]["big"]["llm_calls"], 1);
    assert_eq!(run["usage_by_model"]["small"]["llm_calls"], 1);
    assert_eq!(run["usage_by_model"]["special"]["llm_calls"], 1);
}

#[tokio::test]
async fn bad_sampling_and_sub_providers_are_rejected() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    for (body, message) in [
        (
            json!({"prompt": "p", "sampling": {"temperature": 3}}),
            "`sampling.temperature` must be between 0 and 2",
        ),
        (
            json!({"prompt": "p", "sub_sampling": {"top_p": 0}}),
            "`sub_sampling.top_p` must be above 0 and at most 1",
        ),
        (
            json!({"prompt": "p", "sampling": {"temp": 1}}),
            "unknown field `temp`",
        ),
        (
            json!({"prompt": "p", "sub_provider": "gemini"}),
            "provider \"gemini\" is not configured",
        ),
    ] {
        let (status, error) = app.submit(&body).await;
        assert_eq!(status, 400, "{body}");
        let text = error["error"]["message"].as_str().unwrap();
        assert!(
            text.contains(message),
            "{text:?} should mention {message:?}"
        );
    }
}
