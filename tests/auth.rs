//! API keys as a client and an operator see them: the door on `/v1`, the public-bind
//! guard, CORS and the `rlmd keys` commands.

mod common;

use common::*;
use reqwest::Method;
use rlmd::config::Config;
use rlmd::keys::KeyOptions;
use rlmd::startup::Application;
use serde_json::{json, Value};

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
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
    let (status, body) = app.get_as("rlmd_whatever", &format!("/v1/runs/{id}")).await;
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
        ("an empty key", Some("")),
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

    let (status, body) = app.get_as(&key, "/v1/runs").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["runs"],
        json!([]),
        "nothing was stored by the refused submit"
    );
    let (status, body) = app.get_as(&key, "/v1/providers").await;
    assert_eq!(status, 200, "{body}");

    for open in ["/healthz", "/readyz"] {
        let (status, body) = app.get(open).await;
        assert_eq!(status, 200, "{open}: {body}");
    }

    app.revoke_key("alice").await;
    let (status, body) = app.get_as(&key, "/v1/runs").await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    // Revoking the last key does not open the door again.
    let (status, _) = app.get("/v1/runs").await;
    assert_eq!(status, 401);
}

/// A configuration that listens on every interface, on `database_url`.
fn public_config(dir: &std::path::Path, database_url: &str, vars: &[(&str, &str)]) -> Config {
    let mut env: std::collections::HashMap<String, String> = [
        ("RLM_BIND", "0.0.0.0:0".to_string()),
        ("DATABASE_URL", database_url.to_string()),
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
    let url = common::database::fresh_url(dir.path());

    let error = match Application::build(public_config(dir.path(), &url, &[])).await {
        Ok(_) => panic!("rlmd served 0.0.0.0 with no key and RLM_AUTH=auto"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("rlmd keys create"), "{error}");
    assert!(error.contains("RLM_AUTH=off"), "{error}");

    let off = public_config(dir.path(), &url, &[("RLM_AUTH", "off")]);
    assert!(Application::build(off).await.is_ok(), "RLM_AUTH=off serves");

    let store = rlmd::store::Store::connect(&url).await.unwrap();
    rlmd::keys::create(&store, "ops", &KeyOptions::default())
        .await
        .unwrap();
    store.close().await;
    assert!(
        Application::build(public_config(dir.path(), &url, &[]))
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
        .env("DATABASE_URL", &app.database_url)
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
    let (status, body) = app.get_as(&key, "/v1/runs").await;
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

    let stored = common::database::dump(&app.database_url);
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
    let (status, body) = app.get_as(&key, "/v1/runs").await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (_, list, _) = keys_cli(&app, &["list"]).await;
    let alice = list.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(
        !alice.trim_end().ends_with('-'),
        "alice shows as revoked: {list}"
    );
}
