//! A run whose REPL cannot start fails fast: code `repl_error`, the reason, and no model
//! call past the one already in flight; `/readyz` says why. A sandbox that lacks a required
//! confinement refuses to start REPLs unless the operator chose `RLM_SANDBOX=best_effort`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A model that would go on writing code forever: every paid call shows in its log.
async fn busy_model() -> FakeModel {
    FakeModel::start(vec![code("print('working')")], |_| text("unused")).await
}

/// The run's end, asserting it failed with `repl_error`; the error message.
async fn failed_with_repl_error(app: &TestApp, id: &str) -> (Value, String) {
    let run = app.wait_for_end(id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "repl_error", "{run}");
    let message = run["error"]["message"].as_str().unwrap().to_string();
    (run, message)
}

#[tokio::test]
async fn a_repl_program_that_does_not_exist_fails_the_run_before_any_model_call() {
    let model = busy_model().await;
    let app = spawn_app_with(&model, &[("RLM_REPL_PROGRAM", "/nonexistent/rlmd")]).await;

    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["error"]["code"], "unavailable", "{ready}");

    let id = app.submit_ok(&task("Compute.", json!("data"))).await;
    let (run, message) = failed_with_repl_error(&app, &id).await;

    assert_eq!(
        message,
        "could not start the REPL: /nonexistent/rlmd: No such file or directory (os error 2)"
    );
    assert_eq!(run["answer"], Value::Null);
    assert_eq!(run["iterations"], 0);
    assert_eq!(model.requests().len(), 0);
}

#[tokio::test]
async fn a_repl_that_cannot_start_costs_at_most_the_call_in_flight() {
    let model = busy_model().await;
    // A REPL forked from the zygote already maps more than 20 MiB: the limit cannot hold,
    // so the REPL refuses to start (and says why) rather than run with it.
    let app = spawn_app_with(&model, &[("RLM_REPL_MEMORY_MB", "20")]).await;

    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");

    let id = app
        .submit_ok(&json!({"prompt": "Compute.", "context": "data", "max_iterations": 5}))
        .await;
    let (run, message) = failed_with_repl_error(&app, &id).await;

    assert!(
        message.starts_with(
            "could not start the REPL: sandbox step failed: resource limits: the REPL already maps"
        ) && message.ends_with("at or above its memory limit of 20 MiB (RLM_REPL_MEMORY_MB)"),
        "{message}"
    );
    // The model's reply is code, not an answer: it is not passed off as a partial one.
    assert_eq!(run["answer"], Value::Null);
    assert_eq!(run["iterations"], 1);
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn a_strict_sandbox_without_separate_users_refuses_repls_and_says_why() {
    let model = busy_model().await;
    let app = spawn_app_with(&model, &[("RLM_REPL_UID_BASE", "0")]).await;

    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let why = ready["error"]["message"].as_str().unwrap();
    assert!(
        why.contains("separate_users: RLM_REPL_UID_BASE and RLM_REPL_UIDS must be above 0"),
        "{why}"
    );
    assert!(why.contains("RLM_SANDBOX=best_effort"), "{why}");

    let id = app.submit_ok(&task("Compute.", json!("data"))).await;
    let (run, message) = failed_with_repl_error(&app, &id).await;

    assert!(message.contains("separate_users"), "{message}");
    assert!(message.contains("RLM_SANDBOX=best_effort"), "{message}");
    assert_eq!(run["answer"], Value::Null);
    assert_eq!(model.requests().len(), 0);
}

#[tokio::test]
async fn best_effort_runs_without_separate_users_and_says_so() {
    let model = FakeModel::start(
        vec![code("answer['content'] = 'ran'\nanswer['ready'] = True")],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app_with(
        &model,
        &[("RLM_REPL_UID_BASE", "0"), ("RLM_SANDBOX", "best_effort")],
    )
    .await;

    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["sandbox"]["mode"], "best_effort");
    assert_eq!(ready["sandbox"]["separate_users"], false);
    assert_eq!(
        ready["sandbox"]["missing"],
        json!(["separate_users: RLM_REPL_UID_BASE and RLM_REPL_UIDS must be above 0"])
    );

    let id = app.submit_ok(&task("Compute.", json!("data"))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "ran");
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn a_repl_that_dies_and_cannot_restart_fails_the_run_without_another_call() {
    // The REPL program is reached through a link that the test removes once the run's
    // REPL is up, and then the zygote it was forked from dies (and the REPL with it): the
    // restart then finds nothing to start a zygote from.
    let links = tempdir_for_repls();
    let program = links.path().join("rlmd");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rlmd"), &program).unwrap();
    let model = FakeModel::start(
        vec![code(
            "import time\nopen('block-running', 'w').close()\ntime.sleep(30)",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app_with(&model, &[("RLM_REPL_PROGRAM", program.to_str().unwrap())]).await;

    let id = app.submit_ok(&task("Crash.", json!(""))).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    // The block runs (so the REPL is up and loaded) when its file appears.
    let running = || {
        std::fs::read_dir(&app.scratch)
            .into_iter()
            .flatten()
            .flatten()
            .any(|run| run.path().join("work/block-running").exists())
    };
    while !running() {
        assert!(Instant::now() < deadline, "the block never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_file(&program).unwrap();
    let zygote = zygote_started_as(&program).expect("the REPL zygote runs");
    // SAFETY: kill with the pid of a process this test's server started.
    unsafe { libc::kill(zygote, libc::SIGKILL) };
    let (run, message) = failed_with_repl_error(&app, &id).await;

    assert_eq!(
        message,
        format!(
            "could not start the REPL: {}: No such file or directory (os error 2)",
            program.display()
        )
    );
    assert_eq!(run["answer"], Value::Null);
    assert_eq!(run["iterations"], 1);
    assert_eq!(model.requests().len(), 1);
    let trajectory = app.trajectory(&id).await;
    let error = trajectory["iterations"][0]["code_blocks"][0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{trajectory}"));
    assert!(
        error.starts_with(
            "ReplError: the REPL process died (the REPL zygote ended, and the REPL with it"
        ),
        "{error}"
    );
}

/// The zygote (a child of this test process) started from `program`.
fn zygote_started_as(program: &std::path::Path) -> Option<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .to_string();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let started_as = format!("{}\0zygote\0", program.display());
            (ppid == me && cmdline == started_as.as_bytes()).then_some(pid)
        })
}
