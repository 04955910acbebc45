//! API keys and tenants as a client and an operator see them: the door, who sees what,
//! per-key limits, the public-bind guard, CORS and the `rlmd keys` commands.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::header::HeaderMap;
use reqwest::Method;
use rlmd::config::Config;
use rlmd::keys::KeyOptions;
use rlmd::startup::Application;
use serde_json::{json, Value};

async fn get_as(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = app.send_as(Some(key), Method::GET, path, None).await;
    (status, body)
}

async fn post_as(app: &TestApp, key: &str, path: &str, body: &Value) -> (u16, HeaderMap, Value) {
    app.send_as(Some(key), Method::POST, path, Some(body)).await
}

async fn submit_as(app: &TestApp, key: &str) -> String {
    let (status, _, run) = post_as(app, key, "/v1/runs", &task("p", json!("c"))).await;
    assert_eq!(status, 202, "{run}");
    run["id"].as_str().unwrap().to_string()
}

/// The ids of the runs `key` sees in the list.
async fn listed(app: &TestApp, key: &str) -> Vec<String> {
    let (status, body) = get_as(app, key, "/v1/runs?limit=100").await;
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
async fn without_keys_the_api_is_open() {
    let (_model, app) = idle_app().await;

    let id = app.submit_ok(&task("p", json!("c"))).await;
    assert_eq!(app.run(&id).await["status"], "queued");
    // A key sent to a server that has none is not needed, and not refused.
    let (status, body) = get_as(&app, "rlmd_whatever", &format!("/v1/runs/{id}")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn once_a_key_exists_every_v1_request_needs_a_valid_one() {
    let (_model, app) = idle_app().await;
    let (status, _) = app.get("/v1/runs").await;
    assert_eq!(status, 200, "open before any key");

    // Made while the server runs: it takes effect at once.
    let key = app.create_key("alice", KeyOptions::default()).await;
    assert!(key.starts_with("rlmd_") && key.len() == 5 + 64, "{key}");

    for (what, sent) in [
        ("no key", None),
        ("a wrong key", Some("rlmd_0000")),
        ("not a bearer", Some("")),
    ] {
        let (status, headers, body) = app.send_as(sent, Method::GET, "/v1/runs", None).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(error_code(&body), "unauthorized", "{what}");
        assert_eq!(headers["www-authenticate"], "Bearer", "{what}");
    }
    let (status, _, body) = app
        .send_as(None, Method::POST, "/v1/runs", Some(&task("p", json!("c"))))
        .await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, _, _) = app.send_as(None, Method::GET, "/v1/nowhere", None).await;
    assert_eq!(status, 401, "unknown /v1 paths are behind the door too");

    let (status, body) = get_as(&app, &key, "/v1/runs").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["runs"],
        json!([]),
        "nothing was stored by the refused submit"
    );
    let (status, body) = get_as(&app, &key, "/v1/providers").await;
    assert_eq!(status, 200, "{body}");

    for open in ["/healthz", "/readyz"] {
        let (status, body) = app.get(open).await;
        assert_eq!(status, 200, "{open}: {body}");
    }

    app.revoke_key("alice").await;
    let (status, body) = get_as(&app, &key, "/v1/runs").await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    // Revoking the last key does not open the door again.
    let (status, _) = app.get("/v1/runs").await;
    assert_eq!(status, 401);
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
        let (status, body) = get_as(&app, &bob, &path).await;
        assert_eq!((status, error_code(&body)), (404, "not_found"), "{path}");
    }
    let (status, _, body) =
        post_as(&app, &bob, &format!("/v1/runs/{alices}/cancel"), &json!({})).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (_, run) = get_as(&app, &alice, &format!("/v1/runs/{alices}")).await;
    assert_eq!(run["status"], "queued", "bob's cancel did nothing");

    assert_eq!(listed(&app, &alice).await, [alices.as_str()]);
    assert_eq!(listed(&app, &bob).await, [bobs.as_str()]);
    assert_eq!(
        listed(&app, &root).await,
        [bobs.as_str(), alices.as_str(), before_keys.as_str()],
        "an admin lists everyone's runs, those made before keys included"
    );

    let (status, body) = get_as(&app, &alice, &format!("/v1/runs/{alices}/trajectory")).await;
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
    let (status, body) = get_as(&app, &root, &format!("/v1/runs/{before_keys}")).await;
    assert_eq!(status, 200, "{body}");

    let (status, _, body) = post_as(
        &app,
        &alice,
        &format!("/v1/runs/{alices}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
    let (status, _, body) =
        post_as(&app, &root, &format!("/v1/runs/{bobs}/cancel"), &json!({})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
}

#[tokio::test]
async fn sessions_and_comparisons_belong_to_their_key() {
    let (_model, app) = idle_app().await;
    let alice = app.create_key("alice", KeyOptions::default()).await;
    let bob = app.create_key("bob", KeyOptions::default()).await;
    let root = app.create_key("root", admin()).await;

    let (status, _, session) = post_as(&app, &alice, "/v1/sessions", &json!({})).await;
    assert_eq!(status, 201, "{session}");
    let session = session["id"].as_str().unwrap().to_string();
    let turns = format!("/v1/sessions/{session}/runs");
    let (status, _, turn) = post_as(&app, &alice, &turns, &task("p", json!("c"))).await;
    assert_eq!(status, 202, "{turn}");
    let turn = turn["id"].as_str().unwrap().to_string();
    let targets = json!({"prompt": "p", "targets": [{"provider": "openai"}, {"provider": "openai", "model": "other"}]});
    let (status, _, comparison) = post_as(&app, &alice, "/v1/comparisons", &targets).await;
    assert_eq!(status, 202, "{comparison}");
    let comparison = comparison["id"].as_str().unwrap().to_string();

    for path in [
        format!("/v1/sessions/{session}"),
        format!("/v1/runs/{turn}"),
        format!("/v1/comparisons/{comparison}"),
    ] {
        let (status, body) = get_as(&app, &bob, &path).await;
        assert_eq!(
            (status, error_code(&body)),
            (404, "not_found"),
            "bob: {path}"
        );
        let (status, body) = get_as(&app, &alice, &path).await;
        assert_eq!(status, 200, "alice: {path}: {body}");
        let (status, body) = get_as(&app, &root, &path).await;
        assert_eq!(status, 200, "admin: {path}: {body}");
    }
    let (status, _, body) = post_as(&app, &bob, &turns, &task("p", json!("c"))).await;
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
    let (_, view) = get_as(&app, &alice, &format!("/v1/sessions/{session}")).await;
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
    let (status, headers, body) = post_as(&app, &alice, "/v1/runs", &task("p", json!("c"))).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"), "{body}");
    assert_eq!(headers["retry-after"], "5");

    // Bob has the server's default of 1, and alice's queue is not his.
    let bobs = submit_as(&app, &bob).await;
    let (status, _, body) = post_as(&app, &bob, "/v1/runs", &task("p", json!("c"))).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"));
    // A comparison is queued whole or not at all.
    let (status, _, body) =
        post_as(&app, &bob, &format!("/v1/runs/{bobs}/cancel"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let targets =
        json!({"prompt": "p", "targets": [{"provider": "openai"}, {"provider": "openai"}]});
    let (status, _, body) = post_as(&app, &bob, "/v1/comparisons", &targets).await;
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
        let (_, body) = get_as(&app, &alice, "/v1/runs").await;
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
        let (_, run) = get_as(&app, &alice, &format!("/v1/runs/{id}")).await;
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
    let (_, bob_run) = get_as(&app, &bob, &format!("/v1/runs/{bobs}")).await;
    assert_eq!(bob_run["status"], "succeeded", "{bob_run}");
    assert!(
        bob_run["started_at"].as_str() < runs[1]["started_at"].as_str(),
        "bob waited behind alice's queue: {bob_run}"
    );
}

/// A configuration that listens on every interface, on a database in `dir`.
fn public_config(dir: &std::path::Path, vars: &[(&str, &str)]) -> Config {
    let mut env: std::collections::HashMap<String, String> = [
        ("RLM_BIND", "0.0.0.0:0".to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("rlmd.db").display()),
        ),
        ("RLM_SCRATCH_DIR", dir.join("scratch").display().to_string()),
        ("RLM_REPL_PROGRAM", env!("CARGO_BIN_EXE_rlmd").to_string()),
        ("RLM_WORKERS", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    Config::from_vars(env).unwrap()
}

#[tokio::test]
async fn a_public_bind_without_a_key_is_refused_unless_auth_is_off() {
    let dir = tempfile::tempdir().unwrap();

    let error = match Application::build(public_config(dir.path(), &[])).await {
        Ok(_) => panic!("rlmd served 0.0.0.0 with no key and RLM_AUTH=auto"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("rlmd keys create"), "{error}");
    assert!(error.contains("RLM_AUTH=off"), "{error}");

    let off = public_config(dir.path(), &[("RLM_AUTH", "off")]);
    assert!(Application::build(off).await.is_ok(), "RLM_AUTH=off serves");

    let url = format!("sqlite://{}", dir.path().join("rlmd.db").display());
    let store = rlmd::store::Store::connect(&url).await.unwrap();
    rlmd::keys::create(&store, "ops", &KeyOptions::default())
        .await
        .unwrap();
    store.close().await;
    assert!(
        Application::build(public_config(dir.path(), &[]))
            .await
            .is_ok(),
        "with a key, a public bind is allowed"
    );
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/v1/runs"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_answers_only_the_listed_origins() {
    let model = FakeModel::start(vec![text("FINAL(done)")], |_| text("unused")).await;
    let app = spawn_app_with(
        &model,
        &[
            ("RLM_WORKERS", "0"),
            ("RLM_CORS_ORIGINS", "https://app.example"),
        ],
    )
    .await;
    let key = app.create_key("web", KeyOptions::default()).await;

    // A preflight carries no key: it is answered, not refused.
    let allowed = preflight(&app, "https://app.example").await;
    assert_eq!(allowed.status(), 200);
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    assert!(
        allowed_headers.contains("content-type"),
        "{allowed_headers}"
    );
    let other = preflight(&app, "https://evil.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let response = app
        .client
        .get(app.url("/v1/runs"))
        .header("origin", "https://app.example")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    let (_model, closed) = idle_app().await;
    let response = preflight(&closed, "https://app.example").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "without RLM_CORS_ORIGINS there is no CORS"
    );
}

async fn keys_cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rlmd"))
        .arg("keys")
        .args(args)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", app.db_path.display()),
        )
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn the_keys_commands_create_list_and_revoke_keys_stored_only_as_hashes() {
    let (_model, app) = idle_app().await;

    let (ok, out, err) = keys_cli(&app, &["create", "alice", "--max-queued-runs", "3"]).await;
    assert!(ok, "{out}{err}");
    let key = out.lines().last().unwrap().to_string();
    assert!(key.starts_with("rlmd_"), "the key is the last line: {out}");
    let (status, body) = get_as(&app, &key, "/v1/runs").await;
    assert_eq!(status, 200, "the printed key works: {body}");
    let (status, _) = app.get("/v1/runs").await;
    assert_eq!(status, 401, "the server noticed the key without a restart");

    let (ok, _, err) = keys_cli(&app, &["create", "alice"]).await;
    assert!(!ok, "a duplicate name is refused");
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, err) = keys_cli(&app, &["create", "bad name"]).await;
    assert!(!ok && err.contains("key name"), "{err}");
    let (ok, _, _) = keys_cli(&app, &["create", "ops", "--admin"]).await;
    assert!(ok);

    let (ok, list, err) = keys_cli(&app, &["list"]).await;
    assert!(ok, "{err}");
    assert!(list.contains("alice") && list.contains("ops"), "{list}");
    assert!(!list.contains(&key), "the list never shows a key");
    assert!(!list.contains(&rlmd::keys::hash(&key)), "nor its hash");

    let mut stored = Vec::new();
    for suffix in ["", "-wal"] {
        let mut path = app.db_path.clone().into_os_string();
        path.push(suffix);
        stored.extend(std::fs::read(path).unwrap_or_default());
    }
    assert!(
        !stored.windows(key.len()).any(|w| w == key.as_bytes()),
        "the database holds the key in plain text"
    );
    let hash = rlmd::keys::hash(&key);
    assert!(stored.windows(hash.len()).any(|w| w == hash.as_bytes()));

    let (ok, _, err) = keys_cli(&app, &["revoke", "nobody"]).await;
    assert!(!ok && err.contains("no API key"), "{err}");
    let (ok, out, err) = keys_cli(&app, &["revoke", "alice"]).await;
    assert!(ok, "{out}{err}");
    let (status, body) = get_as(&app, &key, "/v1/runs").await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (_, list, _) = keys_cli(&app, &["list"]).await;
    let alice = list.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(
        !alice.trim_end().ends_with('-'),
        "alice shows as revoked: {list}"
    );
}
