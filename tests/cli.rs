//! The command-line client end to end: the real binary against a real server.

mod common;

use std::process::Output;

use common::*;
use serde_json::Value;

async fn rlmd(app: &TestApp, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rlmd"));
    command
        .args(args)
        .env("RLMD_URL", &app.address)
        .env_remove("RLMD_API_KEY");
    if let Some(key) = key {
        command.env("RLMD_API_KEY", key);
    }
    command.output().await.unwrap()
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_follow_prints_progress_then_the_answer() {
    let model = FakeModel::start(
        vec![
            code("lines = context.splitlines()\nprint(len(lines))"),
            code("answer['content'] = f'{len(lines)} lines'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("context.txt");
    std::fs::write(&file, "one\ntwo\nthree\n").unwrap();

    let output = rlmd(
        &app,
        None,
        &[
            "submit",
            "How many lines?",
            "--context-file",
            file.to_str().unwrap(),
            "--follow",
        ],
    )
    .await;

    let (stdout, stderr) = (utf8(&output.stdout), utf8(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "3 lines\n", "the answer, last and alone on stdout");
    // Not a terminal: plain progress lines.
    assert!(stderr.contains("iteration 1"), "{stderr}");
    assert!(stderr.contains("iteration 2"), "{stderr}");
    assert!(stderr.contains("code block"), "{stderr}");
    let id = stderr
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("run ")
        .to_string();
    let run = app.run(&id).await;
    assert_eq!(run["status"], "succeeded");
    let context_seen = model.root_requests()[0].last_user_text();
    assert!(
        context_seen.contains("14 characters"),
        "the file was the context ({context_seen})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_exits_non_zero_with_its_error() {
    let refusal = Reply::Error {
        status: 401,
        message: "invalid api key".into(),
    };
    let model = FakeModel::start(vec![refusal], |_| text("unused")).await;
    let app = spawn_app(&model).await;

    let output = rlmd(&app, None, &["submit", "Fail.", "--follow"]).await;

    assert_eq!(output.status.code(), Some(1), "{}", utf8(&output.stderr));
    assert_eq!(utf8(&output.stdout), "", "no answer on stdout");
    let stderr = utf8(&output.stderr);
    assert!(stderr.contains("failed: provider_error"), "{stderr}");
    let id = stderr
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("run ")
        .to_string();
    // `show` prints the run; showing a failed run is not an error.
    let shown = rlmd(&app, None, &["show", &id]).await;
    assert!(shown.status.success());
    let run: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(run["status"], "failed");

    let refused = rlmd(
        &app,
        None,
        &["submit", "x", "--provider", "nope", "--follow"],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        utf8(&refused.stderr).contains("400"),
        "{}",
        utf8(&refused.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_cancel_and_export() {
    let model = FakeModel::start(vec![], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let key = app.create_key("cli-user", Default::default()).await;

    let submitted = rlmd(&app, Some(&key), &["submit", "Wait in the queue."]).await;
    assert!(submitted.status.success(), "{}", utf8(&submitted.stderr));
    let id = utf8(&submitted.stdout).trim().to_string();
    assert_eq!(app.get_as(&key, &format!("/v1/runs/{id}")).await.0, 200);

    let listed = rlmd(&app, Some(&key), &["runs"]).await;
    let table = utf8(&listed.stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains(&id) && table.contains("queued") && table.contains("Wait in the queue."),
        "{table}"
    );
    let as_json = rlmd(&app, Some(&key), &["runs", "--json", "--status", "queued"]).await;
    let page: Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert_eq!(page["runs"][0]["id"], id.as_str());

    let cancelled = rlmd(&app, Some(&key), &["cancel", &id]).await;
    assert!(cancelled.status.success(), "{}", utf8(&cancelled.stderr));
    assert_eq!(utf8(&cancelled.stdout), format!("{id} cancelled\n"));

    let exported = rlmd(&app, Some(&key), &["export", &id]).await;
    let trajectory: Value = serde_json::from_slice(&exported.stdout).unwrap();
    assert_eq!(trajectory["run"]["id"], id.as_str());
    let jsonl = rlmd(&app, Some(&key), &["export", &id, "--format", "rlms"]).await;
    let first: Value = serde_json::from_str(utf8(&jsonl.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "metadata", "the rlms logger's first line");

    // Without the key: the server's 401, and a non-zero exit.
    let refused = rlmd(&app, None, &["show", &id]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        utf8(&refused.stderr).contains("401 unauthorized"),
        "{}",
        utf8(&refused.stderr)
    );
    let bad = rlmd(&app, Some(&key), &["show", "../../etc"]).await;
    assert_eq!(bad.status.code(), Some(1));
}
