//! A model call that is retried says so on the run's stream: `provider.retrying` with the
//! status, the try and the wait, stored with the run's other events and never with a key.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_retried_call_is_announced_with_its_status_try_and_wait() {
    let model = FakeModel::with_script(Duration::ZERO, |_, root_calls| {
        if root_calls == 0 {
            Reply::Raw {
                status: 500,
                headers: vec![("retry-after-ms", "50".into())],
                body: json!({"error": {"message": "overloaded", "type": "server_error"}})
                    .to_string(),
            }
        } else {
            code("answer['content'] = 'after a retry'\nanswer['ready'] = True")
        }
    })
    .await;
    let app = spawn_app_with(&model, &[("RLM_PROVIDER_MAX_RETRIES", "2")]).await;

    let id = app.submit_ok(&task("Retry.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "after a retry");
    assert_eq!(model.requests().len(), 2);
    let events = app.events(&id, None).await;
    let retries: Vec<_> = events
        .iter()
        .filter(|e| e.event == "provider.retrying")
        .collect();
    assert_eq!(retries.len(), 1, "{events:?}");
    let data = &retries[0].data["data"];
    assert_eq!(data["provider"], "openai");
    assert_eq!(data["status"], 500);
    assert_eq!(data["error_kind"], "status");
    assert_eq!(data["attempt"], 2);
    assert_eq!(data["max_attempts"], 3);
    assert_eq!(data["wait_ms"], 50);
    assert_eq!(data["kind"], "root");
    // It comes before the call's own record, while the run waits.
    let called = events.iter().position(|e| e.event == "llm.called").unwrap();
    assert!(
        events
            .iter()
            .position(|e| e.event == "provider.retrying")
            .unwrap()
            < called
    );
    let stream =
        serde_json::to_string(&events.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
    assert!(!stream.contains(TEST_API_KEY));
}
