//! Tenants: every run, session and comparison belongs to the API key that made it; other
//! keys get 404, admins see all; per-key limits on queued (429) and running runs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use rlmd::keys::KeyOptions;
use serde_json::{json, Value};

async fn submit_as(app: &TestApp, key: &str) -> String {
    let (status, _, run) = app.post_as(key, "/v1/runs", &task("p", json!("c"))).await;
    assert_eq!(status, 202, "{run}");
    run["id"].as_str().unwrap().to_string()
}

/// The ids of the runs `key` sees in the list.
async fn listed(app: &TestApp, key: &str) -> Vec<String> {
    let (status, body) = app.get_as(key, "/v1/runs?limit=100").await;
    assert_eq!(status, 200, "{body}");
    body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

fn admin() -> KeyOptions {
    KeyOptions {
        admin: true,
        ..KeyOptions::default()
    }
}

async fn idle_app() -> (FakeModel, TestApp) {
    let model = FakeModel::start(vec![text("FINAL(done)")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    (model, app)
}

#[tokio::test]
async fn a_key_never_sees_another_keys_runs_and_an_admin_sees_all() {
    let (_model, app) = idle_app().await;
    let before_keys = app.submit_ok(&task("p", json!("c"))).await;
    let alice = app.create_key("alice", KeyOptions::default()).await;
    let bob = app.create_key("bob", KeyOptions::default()).await;
    let root = app.create_key("root", admin()).await;

    let alices = submit_as(&app, &alice).await;
    let bobs = submit_as(&app, &bob).await;

    for path in [
        format!("/v1/runs/{alices}"),
        format!("/v1/runs/{alices}/trajectory"),
        format!("/v1/runs/{alices}/events"),
        format!("/v1/runs/{before_keys}"),
    ] {
        let (status, body) = app.get_as(&bob, &path).await;
        assert_eq!((status, error_code(&body)), (404, "not_found"), "{path}");
    }
    let (status, _, body) = app
        .post_as(&bob, &format!("/v1/runs/{alices}/cancel"), &json!({}))
        .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (_, run) = app.get_as(&alice, &format!("/v1/runs/{alices}")).await;
    assert_eq!(run["status"], "queued", "bob's cancel did nothing");

    assert_eq!(listed(&app, &alice).await, [alices.as_str()]);
    assert_eq!(listed(&app, &bob).await, [bobs.as_str()]);
    assert_eq!(
        listed(&app, &root).await,
        [bobs.as_str(), alices.as_str(), before_keys.as_str()],
        "an admin lists everyone's runs, those made before keys included"
    );

    let (status, body) = app
        .get_as(&alice, &format!("/v1/runs/{alices}/trajectory"))
        .await;
    assert_eq!(status, 200, "{body}");
    let events = app
        .client
        .get(app.url(&format!("/v1/runs/{alices}/events")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200, "the owner streams its run's events");
    drop(events);
    let (status, body) = app.get_as(&root, &format!("/v1/runs/{before_keys}")).await;
    assert_eq!(status, 200, "{body}");

    let (status, _, body) = app
        .post_as(&alice, &format!("/v1/runs/{alices}/cancel"), &json!({}))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
    let (status, _, body) = app
        .post_as(&root, &format!("/v1/runs/{bobs}/cancel"), &json!({}))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
}

#[tokio::test]
async fn sessions_and_comparisons_belong_to_their_key() {
    let (_model, app) = idle_app().await;
    let alice = app.create_key("alice", KeyOptions::default()).await;
    let bob = app.create_key("bob", KeyOptions::default()).await;
    let root = app.create_key("root", admin()).await;

    let (status, _, session) = app.post_as(&alice, "/v1/sessions", &json!({})).await;
    assert_eq!(status, 201, "{session}");
    let session = session["id"].as_str().unwrap().to_string();
    let turns = format!("/v1/sessions/{session}/runs");
    let (status, _, turn) = app.post_as(&alice, &turns, &task("p", json!("c"))).await;
    assert_eq!(status, 202, "{turn}");
    let turn = turn["id"].as_str().unwrap().to_string();
    let targets = json!({"prompt": "p", "targets": [{"provider": "openai"}, {"provider": "openai", "model": "other"}]});
    let (status, _, comparison) = app.post_as(&alice, "/v1/comparisons", &targets).await;
    assert_eq!(status, 202, "{comparison}");
    let comparison = comparison["id"].as_str().unwrap().to_string();

    for path in [
        format!("/v1/sessions/{session}"),
        format!("/v1/runs/{turn}"),
        format!("/v1/comparisons/{comparison}"),
    ] {
        let (status, body) = app.get_as(&bob, &path).await;
        assert_eq!(
            (status, error_code(&body)),
            (404, "not_found"),
            "bob: {path}"
        );
        let (status, body) = app.get_as(&alice, &path).await;
        assert_eq!(status, 200, "alice: {path}: {body}");
        let (status, body) = app.get_as(&root, &path).await;
        assert_eq!(status, 200, "admin: {path}: {body}");
    }
    let (status, _, body) = app.post_as(&bob, &turns, &task("p", json!("c"))).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, _, body) = app
        .send_as(
            Some(&bob),
            Method::DELETE,
            &format!("/v1/sessions/{session}"),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (_, view) = app.get_as(&alice, &format!("/v1/sessions/{session}")).await;
    assert_eq!(view["status"], "open", "bob's close did nothing");
    assert_eq!(view["turns"], 1, "bob's turn was not queued");
    assert_eq!(listed(&app, &bob).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let model = FakeModel::start(vec![text("FINAL(done)")], |_| text("unused")).await;
    let app = spawn_app_with(
        &model,
        &[("RLM_WORKERS", "0"), ("RLM_KEY_MAX_QUEUED_RUNS", "1")],
    )
    .await;
    let alice = app
        .create_key(
            "alice",
            KeyOptions {
                max_queued_runs: Some(2),
                ..KeyOptions::default()
            },
        )
        .await;
    let bob = app.create_key("bob", KeyOptions::default()).await;

    submit_as(&app, &alice).await;
    submit_as(&app, &alice).await;
    let (status, headers, body) = app
        .post_as(&alice, "/v1/runs", &task("p", json!("c")))
        .await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"), "{body}");
    assert_eq!(headers["retry-after"], "5");

    // Bob has the server's default of 1, and alice's queue is not his.
    let bobs = submit_as(&app, &bob).await;
    let (status, _, body) = app.post_as(&bob, "/v1/runs", &task("p", json!("c"))).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"));
    // A comparison is queued whole or not at all.
    let (status, _, body) = app
        .post_as(&bob, &format!("/v1/runs/{bobs}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let targets =
        json!({"prompt": "p", "targets": [{"provider": "openai"}, {"provider": "openai"}]});
    let (status, _, body) = app.post_as(&bob, "/v1/comparisons", &targets).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"));
    assert_eq!(
        listed(&app, &bob).await,
        [bobs],
        "no target of the refused comparison was stored"
    );
}

#[tokio::test]
async fn a_key_limited_to_one_running_run_never_runs_two_at_once() {
    let model =
        FakeModel::with_script(Duration::from_millis(400), |_, _| text("FINAL(done)")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "3")]).await;
    let alice = app
        .create_key(
            "alice",
            KeyOptions {
                max_concurrent_runs: Some(1),
                ..KeyOptions::default()
            },
        )
        .await;
    let bob = app.create_key("bob", KeyOptions::default()).await;

    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(submit_as(&app, &alice).await);
    }
    let bobs = submit_as(&app, &bob).await;

    // Sampled while they run: never two of alice's at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = app.get_as(&alice, "/v1/runs").await;
        let statuses: Vec<String> = body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap().to_string())
            .collect();
        let running = statuses.iter().filter(|s| *s == "running").count();
        assert!(running <= 1, "alice has {running} runs running at once");
        if statuses.iter().all(|s| s == "succeeded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's runs never finished: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut runs = Vec::new();
    for id in &alices {
        let (_, run) = app.get_as(&alice, &format!("/v1/runs/{id}")).await;
        runs.push(run);
    }
    // RFC 3339 times of one format sort as text.
    runs.sort_by_key(|r| r["started_at"].as_str().unwrap().to_string());
    for pair in runs.windows(2) {
        assert!(
            pair[1]["started_at"].as_str() >= pair[0]["finished_at"].as_str(),
            "two of alice's runs overlapped: {} and {}",
            pair[0],
            pair[1]
        );
    }
    // Alice's waiting runs did not hold up bob's: a free worker skipped them.
    let (_, bob_run) = app.get_as(&bob, &format!("/v1/runs/{bobs}")).await;
    assert_eq!(bob_run["status"], "succeeded", "{bob_run}");
    assert!(
        bob_run["started_at"].as_str() < runs[1]["started_at"].as_str(),
        "bob waited behind alice's queue: {bob_run}"
    );
}
