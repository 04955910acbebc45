//! Jobs outlive workers: an expired lease is taken over, a run out of tries fails, and a
//! shutdown hands running work back to the queue.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Makes a queued run look as if a worker had claimed it and then died.
async fn abandon(app: &TestApp, id: &str, attempts: i64) {
    let pool = app.db().await;
    let updated = sqlx::query(
        "UPDATE runs SET status = 'running', lease_owner = 'dead-worker', lease_expires_at = 1, \
         attempts = $1, started_at = 1 WHERE id = $2 AND status = 'queued'",
    )
    .bind(attempts)
    .bind(id)
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(updated, 1);
    pool.close().await;
}

#[tokio::test]
async fn a_run_whose_worker_died_is_taken_over_when_its_lease_expires() {
    let model = FakeModel::start(
        vec![code(
            "answer['content'] = 'second try'\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let id = app.submit_ok(&task("Survive.", json!(""))).await;
    abandon(&app, &id, 1).await;

    let app = app.restart(&model, &[("RLM_WORKERS", "1")]).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "second try");
    assert_eq!(run["attempts"], 2);
    let events = app.events(&id, None).await;
    let started: Vec<_> = events.iter().filter(|e| e.event == "run.started").collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].data["data"]["attempt"], 2);
}

#[tokio::test]
async fn a_run_out_of_tries_fails_as_worker_lost() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let id = app.submit_ok(&task("Doomed.", json!(""))).await;
    abandon(&app, &id, 3).await;

    let app = app
        .restart(&model, &[("RLM_WORKERS", "1"), ("RLM_MAX_ATTEMPTS", "3")])
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "worker_lost");
    assert!(
        model.requests().is_empty(),
        "a run out of tries must not be run again"
    );
    assert_eq!(
        app.events(&id, None).await.last().unwrap().event,
        "run.failed"
    );
}

#[tokio::test]
async fn shutdown_hands_a_running_run_back_to_the_queue_and_a_restart_finishes_it() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        if request.last_user_text().contains("Turn 1 of") {
            code("import time\ntime.sleep(30)")
        } else {
            code("answer['content'] = 'finished later'\nanswer['ready'] = True")
        }
    })
    .await;
    let mut app = spawn_app_with(&model, &[("RLM_SHUTDOWN_GRACE_S", "0.2")]).await;
    let id = app.submit_ok(&task("Take your time.", json!(""))).await;
    app.wait_for_status(&id, "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    app.stop().await;
    let app = app.restart(&model, &[("RLM_WORKERS", "0")]).await;
    let run = app.run(&id).await;
    assert_eq!(run["status"], "queued", "{run}");
    assert_eq!(run["attempts"], 0, "a shutdown does not use up a try");

    let model_after = FakeModel::start(
        vec![code(
            "answer['content'] = 'finished later'\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = app.restart(&model_after, &[("RLM_WORKERS", "1")]).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "finished later");
    let kinds: Vec<String> = app
        .events(&id, None)
        .await
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(kinds.contains(&"run.requeued".to_string()), "{kinds:?}");
}
