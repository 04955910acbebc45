//! The listings of sessions and comparisons (and the runs listing's previews): newest first,
//! paged, filtered, a preview of the prompt rather than the whole of it, another key's
//! items never shown.

mod common;

use common::*;
use serde_json::{json, Value};

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn sessions_are_listed_newest_first_with_their_latest_prompt() {
    let model = FakeModel::start(vec![], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let mut made = Vec::new();
    for _ in 0..3 {
        let (status, session) = app.submit_to("/v1/sessions", &json!({})).await;
        assert_eq!(status, 201);
        made.push(session["id"].as_str().unwrap().to_string());
    }
    let long = "x".repeat(5000);
    let turns = format!("/v1/sessions/{}/runs", made[2]);
    app.submit_to(&turns, &task("First turn.", json!("c")))
        .await;
    let (status, _) = app.submit_to(&turns, &task(&long, json!("c"))).await;
    assert_eq!(status, 202);
    app.client
        .delete(app.url(&format!("/v1/sessions/{}", made[0])))
        .send()
        .await
        .unwrap();

    let (status, page) = app.get("/v1/sessions?limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page["sessions"]), [made[2].clone(), made[1].clone()]);
    let newest = &page["sessions"][0];
    assert_eq!(newest["turns"], 2);
    assert_eq!(newest["status"], "open");
    let preview = newest["prompt_preview"].as_str().unwrap();
    assert_eq!(
        preview,
        format!("{}…", "x".repeat(200)),
        "a preview, not 5000 chars"
    );
    assert!(
        newest.get("runs").is_none(),
        "a listing carries no turn list"
    );
    assert_eq!(
        page["sessions"][1]["prompt_preview"],
        Value::Null,
        "no turn yet"
    );

    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!("/v1/sessions?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&rest["sessions"]), [made[0].clone()]);
    assert_eq!(rest["next_cursor"], Value::Null);

    let (_, closed) = app.get("/v1/sessions?status=closed").await;
    assert_eq!(ids(&closed["sessions"]), [made[0].clone()]);
    let (status, bad) = app.get("/v1/sessions?status=sleeping").await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn comparisons_are_listed_with_their_targets() {
    let model = FakeModel::start(vec![], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let mut made = Vec::new();
    for n in 0..3 {
        let body = json!({
            "prompt": format!("Question {n}"),
            "context": "c",
            "targets": [{"provider": "openai", "model": "m1"}, {"provider": "openai", "model": "m2"}],
        });
        let (status, comparison) = app.submit_to("/v1/comparisons", &body).await;
        assert_eq!(status, 202, "{comparison}");
        made.push(comparison);
    }

    let (status, page) = app.get("/v1/comparisons?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let listed = &page["comparisons"];
    assert_eq!(
        ids(listed),
        [
            made[2]["id"].as_str().unwrap(),
            made[1]["id"].as_str().unwrap()
        ]
    );
    let newest = &listed[0];
    assert_eq!(newest["prompt_preview"], "Question 2");
    assert_eq!(newest["status"], "running");
    assert_eq!(newest["runs"][0]["model"], "m1");
    assert_eq!(newest["runs"][1]["model"], "m2");
    assert_eq!(newest["runs"][1]["run_id"], made[2]["runs"][1]["run_id"]);
    assert_eq!(newest["runs"][0]["status"], "queued");

    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app.get(&format!("/v1/comparisons?cursor={cursor}")).await;
    assert_eq!(ids(&rest["comparisons"]), [made[0]["id"].as_str().unwrap()]);
    let (status, _) = app.get("/v1/comparisons?status=running").await;
    assert_eq!(status, 400, "comparisons have no status filter");
}

#[tokio::test]
async fn listings_show_only_the_callers_own() {
    let model = FakeModel::start(vec![], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let alice = app.create_key("alice", Default::default()).await;
    let bob = app.create_key("bob", Default::default()).await;
    let (_, _, session) = app.post_as(&alice, "/v1/sessions", &json!({})).await;
    let comparison = json!({"prompt": "p", "context": "c", "targets": [{"provider": "openai"}]});
    let (status, _, compared) = app.post_as(&alice, "/v1/comparisons", &comparison).await;
    assert_eq!(status, 202, "{compared}");

    for (path, field, own) in [
        ("/v1/sessions", "sessions", &session),
        ("/v1/comparisons", "comparisons", &compared),
    ] {
        let (status, mine) = app.get_as(&alice, path).await;
        assert_eq!(status, 200);
        assert_eq!(ids(&mine[field]), [own["id"].as_str().unwrap()]);
        let (status, theirs) = app.get_as(&bob, path).await;
        assert_eq!(status, 200);
        assert_eq!(theirs[field], json!([]), "bob sees none of alice's {field}");
    }
}

#[tokio::test]
async fn the_runs_listing_carries_a_prompt_preview_not_the_prompt() {
    let model = FakeModel::start(vec![], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let prompt = format!("{}é tail", "a".repeat(199));
    app.submit_ok(&task(&prompt, json!("c"))).await;
    let (_, page) = app.get("/v1/runs").await;
    assert_eq!(
        page["runs"][0]["prompt_preview"],
        format!("{}é…", "a".repeat(199))
    );
    assert!(
        page["runs"][0].get("prompt").is_none(),
        "a listing never carries the whole prompt"
    );
    let id = page["runs"][0]["id"].as_str().unwrap();
    assert_eq!(
        app.run(id).await["prompt"],
        prompt.as_str(),
        "the run itself has it"
    );
}
