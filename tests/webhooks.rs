//! Webhooks: a run that ends is POSTed to its `webhook.url`, signed with its secret,
//! retried with backoff while the receiver fails, every attempt recorded as an event; URLs
//! are checked against the operator's allowlist (or must be public without one).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::fake_model::serve;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// The statuses to answer, in order; 200 once they run out.
    statuses: Arc<Mutex<Vec<u16>>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receiver.seen.lock().unwrap().push((headers, body));
    let mut statuses = receiver.statuses.lock().unwrap();
    let status = if statuses.is_empty() {
        200
    } else {
        statuses.remove(0)
    };
    StatusCode::from_u16(status).unwrap()
}

async fn start_receiver(statuses: Vec<u16>) -> (String, Receiver) {
    let receiver = Receiver {
        statuses: Arc::new(Mutex::new(statuses)),
        ..Default::default()
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let (url, _server) = serve(app).await;
    (format!("{url}/hook"), receiver)
}

/// The run's webhook events, once its delivery has ended.
async fn webhook_events(app: &TestApp, id: &str) -> Vec<(String, Value)> {
    let db = app.db().await;
    for _ in 0..200 {
        let state: Option<String> =
            sqlx::query_scalar("SELECT webhook_state FROM runs WHERE id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
        if matches!(state.as_deref(), Some("delivered" | "failed")) {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT type, data FROM events WHERE run_id = $1 AND type LIKE 'webhook.%' ORDER BY seq",
            )
            .bind(id)
            .fetch_all(&db)
            .await
            .unwrap();
            return rows
                .into_iter()
                .map(|(kind, data)| (kind, serde_json::from_str(&data).unwrap()))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the webhook of {id} was never settled");
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_finished_run_is_posted_signed_to_its_webhook() {
    let model = FakeModel::start(vec![text("FINAL(delivered)")], |_| text("unused")).await;
    let (url, receiver) = start_receiver(vec![]).await;
    let app = spawn_app_with(&model, &[("RLM_WEBHOOK_ALLOW", "127.0.0.1")]).await;
    let mut body = task("Deliver me.", json!("c"));
    body["webhook"] = json!({"url": url, "secret": "s3cret-value"});

    let id = app.submit_ok(&body).await;
    let run = app.wait_for_end(&id).await;
    let events = webhook_events(&app, &id).await;

    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "webhook.delivered");
    assert_eq!(events[0].1["status"], 200);
    assert_eq!(events[0].1["attempt"], 1);
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (headers, raw) = &seen[0];
    let expected = format!("sha256={}", hmac_hex("s3cret-value", raw));
    assert_eq!(headers["x-rlmd-signature"], expected.as_str());
    assert_eq!(headers["x-rlmd-event"], "run.succeeded");
    assert_eq!(headers["x-rlmd-run-id"], id.as_str());
    let posted: Value = serde_json::from_slice(raw).unwrap();
    let (_, shown) = app.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(posted, shown, "the run as GET /v1/runs/{{id}} shows it");
    assert_eq!(posted["answer"], "delivered");
    assert_eq!(run["webhook"], json!({"url": url, "signed": true}));
    // The secret is the run owner's: never shown, never in an event.
    let all = format!("{shown}{events:?}");
    assert!(!all.contains("s3cret-value"));
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_backoff_until_it_answers() {
    let model = FakeModel::start(vec![text("FINAL(x)")], |_| text("unused")).await;
    let (url, receiver) = start_receiver(vec![500, 503]).await;
    let app = spawn_app_with(
        &model,
        &[
            ("RLM_WEBHOOK_ALLOW", "127.0.0.1"),
            ("RLM_WEBHOOK_BACKOFF_S", "0.05"),
        ],
    )
    .await;
    let mut body = task("Retry me.", json!("c"));
    body["webhook"] = json!({"url": url});

    let id = app.submit_ok(&body).await;
    let events = webhook_events(&app, &id).await;

    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["webhook.failed", "webhook.failed", "webhook.delivered"]
    );
    assert_eq!(events[0].1["status"], 500);
    assert_eq!(events[0].1["will_retry"], true);
    assert_eq!(events[0].1["retry_in_ms"], 50);
    assert_eq!(events[1].1["retry_in_ms"], 100, "the wait doubles");
    assert_eq!(events[2].1["attempt"], 3);
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[0].0.get("x-rlmd-signature").is_none(),
        "no secret, no signature"
    );
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_given_up_on_in_bounded_time() {
    let model = FakeModel::start(vec![text("FINAL(x)")], |_| text("unused")).await;
    let (url, receiver) = start_receiver(vec![500; 100]).await;
    let app = spawn_app_with(
        &model,
        &[
            ("RLM_WEBHOOK_ALLOW", "127.0.0.1"),
            ("RLM_WEBHOOK_BACKOFF_S", "0.05"),
            ("RLM_WEBHOOK_RETRY_FOR_S", "0.3"),
        ],
    )
    .await;
    let mut body = task("Give up.", json!("c"));
    body["webhook"] = json!({"url": url});

    let id = app.submit_ok(&body).await;
    let events = webhook_events(&app, &id).await;

    let last = &events.last().unwrap().1;
    assert_eq!(last["will_retry"], false, "{events:?}");
    assert!(events.iter().all(|(kind, _)| kind == "webhook.failed"));
    let attempts = receiver.seen.lock().unwrap().len();
    assert!((2..=5).contains(&attempts), "{attempts} attempts in 0.3 s");
    assert_eq!(events.len(), attempts);
}

#[tokio::test]
async fn webhook_urls_are_checked_at_submit() {
    let model = FakeModel::start(vec![], |_| text("unused")).await;
    let open = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let listed = spawn_app_with(
        &model,
        &[
            ("RLM_WORKERS", "0"),
            ("RLM_WEBHOOK_ALLOW", "hooks.example.com"),
        ],
    )
    .await;
    for (app, url) in [
        (&open, "http://127.0.0.1:9/hook"),
        (&open, "http://169.254.169.254/latest/meta-data"),
        (&open, "http://localhost:8080/"),
        (&open, "file:///etc/passwd"),
        (&listed, "https://elsewhere.example.com/hook"),
    ] {
        let mut body = task("p", json!("c"));
        body["webhook"] = json!({"url": url});
        let (status, answer) = app.submit(&body).await;
        assert_eq!(status, 400, "{url}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_webhook");
    }
    let mut body = task("p", json!("c"));
    body["webhook"] = json!({"url": "https://hooks.example.com/rlmd", "secret": "k"});
    assert_eq!(listed.submit(&body).await.0, 202);
    body["webhook"] = json!({"url": "https://hooks.example.com/rlmd", "extra": 1});
    assert_eq!(
        listed.submit(&body).await.0,
        400,
        "unknown webhook fields are refused"
    );
}
