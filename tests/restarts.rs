//! Restarts lose nothing: runs handed back on SIGTERM resume cleanly on the next start (the
//! real binary, on the same database), and scratch directories left by runs that are no
//! longer running are removed at start-up.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::binary::Server;

use common::*;
use serde_json::json;

/// The run's number, from the question in its first message ("Run 3.").
fn run_number(request: &common::fake_model::SeenRequest) -> String {
    let messages = request.messages();
    let first = messages[1]["content"].as_str().unwrap_or_default();
    let at = first.find("Run ").expect("a numbered run");
    first[at + 4..].split('.').next().unwrap().to_string()
}

#[tokio::test]
async fn runs_handed_back_on_sigterm_all_succeed_after_a_restart() {
    // Turn 1 runs a block (so each run has records); turn 2 answers, slowly before the
    // restart (the runs are caught mid-way) and at once after it.
    let slow = Arc::new(AtomicBool::new(true));
    let slow_now = slow.clone();
    let model = FakeModel::with_script(Duration::ZERO, move |request, _| {
        let n = run_number(request);
        if request.turn() == 1 {
            return code(&format!("part = 'answer {n}'\nprint(part)"));
        }
        let reply = "```repl\nanswer['content'] = part\nanswer['ready'] = True\n```".to_string();
        if slow_now.load(Ordering::SeqCst) {
            Reply::Slow(Duration::from_secs(30), reply)
        } else {
            text(reply)
        }
    })
    .await;
    let dir = tempdir_for_repls();
    let server = Server::start(dir.path(), &model, &[("RLM_SHUTDOWN_GRACE_S", "1")]);
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(server.submit(&task(&format!("Run {n}."), json!(""))).await);
    }
    // Every run has run its block and waits on its second model call.
    let deadline = Instant::now() + Duration::from_secs(30);
    while model.requests().iter().filter(|r| r.turn() == 2).count() < ids.len() {
        assert!(Instant::now() < deadline, "the runs never got mid-way");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let log = server.terminate();
    assert!(log.contains("handing running jobs back"), "{log}");

    slow.store(false, Ordering::SeqCst);
    let server = Server::start(dir.path(), &model, &[("RLM_SHUTDOWN_GRACE_S", "1")]);
    for (n, id) in ids.iter().enumerate() {
        let run = server.wait_for_end(id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["answer"], format!("answer {}", n + 1));
        assert_eq!(run["attempts"], 1, "a shutdown does not use up a try");
        // The trajectory is the successful try's alone: two turns, one block each.
        let trajectory = server.get(&format!("/v1/runs/{id}/trajectory")).await;
        let iterations = trajectory["iterations"].as_array().unwrap();
        assert_eq!(iterations.len(), 2, "{trajectory}");
        assert_eq!(iterations[0]["code_blocks"].as_array().unwrap().len(), 1);
    }
}

async fn sql(app: &TestApp, statement: &str, id: &str) {
    let pool = app.db().await;
    let updated = sqlx::query(statement)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 1, "{statement}");
    pool.close().await;
}

#[tokio::test]
async fn start_up_removes_the_scratch_of_runs_that_are_no_longer_running() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let ended = app.submit_ok(&task("Ended.", json!(""))).await;
    sql(
        &app,
        "UPDATE runs SET status = 'failed' WHERE id = $1",
        &ended,
    )
    .await;
    let handed_back = app.submit_ok(&task("Queued again.", json!(""))).await;
    let elsewhere = app
        .submit_ok(&task("Held by another node.", json!("")))
        .await;
    sql(
        &app,
        "UPDATE runs SET status = 'running', lease_owner = 'other-node', \
         lease_expires_at = 99999999999999, attempts = 1 WHERE id = $1",
        &elsewhere,
    )
    .await;
    let (_, open) = app.submit_to("/v1/sessions", &json!({})).await;
    let open = open["id"].as_str().unwrap().to_string();
    let (_, closed) = app.submit_to("/v1/sessions", &json!({})).await;
    let closed = closed["id"].as_str().unwrap().to_string();
    app.client
        .delete(app.url(&format!("/v1/sessions/{closed}")))
        .send()
        .await
        .unwrap();
    let unknown = uuid_like();
    let names = [
        ended.clone(),
        handed_back.clone(),
        elsewhere.clone(),
        unknown.clone(),
        format!("session-{open}"),
        format!("session-{closed}"),
        "operator-notes".to_string(),
    ];
    for name in &names {
        let work = app.scratch.join(name).join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("left.txt"), "from an earlier process").unwrap();
    }

    let app = app.restart(&model, &[("RLM_WORKERS", "0")]).await;

    let left: Vec<bool> = names.iter().map(|n| app.scratch.join(n).exists()).collect();
    assert_eq!(
        left,
        [false, false, true, false, true, false, true],
        "ended, handed back, held elsewhere, unknown, open session, closed session, other"
    );
}

/// A run id no database here has seen.
fn uuid_like() -> String {
    "01890000-0000-7000-8000-000000000000".to_string()
}
