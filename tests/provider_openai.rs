//! The OpenAI client on the wire: retries that honour the server, clear failures.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn answer_now() -> Reply {
    code("answer['content'] = 'ok'\nanswer['ready'] = True")
}

#[tokio::test]
async fn a_429_is_retried_after_the_wait_the_server_asks_for() {
    let model = FakeModel::with_script(Duration::ZERO, |_, root_index| match root_index {
        0 => Reply::Raw {
            status: 429,
            headers: vec![("retry-after", "1".into()), ("content-type", "application/json".into())],
            body: r#"{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}"#.into(),
        },
        _ => answer_now(),
    })
    .await;
    let app = spawn_app_with(&model, &[("RLM_PROVIDER_MAX_RETRIES", "2")]).await;

    let id = app.submit_ok(&task("Go.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1]
        .received_at
        .duration_since(requests[0].received_at);
    assert!(
        waited >= Duration::from_millis(990),
        "retried after {waited:?}, not after retry-after: 1"
    );
    // One logical call, retried inside the client.
    assert_eq!(run["usage"]["llm_calls"], 1);
}

#[tokio::test]
async fn server_errors_are_retried_and_then_succeed() {
    let model = FakeModel::with_script(Duration::ZERO, |_, root_index| match root_index {
        0 | 1 => Reply::Error {
            status: 500,
            message: "upstream hiccup".into(),
        },
        _ => answer_now(),
    })
    .await;
    let app = spawn_app_with(&model, &[("RLM_PROVIDER_MAX_RETRIES", "2")]).await;

    let id = app.submit_ok(&task("Go.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(model.requests().len(), 3);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let model = FakeModel::start(
        vec![Reply::Error {
            status: 400,
            message: "bad model".into(),
        }],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app_with(&model, &[("RLM_PROVIDER_MAX_RETRIES", "3")]).await;

    let id = app.submit_ok(&task("Go.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "failed");
    assert_eq!(
        run["error"],
        json!({"code": "provider_error", "message": "openai answered HTTP 400: bad model (invalid_request_error)"})
    );
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn a_malformed_body_is_an_error_with_the_status_and_an_excerpt() {
    let model = FakeModel::start(
        vec![Reply::Raw {
            status: 200,
            headers: vec![],
            body: "<html>gateway page</html>".into(),
        }],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Go.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "failed");
    assert_eq!(
        run["error"]["message"],
        "openai sent a malformed response (HTTP 200): <html>gateway page</html>"
    );
}

#[tokio::test]
async fn a_reply_without_content_is_a_clear_error() {
    let refusal = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
        "refusal": "I can't help with that."}, "finish_reason": "stop"}]});
    let model = FakeModel::start(
        vec![Reply::Raw {
            status: 200,
            headers: vec![],
            body: refusal.to_string(),
        }],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Go.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "failed");
    assert_eq!(
        run["error"]["message"],
        "openai returned no content (finish_reason: refused: I can't help with that.)"
    );
}
