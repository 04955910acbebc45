//! Contexts as files: uploaded once (text, JSON or JSON Lines), stored by their SHA-256,
//! named by `context_id` in runs, session turns, comparisons and chat completions, seen
//! only by the key that uploaded them, and read by the REPL from a file it maps.

mod common;

use std::time::Duration;

use common::*;
use rlmd::keys::KeyOptions;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn upload(app: &TestApp, key: Option<&str>, query: &str, body: Vec<u8>) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/contexts{query}")))
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A run whose prompt is the code it runs, on the context `context_id`.
fn code_on(code_text: &str, context_id: &str) -> Value {
    json!({"prompt": code_text, "context_id": context_id, "max_iterations": 1})
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.db().await;
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&db)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_upload_is_stored_once_by_its_hash_and_read_by_code() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app(&model).await;
    // Over a megabyte: the REPL maps it from this node's cache, not from memory.
    let mut text = String::new();
    let mut line = 0;
    while text.len() < 3_000_000 {
        let needle = if line % 1000 == 7 { " needle" } else { "" };
        text.push_str(&format!("ligne {line} — café{needle}\n"));
        line += 1;
    }
    let id = sha256_hex(text.as_bytes());

    let (status, first) = upload(&app, None, "?name=book", text.clone().into_bytes()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["format"], "text");
    assert_eq!(first["bytes"], text.len());
    assert_eq!(first["name"], "book");
    let chars = text.chars().count();
    let expected = format!(
        "a str of {} characters in {} lines",
        group(chars),
        group(line)
    );
    assert_eq!(first["description"], expected.as_str());

    // The same bytes again: the same id, nothing stored twice.
    let (status, again) = upload(&app, None, "", text.clone().into_bytes()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(
        again["name"], "book",
        "an upload without a name keeps the one it had"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM context_blobs").await, 1);
    let chunks = count(&app, "SELECT COUNT(*) FROM context_chunks").await;
    assert_eq!(chunks, text.len().div_ceil(1 << 20) as i64);

    let (status, listed) = app.get("/v1/contexts").await;
    assert_eq!(status, 200);
    assert_eq!(listed["contexts"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["contexts"][0]["id"], id.as_str());
    let (status, shown) = app.get(&format!("/v1/contexts/{id}")).await;
    assert_eq!((status, &shown["bytes"]), (200, &json!(text.len())));

    let run = app
        .submit_ok(&code_on(
            "answer['content'] = f\"{type(context).__name__} {len(context)} {context.count('needle')}\"\nanswer['ready'] = True",
            &id,
        ))
        .await;
    let run = app.wait_for_end(&run).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["context_id"], id.as_str());
    let needles = text.matches("needle").count();
    assert_eq!(run["answer"], format!("str {chars} {needles}"));
    // The model was told what the context is, never shown it.
    let opening = model.root_requests()[0].messages()[1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(opening.contains(&expected), "{opening}");
    assert!(!opening.contains("café"));
}

/// POSTs `chunks` chunks of `size` bytes to /v1/contexts with no announced length; the
/// status line's code.
async fn chunked_upload(app: &TestApp, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/contexts HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n{}\r\n", "y".repeat(size));
        // The server may answer and close before the last chunk.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"))
}

fn group(n: usize) -> String {
    rlmd::contexts::group_digits(n as u64)
}

#[tokio::test]
async fn json_and_json_lines_become_python_values() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app(&model).await;
    let document = json!({"orders": [{"total": 3}, {"total": 4}], "currency": "EUR"});
    let response = app
        .client
        .post(app.url("/v1/contexts"))
        .header("content-type", "application/json")
        .body(document.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let json_context: Value = response.json().await.unwrap();
    assert_eq!(json_context["format"], "json");
    assert!(json_context["description"]
        .as_str()
        .unwrap()
        .starts_with(r#"a dict with 2 keys ("currency", "orders")"#));

    let lines = "{\"total\": 5}\n\n{\"total\": 6}\r\n{\"total\": 7}\n";
    let (status, lines_context) = upload(&app, None, "?format=jsonl", lines.into()).await;
    assert_eq!(status, 201, "{lines_context}");
    assert_eq!(lines_context["format"], "jsonl");

    let sum = "answer['content'] = str(sum(o['total'] for o in (context['orders'] if isinstance(context, dict) else context)))\nanswer['ready'] = True";
    for (context, expected) in [(&json_context, "7"), (&lines_context, "18")] {
        let id = context["id"].as_str().unwrap();
        let run = app.submit_ok(&code_on(sum, id)).await;
        let run = app.wait_for_end(&run).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["answer"], expected);
    }
}

#[tokio::test]
async fn uploads_the_repl_could_not_load_are_refused_and_nothing_is_kept() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app_with(&model, &[("RLM_MAX_CONTEXT_BYTES", "1000")]).await;
    let deep = format!("{}1{}", "[".repeat(401), "]".repeat(401));
    for (query, body, code, says) in [
        (
            "?format=json",
            b"{\"a\": 1".to_vec(),
            "invalid_context",
            "EOF",
        ),
        (
            "?format=json",
            b"42".to_vec(),
            "invalid_context",
            "a string, a list or an object",
        ),
        (
            "?format=json",
            deep.into_bytes(),
            "invalid_context",
            "nested more than 400",
        ),
        (
            "",
            b"caf\xe9 au lait".to_vec(),
            "invalid_context",
            "not UTF-8",
        ),
        (
            "",
            b"caf\xe9".to_vec(),
            "invalid_context",
            "inside a UTF-8 sequence",
        ),
        (
            "?format=jsonl",
            b"{}\n{oops}\n".to_vec(),
            "invalid_context",
            "line 2",
        ),
        (
            "?format=csv",
            b"a,b".to_vec(),
            "invalid_request",
            "text, json or jsonl",
        ),
        (
            "",
            vec![b'x'; 1001],
            "payload_too_large",
            "RLM_MAX_CONTEXT_BYTES",
        ),
    ] {
        let (status, body) = upload(&app, None, query, body).await;
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
        assert!(status == 400 || status == 413, "{status}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    // A body sent in chunks announces no length: it is cut off at the limit as it comes.
    assert_eq!(chunked_upload(&app, 20, 100).await, 413);

    let (_, listed) = app.get("/v1/contexts").await;
    assert_eq!(listed["contexts"], json!([]));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM context_blobs").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM context_chunks").await, 0);

    // A run names an upload that does not exist, or gives two contexts.
    let missing = "0".repeat(64);
    let (status, body) = app.submit(&code_on("print(1)", &missing)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unknown_context"))
    );
    let (status, body) = app
        .submit(&json!({"prompt": "p", "context": "x", "context_id": missing}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not both"));
}

#[tokio::test]
async fn a_context_belongs_to_the_key_that_uploaded_it() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app(&model).await;
    let alice = app.create_key("alice", KeyOptions::default()).await;
    let bob = app.create_key("bob", KeyOptions::default()).await;
    let secret = b"alice's notes: the launch code is 0451".to_vec();
    let (status, uploaded) = upload(&app, Some(&alice), "", secret.clone()).await;
    assert_eq!(status, 201);
    let id = uploaded["id"].as_str().unwrap().to_string();
    let read_it = code_on(
        "answer['content'] = context[-4:]\nanswer['ready'] = True",
        &id,
    );

    // Bob cannot see it, list it, delete it or run on it.
    let path = format!("/v1/contexts/{id}");
    assert_eq!(app.get_as(&bob, &path).await.0, 404);
    assert_eq!(
        app.get_as(&bob, "/v1/contexts").await.1["contexts"],
        json!([])
    );
    let (status, _, _) = app
        .send_as(Some(&bob), reqwest::Method::DELETE, &path, None)
        .await;
    assert_eq!(status, 404);
    let (status, _, body) = app.post_as(&bob, "/v1/runs", &read_it).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unknown_context"))
    );

    // Alice can; and once Bob uploads the same bytes, they are his too (stored once).
    let (status, _, run) = app.post_as(&alice, "/v1/runs", &read_it).await;
    assert_eq!(status, 202);
    assert_eq!(answer_as(&app, &alice, &run).await, "0451");
    assert_eq!(upload(&app, Some(&bob), "", secret).await.0, 201);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM context_blobs").await, 1);

    // Alice deletes hers: Bob keeps his, and the bytes stay for him.
    let (status, _, _) = app
        .send_as(Some(&alice), reqwest::Method::DELETE, &path, None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(app.get_as(&alice, &path).await.0, 404);
    let (status, _, body) = app.post_as(&alice, "/v1/runs", &read_it).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unknown_context"))
    );
    let (status, _, run) = app.post_as(&bob, "/v1/runs", &read_it).await;
    assert_eq!(status, 202);
    assert_eq!(answer_as(&app, &bob, &run).await, "0451");
}

/// The answer of `run` once it ends, read as the holder of `key`.
async fn answer_as(app: &TestApp, key: &str, run: &Value) -> Value {
    let path = format!("/v1/runs/{}", run["id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, run) = app.get_as(key, &path).await;
        assert_eq!(status, 200, "{run}");
        if run["finished_at"].is_string() {
            assert_eq!(run["status"], "succeeded", "{run}");
            return run["answer"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn deleting_frees_the_bytes_no_run_was_given() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app(&model).await;
    let (_, unused) = upload(&app, None, "", b"never used".to_vec()).await;
    let (_, used) = upload(&app, None, "", b"used once".to_vec()).await;
    let used_id = used["id"].as_str().unwrap();
    let run = app
        .submit_ok(&code_on(
            "answer['content'] = context\nanswer['ready'] = True",
            used_id,
        ))
        .await;
    assert_eq!(app.wait_for_end(&run).await["answer"], "used once");

    for context in [&unused, &used] {
        let path = format!("/v1/contexts/{}", context["id"].as_str().unwrap());
        let response = app.client.delete(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 204);
        let response = app.client.delete(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 404);
    }
    // The run's record still refers to the bytes it was given; the others are gone.
    let db = app.db().await;
    let kept: Vec<String> = sqlx::query_scalar("SELECT id FROM context_blobs")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(kept, vec![used_id.to_string()]);
}

#[tokio::test]
async fn an_inline_context_is_stored_the_same_way_once() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app(&model).await;
    let context = json!(["a", "b", "c"]);
    let code_text = "answer['content'] = '-'.join(context)\nanswer['ready'] = True";
    let mut ids = Vec::new();
    for _ in 0..2 {
        let run = app.submit_ok(&task(code_text, context.clone())).await;
        let run = app.wait_for_end(&run).await;
        assert_eq!(run["answer"], "a-b-c", "{run}");
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    let db = app.db().await;
    let given: Vec<Option<String>> = sqlx::query_scalar("SELECT context_id FROM runs ORDER BY id")
        .fetch_all(&db)
        .await
        .unwrap();
    let expected = sha256_hex(context.to_string().as_bytes());
    assert_eq!(given, vec![Some(expected.clone()), Some(expected)]);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM context_blobs").await, 1);
    // Not an upload: it is listed nowhere.
    assert_eq!(app.get("/v1/contexts").await.1["contexts"], json!([]));
}

#[tokio::test]
async fn turns_comparisons_and_chat_completions_take_a_context_id() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app(&model).await;
    let (_, uploaded) = upload(&app, None, "", b"one two three".to_vec()).await;
    let id = uploaded["id"].as_str().unwrap();
    let words = "answer['content'] = str(len(context.split()))\nanswer['ready'] = True";

    let (status, session) = app.submit_to("/v1/sessions", &json!({})).await;
    assert_eq!(status, 201);
    let turn_path = format!("/v1/sessions/{}/runs", session["id"].as_str().unwrap());
    let (status, turn) = app.submit_to(&turn_path, &code_on(words, id)).await;
    assert_eq!(status, 202, "{turn}");
    let turn = app.wait_for_end(turn["id"].as_str().unwrap()).await;
    assert_eq!(turn["answer"], "3", "{turn}");

    let mut comparison = code_on(words, id);
    comparison["targets"] = json!([{"provider": "openai", "model": "m1"},
                                   {"provider": "openai", "model": "m2"}]);
    let (status, created) = app.submit_to("/v1/comparisons", &comparison).await;
    assert_eq!(status, 202, "{created}");
    for run in created["runs"].as_array().unwrap() {
        let run = app.wait_for_end(run["run_id"].as_str().unwrap()).await;
        assert_eq!(run["answer"], "3", "{run}");
    }

    let (status, completion) = app
        .submit_to(
            "/v1/chat/completions",
            &json!({"model": "rlm", "messages": [{"role": "user", "content": words}],
                    "context_id": id}),
        )
        .await;
    assert_eq!(status, 200, "{completion}");
    assert_eq!(completion["choices"][0]["message"]["content"], "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_on_a_context_another_node_took_in() {
    let database = database::fresh_postgres();
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    // The first node only takes requests; the second, with its own empty cache, runs them.
    let front = spawn_node(&model, &[("RLM_WORKERS", "0")], &database).await;
    let worker = spawn_node(&model, &[], &database).await;
    let text = "x".repeat(1_500_000) + "end";
    let (status, uploaded) = upload(&front, None, "", text.into_bytes()).await;
    assert_eq!(status, 201);
    let id = uploaded["id"].as_str().unwrap();

    let run = front
        .submit_ok(&code_on(
            "answer['content'] = str(len(context)) + context[-3:]\nanswer['ready'] = True",
            id,
        ))
        .await;
    let run = worker.wait_for_end(&run).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "1500003end");
}
