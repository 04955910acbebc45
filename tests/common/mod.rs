//! `spawn_app()`: the real rlmd on port 0 with a fresh database (SQLite, or PostgreSQL when
//! `RLMD_TEST_BACKEND=postgres`: see `database`), talking to a scripted fake model; plus
//! small helpers that read like what a user does.

#![allow(dead_code)]

pub mod binary;
pub mod clients;
pub mod database;
pub mod fake_anthropic;
pub mod fake_http;
pub mod fake_model;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rlmd::config::Config;
use rlmd::startup::Application;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)]
pub use fake_model::{code, prompt_is_code, text, FakeModel, Reply};

pub const TEST_API_KEY: &str = "sk-test-4f8a1c9e-never-leak-me";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The SQLite file, when the suite runs on SQLite.
    pub db_path: std::path::PathBuf,
    pub database_url: String,
    pub scratch: std::path::PathBuf,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A temporary directory that REPLs, which run as users of their own, can pass through
/// (a server's scratch directory lives in it) whatever the umask, and list nothing in.
pub fn tempdir_for_repls() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

pub async fn spawn_app(model: &FakeModel) -> TestApp {
    spawn_app_with(model, &[]).await
}

/// Boots rlmd with the test defaults, overridden by `vars`.
pub async fn spawn_app_with(model: &FakeModel, vars: &[(&str, &str)]) -> TestApp {
    let dir = tempdir_for_repls();
    let database_url = database::fresh_url(dir.path());
    boot(model, vars, dir, database_url).await
}

/// Boots rlmd on a SQLite file whatever the suite's backend: for tests about that file
/// (a REPL must not be able to open it).
pub async fn spawn_app_on_sqlite(model: &FakeModel, vars: &[(&str, &str)]) -> TestApp {
    let dir = tempdir_for_repls();
    let database_url = format!("sqlite://{}", dir.path().join("rlmd.db").display());
    boot(model, vars, dir, database_url).await
}

/// Boots another node on the database of `app` (several nodes share one PostgreSQL).
pub async fn spawn_node(model: &FakeModel, vars: &[(&str, &str)], database_url: &str) -> TestApp {
    boot(model, vars, tempdir_for_repls(), database_url.to_string()).await
}

async fn boot(
    model: &FakeModel,
    vars: &[(&str, &str)],
    dir: tempfile::TempDir,
    database_url: String,
) -> TestApp {
    let scratch = dir.path().join("scratch");
    let db_path = dir.path().join("rlmd.db");
    let mut env: HashMap<String, String> = [
        ("RLM_BIND", "127.0.0.1:0".to_string()),
        ("DATABASE_URL", database_url.clone()),
        ("OPENAI_API_KEY", TEST_API_KEY.to_string()),
        ("OPENAI_BASE_URL", model.base_url.clone()),
        ("RLM_REPL_PROGRAM", env!("CARGO_BIN_EXE_rlmd").to_string()),
        ("RLM_SCRATCH_DIR", scratch.display().to_string()),
        (
            "RLM_CONTEXT_CACHE_DIR",
            dir.path().join("contexts").display().to_string(),
        ),
        ("RLM_WORKERS", "2".to_string()),
        ("RLM_PROVIDER_MAX_RETRIES", "0".to_string()),
        ("RLM_SHUTDOWN_GRACE_S", "2".to_string()),
        ("RLM_POLL_INTERVAL_S", "0.2".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (key, value) in vars {
        env.insert(key.to_string(), value.to_string());
    }
    let config = Config::from_vars(env).expect("test config");
    let app = Application::build(config).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        db_path,
        database_url,
        scratch,
        shutdown,
        server: Some(server),
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POST /v1/runs with a JSON body; returns the status and the JSON answer.
    pub async fn submit(&self, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/v1/runs"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POST `body` to `path`; the status and the JSON answer.
    pub async fn submit_to(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Submits and returns the new run's id, asserting the 202.
    pub async fn submit_ok(&self, body: &Value) -> String {
        let (status, run) = self.submit(body).await;
        assert_eq!(status, 202, "submit failed: {run}");
        run["id"].as_str().unwrap().to_string()
    }

    pub async fn post_raw(&self, path: &str, body: &str, content_type: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /metrics`, as text (the counters are this process's: other tests add to them).
    pub async fn metrics_text(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// The value of one series of `GET /metrics` (`name` with its labels, as shown).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
    }

    pub async fn run(&self, id: &str) -> Value {
        let (status, run) = self.get(&format!("/v1/runs/{id}")).await;
        assert_eq!(status, 200, "{run}");
        run
    }

    /// Polls until the run is succeeded, failed or cancelled.
    pub async fn wait_for_end(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.run(id).await;
            if matches!(
                run["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return run;
            }
            assert!(Instant::now() < deadline, "run did not finish: {run}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the run has reached `status`.
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = self.run(id).await;
            if run["status"] == status {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run never reached {status}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn trajectory(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/runs/{id}/trajectory")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Reads the whole event stream (it closes after the terminal event).
    pub async fn events(&self, id: &str, last_event_id: Option<i64>) -> Vec<SseEvent> {
        let mut request = self.client.get(self.url(&format!("/v1/runs/{id}/events")));
        if let Some(last) = last_event_id {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let response = tokio::time::timeout(Duration::from_secs(60), request.send())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = tokio::time::timeout(Duration::from_secs(60), response.text())
            .await
            .unwrap()
            .unwrap();
        parse_sse(&body)
    }

    /// Creates an API key in this server's database, as `rlmd keys create` does (the
    /// server notices it without a restart); returns the key.
    pub async fn create_key(&self, name: &str, options: rlmd::keys::KeyOptions) -> String {
        let store = self.open_store().await;
        let (_, key) = rlmd::keys::create(&store, name, &options).await.unwrap();
        store.close().await;
        key
    }

    pub async fn revoke_key(&self, name: &str) {
        let store = self.open_store().await;
        store.revoke_key(name).await.unwrap();
        store.close().await;
    }

    pub async fn open_store(&self) -> rlmd::store::Store {
        rlmd::store::Store::connect(&self.database_url)
            .await
            .unwrap()
    }

    /// Sends `method path` (with a JSON body, if any) as the holder of `key`; the status,
    /// the headers and the JSON answer.
    pub async fn send_as(
        &self,
        key: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// GET `path` as the holder of `key`; the status and the JSON answer.
    pub async fn get_as(&self, key: &str, path: &str) -> (u16, Value) {
        let (status, _, body) = self
            .send_as(Some(key), reqwest::Method::GET, path, None)
            .await;
        (status, body)
    }

    /// POST `body` to `path` as the holder of `key`.
    pub async fn post_as(
        &self,
        key: &str,
        path: &str,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send_as(Some(key), reqwest::Method::POST, path, Some(body))
            .await
    }

    /// Stops the server gracefully and waits for it.
    /// A pool on this server's database (SQL in `$1` placeholders, as both backends take).
    pub async fn db(&self) -> sqlx::AnyPool {
        database::pool(&self.database_url).await
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Stops this server and boots a new one on the same database.
    pub async fn restart(mut self, model: &FakeModel, vars: &[(&str, &str)]) -> TestApp {
        self.stop().await;
        let dir = std::mem::replace(&mut self._dir, tempdir_for_repls());
        boot(model, vars, dir, self.database_url.clone()).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: i64,
    pub event: String,
    pub data: Value,
}

pub fn parse_sse(body: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    for chunk in body.split("\n\n") {
        let (mut id, mut event, mut data) = (None, None, String::new());
        for line in chunk.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if let (Some(id), Some(event)) = (id, event) {
            events.push(SseEvent {
                id,
                event,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            });
        }
    }
    events
}

/// Asserts that a stream's events are numbered 1, 2, 3, … and end with `last`.
pub fn assert_gap_free(events: &[SseEvent], last: &str) {
    let numbers: Vec<i64> = events.iter().map(|e| e.id).collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(numbers, expected, "gap-free");
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some(last),
        "{events:?}"
    );
}

/// A JSON body for a run with the given prompt and context.
pub fn task(prompt: &str, context: Value) -> Value {
    serde_json::json!({"prompt": prompt, "context": context})
}

/// Live processes of the REPLs whose scratch directories are under `dir` (REPL children of
/// a test server): those working in it (their directory may be gone already), and those
/// running as a user that owns a scratch directory there (for a server that is not root,
/// which cannot read other users' working directories). Zombies do not count.
pub fn processes_in(dir: &std::path::Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").map_or(0, |me| me.uid());
    let users: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|run| std::fs::metadata(run.ok()?.path().join("work")).ok())
        .map(|work| work.uid())
        // A REPL without a user of its own (best effort) cannot be told from the server.
        .filter(|&uid| uid != me)
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
                return false;
            };
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok());
            let working_here =
                std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir));
            !status.contains("State:\tZ")
                && (working_here || uid.is_some_and(|uid| users.contains(&uid)))
        })
        .count()
}
