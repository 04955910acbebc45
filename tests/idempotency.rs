//! `Idempotency-Key` on POST /v1/runs, session turns and comparisons: a retried request
//! gets what the first one made (no second run, no second model call), another request
//! with the same key is refused, and keys belong to their API key.

mod common;

use common::*;
use serde_json::Value;

/// POSTs `body` (as this exact text) to /v1/runs with an Idempotency-Key and, if given, an
/// API key; the status, whether the answer was replayed, and the JSON answer.
async fn post_run(
    app: &TestApp,
    key: &str,
    api_key: Option<&str>,
    body: &str,
) -> (u16, bool, Value) {
    post_with_key(app, "/v1/runs", key, api_key, body).await
}

async fn post_with_key(
    app: &TestApp,
    path: &str,
    key: &str,
    api_key: Option<&str>,
    body: &str,
) -> (u16, bool, Value) {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("Idempotency-Key", key)
        .body(body.to_string());
    if let Some(api_key) = api_key {
        request = request.bearer_auth(api_key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (
        status,
        replayed,
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn runs_in_database(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(&app.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_submit_gets_the_first_run_and_pays_nothing_more() {
    let model = FakeModel::start(vec![text("FINAL(done)")], |_| text("unused")).await;
    let app = spawn_app(&model).await;
    let body = r#"{"prompt": "Once.", "context": "c"}"#;

    let (status, replayed, first) = post_run(&app, "order-42", None, body).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(app.wait_for_end(&id).await["answer"], "done");

    let (status, replayed, again) = post_run(&app, "order-42", None, body).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["status"], "succeeded", "the run as it is now");
    assert_eq!(runs_in_database(&app).await, 1);
    assert_eq!(model.requests().len(), 1, "one model call in all");

    // Another request with the same key is refused; nothing is stored.
    let other = r#"{"prompt": "Something else.", "context": "c"}"#;
    let (status, _, refused) = post_run(&app, "order-42", None, other).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_conflict");
    assert_eq!(runs_in_database(&app).await, 1);

    // A new key is a new request.
    let (status, replayed, fresh) = post_run(&app, "order-43", None, body).await;
    assert_eq!((status, replayed), (202, false));
    assert_ne!(fresh["id"], id.as_str());

    for bad in ["", &"k".repeat(256)] {
        let (status, _, answer) = post_run(&app, bad, None, body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_requests_at_once_make_one_run() {
    let model = FakeModel::start(vec![text("FINAL(done)")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let body = r#"{"prompt": "Once.", "context": "c"}"#;

    let requests = (0..12).map(|_| post_run(&app, "burst", None, body));
    let answers = futures_util::future::join_all(requests).await;

    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, _, run)| {
            assert_eq!(*status, 202, "{run}");
            run["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the same run");
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1
    );
    assert_eq!(runs_in_database(&app).await, 1);
}

#[tokio::test]
async fn a_key_belongs_to_its_api_key() {
    let model = FakeModel::start(vec![text("FINAL(done)")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let alice = app.create_key("alice", Default::default()).await;
    let bob = app.create_key("bob", Default::default()).await;
    let body = r#"{"prompt": "Mine.", "context": "c"}"#;

    let (_, _, alices) = post_run(&app, "k1", Some(&alice), body).await;
    let (status, replayed, bobs) = post_run(&app, "k1", Some(&bob), body).await;

    assert_eq!((status, replayed), (202, false), "{bobs}");
    assert_ne!(alices["id"], bobs["id"], "bob's k1 is not alice's");
    let (status, replayed, again) = post_run(&app, "k1", Some(&alice), body).await;
    assert_eq!((status, replayed, &again["id"]), (202, true, &alices["id"]));
}

#[tokio::test]
async fn a_retried_session_turn_is_the_same_turn() {
    let model = FakeModel::start(vec![text("FINAL(one)")], |_| text("unused")).await;
    let app = spawn_app(&model).await;
    let (_, session) = app.submit_to("/v1/sessions", &serde_json::json!({})).await;
    let turns = format!("/v1/sessions/{}/runs", session["id"].as_str().unwrap());
    let body = r#"{"prompt": "Turn one.", "context": "c"}"#;

    let (status, replayed, first) = post_with_key(&app, &turns, "t1", None, body).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(app.wait_for_end(&id).await["answer"], "one");

    let (status, replayed, again) = post_with_key(&app, &turns, "t1", None, body).await;
    assert_eq!(
        (status, replayed, again["id"].as_str()),
        (202, true, Some(id.as_str()))
    );
    let other = r#"{"prompt": "Turn two.", "context": "c"}"#;
    let (status, _, refused) = post_with_key(&app, &turns, "t1", None, other).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_conflict");

    let (_, session) = app
        .get(&format!("/v1/sessions/{}", session["id"].as_str().unwrap()))
        .await;
    assert_eq!(session["turns"], 1, "{session}");
    assert_eq!(model.requests().len(), 1);

    // A retry still answers once the session is closed: the turn was accepted.
    let path = format!("/v1/sessions/{}", session["id"].as_str().unwrap());
    let closed = app.client.delete(app.url(&path)).send().await.unwrap();
    assert_eq!(closed.status(), 200);
    let (status, replayed, again) = post_with_key(&app, &turns, "t1", None, body).await;
    assert_eq!(
        (status, replayed, again["id"].as_str()),
        (202, true, Some(id.as_str()))
    );
    let (status, _, refused) = post_with_key(&app, &turns, "t2", None, body).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "session_closed");
}

#[tokio::test]
async fn a_retried_comparison_is_the_same_comparison() {
    let model = FakeModel::start(vec![], |_| text("FINAL(same)")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let body = r#"{"prompt": "Compare.", "context": "c",
                   "targets": [{"provider": "openai", "model": "a"}, {"provider": "openai", "model": "b"}]}"#;

    let (status, replayed, first) = post_with_key(&app, "/v1/comparisons", "c1", None, body).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    let (status, replayed, again) = post_with_key(&app, "/v1/comparisons", "c1", None, body).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, first, "the same comparison and runs");
    assert_eq!(runs_in_database(&app).await, 2);

    let other = body.replace("Compare.", "Compare again.");
    let (status, _, refused) = post_with_key(&app, "/v1/comparisons", "c1", None, &other).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_conflict");
    let (_, listed) = app.get("/v1/comparisons").await;
    assert_eq!(
        listed["comparisons"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
}
