//! Failure paths fail fast and cost nothing: what can be known at submit is refused there
//! (with the error JSON, before a model is called or anything is stored), and every error
//! answer, 405 and 413 included, has the error JSON.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a run that should never start gets from the model: nothing it could use.
async fn unused_model() -> FakeModel {
    FakeModel::start(vec![text("unused")], |_| text("unused")).await
}

async fn stored_runs(app: &TestApp) -> Value {
    let (status, list) = app.get("/v1/runs").await;
    assert_eq!(status, 200);
    list["runs"].clone()
}

/// Sends `head` (and `body`) on a raw connection and reads the answer until the server
/// closes it or `Content-Length` says it is complete.
async fn raw_exchange(app: &TestApp, head: &str, body: &[u8]) -> (u16, Value) {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut buffer).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&received).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok());
                if length.is_some_and(|length| body.len() >= length) {
                    break;
                }
            }
        }
        String::from_utf8_lossy(&received).to_string()
    })
    .await
    .expect("no answer while the body was still unsent");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_wrong_method_gets_the_error_json_and_keeps_the_allow_header() {
    let model = unused_model().await;
    let app = spawn_app(&model).await;

    let response = app.client.delete(app.url("/v1/runs")).send().await.unwrap();

    assert_eq!(response.status(), 405);
    let allow = response.headers()["allow"].to_str().unwrap().to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert_eq!(
        body["error"]["message"],
        "DELETE is not allowed on /v1/runs"
    );

    let response = app.client.put(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}

#[tokio::test]
async fn an_announced_body_over_the_limit_is_refused_before_it_is_sent() {
    let model = unused_model().await;
    let app = spawn_app_with(&model, &[("RLM_MAX_BODY_BYTES", "1000")]).await;

    // 10 GB announced, one byte sent: the answer comes without the rest.
    let head = "POST /v1/runs HTTP/1.1\r\nHost: rlmd\r\nContent-Type: application/json\r\n\
                Content-Length: 10000000000\r\n\r\n";
    let (status, body) = raw_exchange(&app, head, b"{").await;

    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(model.requests().is_empty());
    assert_eq!(stored_runs(&app).await, json!([]));
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_too() {
    let model = unused_model().await;
    let app = spawn_app_with(&model, &[("RLM_MAX_BODY_BYTES", "1000")]).await;
    let prompt = "x".repeat(2000);
    let json = format!("{{\"prompt\": \"{prompt}\"}}");
    let mut chunked = String::new();
    for piece in json.as_bytes().chunks(500) {
        chunked.push_str(&format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            String::from_utf8_lossy(piece)
        ));
    }
    chunked.push_str("0\r\n\r\n");

    let head = "POST /v1/runs HTTP/1.1\r\nHost: rlmd\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let (status, body) = raw_exchange(&app, head, chunked.as_bytes()).await;

    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(stored_runs(&app).await, json!([]));
}

#[tokio::test]
async fn the_events_of_a_finished_run_resumed_at_the_end_close_at_once() {
    let model = FakeModel::start(
        vec![code("answer['content'] = 'done'\nanswer['ready'] = True")],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&task("Finish.", json!(""))).await;
    app.wait_for_end(&id).await;
    let all = app.events(&id, None).await;
    let last = all.last().unwrap().clone();
    assert_eq!(last.event, "run.succeeded");

    // At the end, and past it: nothing more, and the stream closes (events() would time out).
    assert!(app.events(&id, Some(last.id)).await.is_empty());
    assert!(app.events(&id, Some(last.id + 100)).await.is_empty());
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(5),
        app.get(&format!("/v1/runs/{id}/events?after={}", last.id)),
    )
    .await
    .expect("?after= at the end must close too");
    assert_eq!(status, 200);

    // Just before the end: the rest is replayed, then the stream closes.
    let rest = app.events(&id, Some(last.id - 1)).await;
    let kinds: Vec<&str> = rest.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["run.succeeded"]);
}

fn broken_tool() -> Value {
    json!([
        {"name": "good", "description": "fine", "source": "def good():\n    return 1"},
        {"name": "bad", "description": "broken", "source": "x = 1\ndef bad(:\n    pass"}
    ])
}

fn assert_invalid_tool(status: u16, body: &Value) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_tool", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("tool bad: SyntaxError at line 2: "),
        "{message}"
    );
}

#[tokio::test]
async fn a_tool_that_does_not_compile_is_refused_at_submit_for_nothing() {
    let model = unused_model().await;
    let app = spawn_app(&model).await;

    let (status, body) = app
        .submit(&json!({"prompt": "Use tools.", "tools": broken_tool()}))
        .await;
    assert_invalid_tool(status, &body);

    let (status, body) = app
        .submit(&json!({"prompt": "Use tools.", "sub_tools": broken_tool()}))
        .await;
    assert_invalid_tool(status, &body);

    let (status, body) = app
        .submit_to(
            "/v1/comparisons",
            &json!({"prompt": "Compare.", "tools": broken_tool(),
                    "targets": [{"provider": "openai"}, {"provider": "openai", "model": "other"}]}),
        )
        .await;
    assert_invalid_tool(status, &body);

    let (status, session) = app.submit_to("/v1/sessions", &json!({})).await;
    assert_eq!(status, 201, "{session}");
    let session_id = session["id"].as_str().unwrap();
    let (status, body) = app
        .submit_to(
            &format!("/v1/sessions/{session_id}/runs"),
            &json!({"prompt": "Turn.", "tools": broken_tool()}),
        )
        .await;
    assert_invalid_tool(status, &body);
    let (_, session) = app.get(&format!("/v1/sessions/{session_id}")).await;
    assert_eq!(session["turns"], 0, "{session}");

    assert!(model.requests().is_empty(), "a model was called");
    assert_eq!(stored_runs(&app).await, json!([]));
}

#[tokio::test]
async fn a_context_the_repl_cannot_load_is_refused_at_submit_for_nothing() {
    let model = unused_model().await;
    let app = spawn_app(&model).await;
    // serde_json's Value cannot hold 1,000 levels: the body is written by hand.
    let deep = format!(
        "{{\"prompt\": \"Dig.\", \"context\": {}1{}}}",
        "[".repeat(1000),
        "]".repeat(1000)
    );

    let (status, body) = app.post_raw("/v1/runs", &deep, "application/json").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_context", "{body}");

    let huge_int = format!(
        "{{\"prompt\": \"Count.\", \"context\": [{}]}}",
        "9".repeat(5000)
    );
    let (status, body) = app
        .post_raw("/v1/runs", &huge_int, "application/json")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_context", "{body}");

    assert!(model.requests().is_empty(), "a model was called");
    assert_eq!(stored_runs(&app).await, json!([]));
}

#[tokio::test]
async fn a_context_at_the_depth_bound_loads_in_the_repl() {
    let model = FakeModel::start(
        vec![code(
            "x, depth = context, 0\nwhile isinstance(x, list):\n    x, depth = x[0], depth + 1\n\
             answer['content'] = f'{depth} levels, then {x}'\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let deep = format!(
        "{{\"prompt\": \"Dig.\", \"context\": {}1{}}}",
        "[".repeat(400),
        "]".repeat(400)
    );

    let (status, run) = app.post_raw("/v1/runs", &deep, "application/json").await;
    assert_eq!(status, 202, "{run}");
    let run = app.wait_for_end(run["id"].as_str().unwrap()).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "400 levels, then 1");
}

#[tokio::test]
async fn a_failed_run_is_logged_with_its_id_code_and_message() {
    let model = FakeModel::start(
        vec![Reply::Error {
            status: 400,
            message: "this model does not exist".into(),
        }],
        |_| text("unused"),
    )
    .await;
    let dir = tempdir_for_repls();
    let server = common::binary::Server::start(dir.path(), &model, &[]);
    let id = server.submit(&task("Fail.", json!(""))).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let line = loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| l.contains("run failed")) {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure logged: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&id), "{line}");
    assert!(line.contains("code=provider_error"), "{line}");
    assert!(line.contains("this model does not exist"), "{line}");
    assert!(!line.contains(TEST_API_KEY), "{line}");
}
