//! Sessions: turns share one REPL namespace; contexts and conversations pile up as
//! context_N and history_N; a session is freed on DELETE or when idle too long.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn open_session(app: &TestApp, body: Value) -> String {
    let response = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session: Value = response.json().await.unwrap();
    assert_eq!(session["status"], "open");
    session["id"].as_str().unwrap().to_string()
}

async fn turn(app: &TestApp, session: &str, code_text: &str, context: &str) -> String {
    let (status, run) = app
        .post_raw(
            &format!("/v1/sessions/{session}/runs"),
            &json!({"prompt": code_text, "context": context}).to_string(),
            "application/json",
        )
        .await;
    assert_eq!(status, 202, "{run}");
    run["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_session_keeps_its_variables_contexts_and_histories_across_turns() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app(&model).await;
    let session = open_session(&app, json!({})).await;

    let first = turn(
        &app,
        &session,
        "x = 1\nanswer['content'] = str(x)\nanswer['ready'] = True",
        "a",
    )
    .await;
    assert_eq!(app.wait_for_end(&first).await["answer"], "1");
    let second = turn(
        &app,
        &session,
        "x += 1\nanswer['content'] = str(x)\nanswer['ready'] = True",
        "b",
    )
    .await;
    assert_eq!(app.wait_for_end(&second).await["answer"], "2");
    let third = turn(
        &app,
        &session,
        "x += 1\nanswer['content'] = f\"{x} {context_0} {context_1} {context_2} {context} {len(history_0)} {history_1[0]['role']}\"\nanswer['ready'] = True",
        "c",
    )
    .await;
    let run = app.wait_for_end(&third).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    // history_0: the task message, the model's reply and nothing more (it answered at once).
    assert_eq!(run["answer"], "3 a b c c 2 user");
    assert_eq!(
        (run["session_id"].as_str(), run["turn"].as_i64()),
        (Some(session.as_str()), Some(2))
    );
    let (_, view) = app.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(view["turns"], 3);
    let turns: Vec<_> = view["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["turn"].clone(), r["id"].clone()))
        .collect();
    assert_eq!(
        turns,
        [
            (json!(0), json!(first)),
            (json!(1), json!(second)),
            (json!(2), json!(third))
        ]
    );
}

#[tokio::test]
async fn turns_submitted_at_once_run_in_order() {
    let model = FakeModel::with_script(Duration::from_millis(20), prompt_is_code()).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "3")]).await;
    let session = open_session(&app, json!({})).await;
    let step = "seen = globals().get('seen', []) + [context]\nanswer['content'] = ','.join(seen)\nanswer['ready'] = True";

    let ids = [
        turn(&app, &session, step, "a").await,
        turn(&app, &session, step, "b").await,
        turn(&app, &session, step, "c").await,
    ];
    let answers: Vec<Value> =
        futures_util::future::join_all(ids.iter().map(|id| app.wait_for_end(id)))
            .await
            .into_iter()
            .map(|run| run["answer"].clone())
            .collect();

    assert_eq!(answers, [json!("a"), json!("a,b"), json!("a,b,c")]);
}

#[tokio::test]
async fn deleting_a_session_frees_its_repl_and_refuses_more_turns() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app(&model).await;
    let session = open_session(&app, json!({"metadata": {"user": "u1"}})).await;
    let id = turn(
        &app,
        &session,
        "y = 5\nanswer['content'] = 'ok'\nanswer['ready'] = True",
        "a",
    )
    .await;
    app.wait_for_end(&id).await;
    assert_eq!(
        processes_in(&app.scratch),
        1,
        "the session's REPL lives between turns"
    );

    let response = app
        .client
        .delete(app.url(&format!("/v1/sessions/{session}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let closed: Value = response.json().await.unwrap();

    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["metadata"], json!({"user": "u1"}));
    assert_eq!(processes_in(&app.scratch), 0);
    let (status, error) = app
        .post_raw(
            &format!("/v1/sessions/{session}/runs"),
            r#"{"prompt": "more"}"#,
            "application/json",
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (409, Some("session_closed"))
    );
    let (status, _) = app
        .get("/v1/sessions/0190b5c4-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_idle_session_expires_and_its_repl_is_freed() {
    let model = FakeModel::with_script(Duration::ZERO, prompt_is_code()).await;
    let app = spawn_app_with(&model, &[("RLM_POLL_INTERVAL_S", "0.1")]).await;
    let session = open_session(&app, json!({"idle_timeout_s": 0.5})).await;
    let id = turn(
        &app,
        &session,
        "answer['content'] = 'ok'\nanswer['ready'] = True",
        "a",
    )
    .await;
    app.wait_for_end(&id).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, view) = app.get(&format!("/v1/sessions/{session}")).await;
        if view["status"] == "expired" {
            assert_eq!(view["expires_at"], Value::Null);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session never expired: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(processes_in(&app.scratch), 0);
    let (status, _) = app
        .post_raw(
            &format!("/v1/sessions/{session}/runs"),
            r#"{"prompt": "late"}"#,
            "application/json",
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn after_a_restart_a_session_gets_its_variables_back_by_replay() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        if !request.is_root() {
            return text(format!("sub:{}", request.last_user_text()));
        }
        prompt_is_code()(request, 0)
    })
    .await;
    let app = spawn_app(&model).await;
    let session = open_session(&app, json!({})).await;
    let first = turn(
        &app,
        &session,
        "x = 1\nnote = llm_query('remember ' + context)\nanswer['content'] = 'set'\nanswer['ready'] = True",
        "a",
    )
    .await;
    app.wait_for_end(&first).await;
    let second = turn(
        &app,
        &session,
        "x += 1\nanswer['content'] = str(x)\nanswer['ready'] = True",
        "b",
    )
    .await;
    assert_eq!(app.wait_for_end(&second).await["answer"], "2");
    let calls_before = model.requests().len();

    let app = app.restart(&model, &[]).await;
    let third = turn(
        &app,
        &session,
        "x += 1\nanswer['content'] = f\"{x} {note} {context_0} {context_1} {context} {len(history_0)} {len(history_1)}\"\nanswer['ready'] = True",
        "c",
    )
    .await;
    let run = app.wait_for_end(&third).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    // x went 1, 2 in the turns before the restart: their code ran again, the sub-call's
    // reply came from the record.
    assert_eq!(run["answer"], "3 sub:remember a a b c 2 2");
    assert_eq!(
        model.requests().len(),
        calls_before + 1,
        "only the new turn's call is made"
    );
    let events = app.events(&third, None).await;
    let restored: Vec<_> = events
        .iter()
        .filter(|e| e.event == "session.restored")
        .collect();
    assert_eq!(restored.len(), 1, "{events:?}");
    assert_eq!(restored[0].data["data"]["turns"], 2);
}
