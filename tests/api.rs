//! The HTTP API as a client sees it: errors, listing, cancelling, streaming, restarts.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;

    let cases: Vec<(&str, &str, u16, &str, &str)> = vec![
        (
            "malformed JSON",
            r#"{"prompt": "hi""#,
            400,
            "invalid_json",
            "not valid JSON",
        ),
        ("empty body", "", 400, "invalid_json", "empty"),
        (
            "missing prompt",
            r#"{"context": "x"}"#,
            400,
            "invalid_request",
            "missing field `prompt`",
        ),
        (
            "prompt of the wrong type",
            r#"{"prompt": 5}"#,
            400,
            "invalid_request",
            "invalid type: integer `5`, expected a string",
        ),
        (
            "empty prompt",
            r#"{"prompt": "  "}"#,
            400,
            "invalid_request",
            "`prompt` must not be empty",
        ),
        (
            "context of the wrong type",
            r#"{"prompt": "p", "context": 12}"#,
            400,
            "invalid_request",
            "`context` must be a string, a list or an object",
        ),
        (
            "unknown provider",
            r#"{"prompt": "p", "provider": "skynet"}"#,
            400,
            "unknown_provider",
            "unknown provider \"skynet\"",
        ),
        (
            "provider without a key",
            r#"{"prompt": "p", "provider": "anthropic"}"#,
            400,
            "provider_not_configured",
            "not configured",
        ),
        (
            "max_iterations of the wrong type",
            r#"{"prompt": "p", "max_iterations": "ten"}"#,
            400,
            "invalid_request",
            "invalid type: string \"ten\"",
        ),
        (
            "zero iterations",
            r#"{"prompt": "p", "max_iterations": 0}"#,
            400,
            "invalid_request",
            "`max_iterations` must be between 1 and 1000",
        ),
        (
            "negative timeout",
            r#"{"prompt": "p", "limits": {"block_timeout_s": -1}}"#,
            400,
            "invalid_request",
            "block_timeout_s",
        ),
        (
            "unknown limit",
            r#"{"prompt": "p", "limits": {"timeout_forever": 1}}"#,
            400,
            "invalid_request",
            "unknown field `timeout_forever`",
        ),
        (
            "unknown field",
            r#"{"prompt": "p", "max_iteration": 3}"#,
            400,
            "invalid_request",
            "unknown field `max_iteration`",
        ),
        (
            "metadata not an object",
            r#"{"prompt": "p", "metadata": [1]}"#,
            400,
            "invalid_request",
            "invalid type: sequence, expected a map",
        ),
    ];
    for (what, body, status, code, message) in cases {
        let (got_status, got) = app.post_raw("/v1/runs", body, "application/json").await;
        assert_eq!(got_status, status, "{what}: {got}");
        assert_eq!(error_code(&got), code, "{what}: {got}");
        let text = got["error"]["message"].as_str().unwrap();
        assert!(
            text.contains(message),
            "{what}: {text:?} should mention {message:?}"
        );
    }
    let (_, list) = app.get("/v1/runs").await;
    assert_eq!(list["runs"], json!([]), "a rejected request stored a run");
}

#[tokio::test]
async fn unknown_runs_and_endpoints_are_404_in_json() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let missing = "0190b5c4-0000-7000-8000-000000000000";

    for path in [
        format!("/v1/runs/{missing}"),
        format!("/v1/runs/{missing}/trajectory"),
        format!("/v1/runs/{missing}/events"),
        "/v1/runs/not-a-uuid".to_string(),
        "/v1/nothing-here".to_string(),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found", "{path}");
    }
    let (status, body) = app
        .post_raw(
            &format!("/v1/runs/{missing}/cancel"),
            "",
            "application/json",
        )
        .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}

#[tokio::test]
async fn a_submitted_run_is_queued_and_readable_at_once() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;

    let response = app
        .client
        .post(app.url("/v1/runs"))
        .json(&json!({"prompt": "Count.", "context": [1, 2, 3], "metadata": {"team": "a"}, "max_iterations": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let run: Value = response.json().await.unwrap();
    let id = run["id"].as_str().unwrap();

    assert_eq!(location, format!("/v1/runs/{id}"));
    assert_eq!(run["status"], "queued");
    assert_eq!(run["prompt"], "Count.");
    assert_eq!(run["model"], "gpt-4o-mini");
    assert_eq!(run["provider"], "openai");
    assert_eq!(run["max_iterations"], 7);
    assert_eq!(run["metadata"], json!({"team": "a"}));
    assert_eq!(
        run["limits"],
        json!({
            "block_timeout_s": 60.0, "output_chars": 20000, "max_concurrent_subcalls": 64,
            "timeout_s": 3600.0, "max_tokens": null, "max_cost_usd": null, "max_llm_calls": null,
            "max_errors": null
        })
    );
    assert_eq!(run["answer"], Value::Null);
    assert_eq!(run["started_at"], Value::Null);
    assert_eq!(app.run(id).await, run);
}

#[tokio::test]
async fn runs_are_listed_newest_first_in_pages() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.submit_ok(&json!({"prompt": format!("task {i}")})).await);
    }
    ids.reverse();

    let (status, first) = app.get("/v1/runs?limit=2").await;
    assert_eq!(status, 200);
    let page_ids = |page: &Value| -> Vec<String> {
        page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(page_ids(&first), ids[0..2]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.get(&format!("/v1/runs?limit=2&cursor={cursor}")).await;
    assert_eq!(page_ids(&second), ids[2..4]);
    let cursor = second["next_cursor"].as_str().unwrap();
    let (_, third) = app.get(&format!("/v1/runs?limit=2&cursor={cursor}")).await;
    assert_eq!(page_ids(&third), ids[4..5]);
    assert_eq!(third["next_cursor"], Value::Null);

    let (_, queued) = app.get("/v1/runs?status=queued&limit=100").await;
    assert_eq!(page_ids(&queued), ids);
    let (_, done) = app.get("/v1/runs?status=succeeded").await;
    assert_eq!(done["runs"], json!([]));
    let (_, skipped) = app.get("/v1/runs?limit=2&offset=3").await;
    assert_eq!(page_ids(&skipped), ids[3..5]);
    let (status, _) = app.get("/v1/runs?unknown_param=1").await;
    assert_eq!(status, 200, "unknown query parameters are ignored");
    for bad in [
        "/v1/runs?limit=0",
        "/v1/runs?limit=abc",
        "/v1/runs?status=done",
        "/v1/runs?cursor=zzz",
        "/v1/runs?offset=-1",
    ] {
        let (status, body) = app.get(bad).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "invalid_request"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_queued_run_is_cancelled_at_once_and_a_finished_one_cannot_be() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let id = app.submit_ok(&json!({"prompt": "never runs"})).await;

    let (status, run) = app
        .post_raw(&format!("/v1/runs/{id}/cancel"), "", "application/json")
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "cancelled");
    assert!(run["finished_at"].is_string());

    let (status, body) = app
        .post_raw(&format!("/v1/runs/{id}/cancel"), "", "application/json")
        .await;
    assert_eq!((status, error_code(&body)), (409, "run_finished"));
    let events = app.events(&id, None).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["run.queued", "run.cancelled"]);
}

#[tokio::test]
async fn the_event_stream_replays_gap_free_from_last_event_id_and_follows_live() {
    let model = FakeModel::with_script(
        Duration::from_millis(100),
        |_, root_index| match root_index {
            0 => code("print('one')"),
            1 => code("r = llm_query_batched(['a', 'b'])\nprint(r)"),
            _ => code("answer['content'] = 'done'\nanswer['ready'] = True"),
        },
    )
    .await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&task("Go.", json!(""))).await;

    // Opened while the run is in flight: replays what happened, then follows to the end.
    let live = app.events(&id, None).await;
    let run = app.run(&id).await;
    assert_eq!(run["status"], "succeeded");

    let ids: Vec<i64> = live.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=live.len() as i64).collect::<Vec<_>>(),
        "sequence has a gap"
    );
    assert_eq!(live.first().unwrap().event, "run.queued");
    assert_eq!(live[1].event, "run.started");
    assert_eq!(live.last().unwrap().event, "run.succeeded");
    assert_eq!(live.last().unwrap().data["data"]["answer"], "done");
    let kinds: Vec<&str> = live.iter().map(|e| e.event.as_str()).collect();
    for kind in [
        "iteration.started",
        "llm.called",
        "code.executed",
        "subcalls.started",
        "subcalls.finished",
        "iteration.finished",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    for event in &live {
        assert_eq!(event.data["run_id"], id.as_str());
        assert_eq!(event.data["seq"], event.id);
        assert_eq!(event.data["type"], event.event);
    }

    // Resuming after event k gives exactly the events after k.
    for k in [0, 1, 5, live.len() as i64 - 1] {
        let resumed = app.events(&id, Some(k)).await;
        let expected: Vec<(i64, String)> = live
            .iter()
            .filter(|e| e.id > k)
            .map(|e| (e.id, e.event.clone()))
            .collect();
        let got: Vec<(i64, String)> = resumed.iter().map(|e| (e.id, e.event.clone())).collect();
        assert_eq!(got, expected, "resume after {k}");
    }
}

#[tokio::test]
async fn queued_runs_survive_a_restart() {
    let model = FakeModel::start(
        vec![code(
            "answer['content'] = 'ran after restart'\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let id = app.submit_ok(&task("Later.", json!(""))).await;
    assert_eq!(app.run(&id).await["status"], "queued");

    let app = app.restart(&model, &[("RLM_WORKERS", "1")]).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["answer"], "ran after restart");
    assert_eq!(run["attempts"], 1);
}

#[tokio::test]
async fn the_health_check_answers() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    assert_eq!(app.get("/healthz").await, (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_a_large_one_under_it_is_accepted() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(
        &model,
        &[("RLM_WORKERS", "0"), ("RLM_MAX_BODY_BYTES", "1000000")],
    )
    .await;

    let too_big = json!({"prompt": "p", "context": "x".repeat(1_000_001)}).to_string();
    let (status, body) = app.post_raw("/v1/runs", &too_big, "application/json").await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));

    let fits = json!({"prompt": "p", "context": "x".repeat(900_000)});
    let (status, _) = app.submit(&fits).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_still_read() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    // What `curl -d '{...}'` sends when no header is given.
    let (status, run) = app
        .post_raw(
            "/v1/runs",
            r#"{"prompt": "hello"}"#,
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["status"], "queued");
}

#[tokio::test]
async fn many_runs_at_once_all_finish_with_their_own_answers() {
    let model = FakeModel::with_script(Duration::from_millis(5), |request, _| {
        if !request.is_root() {
            return text(format!("sub {}", request.last_user_text()));
        }
        let question = request.messages()[1]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let after = question.split("task number ").nth(1).unwrap_or_default();
        let n: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        if request.turn() == 1 {
            code(&format!(
                "r = llm_query_batched(['{n}a', '{n}b', '{n}c'])\nprint(r)"
            ))
        } else {
            code("answer['content'] = '|'.join(r)\nanswer['ready'] = True")
        }
    })
    .await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "4")]).await;

    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push((
            i,
            app.submit_ok(&json!({"prompt": format!("task number {i}")}))
                .await,
        ));
    }
    for (i, id) in ids {
        let run = app.wait_for_end(&id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["answer"], format!("sub {i}a|sub {i}b|sub {i}c"));
        let trajectory = app.trajectory(&id).await;
        assert_eq!(run["usage"]["llm_calls"], 5, "{}", trajectory["llm_calls"]);
        // Runs recording at once share transactions (SQLite): each still has its own
        // record, and its own events numbered 1, 2, 3, ... in the order they happened.
        let iterations = trajectory["iterations"].as_array().unwrap();
        let blocks: Vec<usize> = iterations
            .iter()
            .map(|it| it["code_blocks"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(blocks, [1, 1], "{trajectory}");
        let events = app.events(&id, None).await;
        let numbers: Vec<i64> = events.iter().map(|e| e.id).collect();
        assert_eq!(numbers, (1..=events.len() as i64).collect::<Vec<_>>());
        assert!(events.iter().all(|e| e.data["run_id"] == id), "{id}");
        let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            (kinds.first(), kinds.last()),
            (Some(&"run.queued"), Some(&"run.succeeded"))
        );
    }
}

#[tokio::test]
async fn a_record_that_cannot_be_written_does_not_sink_the_others_written_with_it() {
    use rlmd::domain::RunId;
    use rlmd::store::Write;

    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let id = app.submit_ok(&json!({"prompt": "kept"})).await;
    let run: RunId = id.parse().unwrap();
    let store = app.open_store().await;
    let event = |kind: &str| {
        vec![Write::Event {
            kind: kind.into(),
            data: json!({"note": kind}),
        }]
    };

    // Sent together, the two records are written in one transaction on SQLite; the one
    // whose run does not exist fails that transaction, and each is written again alone.
    let missing = RunId::new();
    let (kept, lost) = tokio::join!(
        store.record(run, run, event("test.kept")),
        store.record(missing, missing, event("test.lost")),
    );

    let kept = kept.unwrap();
    assert_eq!(
        kept.iter()
            .map(|e| (e.seq, e.kind.as_str()))
            .collect::<Vec<_>>(),
        [(2, "test.kept")]
    );
    assert!(lost.is_err());
    // Ended, so that its stream closes after the replay.
    let (status, _) = app
        .post_raw(&format!("/v1/runs/{id}/cancel"), "", "application/json")
        .await;
    assert_eq!(status, 200);
    let kinds: Vec<String> = app
        .events(&id, None)
        .await
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(kinds, ["run.queued", "test.kept", "run.cancelled"]);
    store.close().await;
}
