//! Compaction: at the threshold the conversation is summarised and replaced; the full
//! record stays readable in the REPL as `history`.

mod common;

use std::time::Duration;

use common::fake_model::SeenRequest;
use common::*;
use serde_json::json;

const SUMMARY: &str = "SUMMARY: printed lines of x so far.";

fn chars(request: &SeenRequest) -> usize {
    request
        .messages()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().chars().count())
        .sum()
}

#[tokio::test]
async fn the_conversation_is_compacted_at_the_threshold_and_history_keeps_everything() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        let compacted = request.messages().iter().any(|m| {
            m["content"].as_str().is_some_and(|c| c.contains("The conversation so far was compacted"))
        });
        if request.last_user_text().contains("about to be shortened") {
            text(SUMMARY)
        } else if compacted {
            code("answer['content'] = f\"{len(history)} {history[0]['role']} {history[-1]['content'][:4]}\"\nanswer['ready'] = True")
        } else {
            code("print('x' * 1000)")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.json");
    std::fs::write(
        &prices,
        r#"{"models": {"tiny": {"input": 1.0, "output": 2.0, "context_window": 4000}}}"#,
    )
    .unwrap();
    let app = spawn_app_with(&model, &[("RLM_PRICES_FILE", prices.to_str().unwrap())]).await;

    let id = app
        .submit_ok(
            &json!({"prompt": "Print a lot.", "model": "tiny", "max_iterations": 20,
                           "compaction": {"threshold_pct": 0.5}}),
        )
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let requests = model.requests();
    let at = requests
        .iter()
        .position(|r| r.last_user_text().contains("about to be shortened"))
        .expect("no compaction call");
    // 4000 tokens * 0.5 = 2000 tokens, estimated at 4 characters a token.
    for before in &requests[..at] {
        assert!(
            chars(before) / 4 < 2000,
            "should have compacted before {} chars",
            chars(before)
        );
    }
    let summarise_chars = requests[at].last_user_text().chars().count();
    assert!((chars(&requests[at]) - summarise_chars) / 4 >= 2000);
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.last_user_text().contains("about to be shortened"))
            .count(),
        1
    );

    // After it: system, task, summary, notice.
    let after = &requests[at + 1];
    let roles: Vec<_> = after
        .messages()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(after.messages()[2]["content"], SUMMARY);

    // history: the task message plus every message taken out of the conversation.
    let dropped = requests[at].messages().len() - 1 - 1;
    assert_eq!(run["answer"], format!("{dropped} user REPL"));

    let events = app.events(&id, None).await;
    let compactions: Vec<_> = events.iter().filter(|e| e.event == "compaction").collect();
    assert_eq!(compactions.len(), 1);
    assert_eq!(compactions[0].data["data"]["compactions"], 1);
    assert_eq!(compactions[0].data["data"]["context_window"], 4000);
    let trajectory = app.trajectory(&id).await;
    let kinds: Vec<_> = trajectory["llm_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].clone())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "compaction").count(), 1);
}

#[tokio::test]
async fn compaction_settings_are_checked() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let (status, run) = app
        .submit(&json!({"prompt": "p", "compaction": true}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(run["compaction"], json!({"threshold_pct": 0.85}));
    let (status, _) = app
        .submit(&json!({"prompt": "p", "compaction": {"threshold_pct": 1.5}}))
        .await;
    assert_eq!(status, 400);
    let (status, run) = app
        .submit(&json!({"prompt": "p", "compaction": false}))
        .await;
    assert_eq!((status, run["compaction"].clone()), (202, json!(null)));
}
