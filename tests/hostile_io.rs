//! Hostile code against what the server reads and stores: the file system outside the
//! REPL's scratch directory, its disk budget, the pipe to the server and the sizes of what
//! crosses it, and the sandbox under file-descriptor pressure.

mod common;

use common::*;
use serde_json::{json, Value};

/// Runs `blocks` (one per turn) with `vars`; returns the app, the run and its trajectory.
async fn run_blocks(
    vars: &[(&str, &str)],
    blocks: Vec<Reply>,
    body: Value,
) -> (TestApp, Value, Value) {
    let model = FakeModel::start(blocks, |_| text("unused")).await;
    let app = spawn_app_with(&model, vars).await;
    let id = app.submit_ok(&body).await;
    let run = app.wait_for_end(&id).await;
    let trajectory = app.trajectory(&id).await;
    (app, run, trajectory)
}

fn block(trajectory: &Value, iteration: usize) -> &Value {
    &trajectory["iterations"][iteration]["code_blocks"][0]
}

const RECOVER: &str = "answer['content'] = 'recovered'\nanswer['ready'] = True";

#[tokio::test]
async fn model_code_writes_and_re_modes_nothing_outside_its_scratch_directory() {
    let (_app, run, _) = run_blocks(
        &[],
        vec![code(
            r#"import os
results = []
def attempt(label, action):
    try:
        action()
        results.append(label + ' ok')
    except OSError as e:
        results.append(label + ' ' + type(e).__name__)
attempt('shm', lambda: open('/dev/shm/rlmd-escape', 'w').write('x'))
attempt('tmp', lambda: open('/tmp/rlmd-escape', 'w').write('x'))
attempt('chmod', lambda: os.chmod('/etc/hostname', 0o777))
attempt('utime', lambda: os.utime('/etc/hostname'))
open('notes.txt', 'w').write('x')
attempt('xattr', lambda: os.setxattr('notes.txt', 'user.x', b'1'))
attempt('kmsg', lambda: open('/dev/kmsg', 'rb'))
attempt('devnull', lambda: open('/dev/null', 'w').write('x'))
answer['content'] = ', '.join(results)
answer['ready'] = True"#,
        )],
        task("Escape.", json!("")),
    )
    .await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["answer"],
        "shm PermissionError, tmp PermissionError, chmod PermissionError, utime PermissionError, xattr PermissionError, kmsg PermissionError, devnull ok"
    );
    assert!(!std::path::Path::new("/dev/shm/rlmd-escape").exists());
    assert!(!std::path::Path::new("/tmp/rlmd-escape").exists());
}

#[tokio::test]
async fn the_disk_cap_holds_for_all_of_a_repls_files_together() {
    let (_app, run, trajectory) = run_blocks(
        &[("RLM_REPL_DISK_MB", "32")],
        vec![
            code(
                "import time\nfor i in range(8):\n    open(f'part{i}', 'wb').write(b'x' * (8 << 20))\ntime.sleep(5)",
            ),
            code(RECOVER),
        ],
        task("Fill the disk.", json!("")),
    )
    .await;

    assert_eq!(run["answer"], "recovered", "{run}");
    let error = block(&trajectory, 0)["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("its scratch directory grew past 32 MiB (RLM_REPL_DISK_MB)"),
        "{error}"
    );
}

#[tokio::test]
async fn the_file_count_cap_holds() {
    let (_app, run, trajectory) = run_blocks(
        &[("RLM_REPL_MAX_FILES", "100")],
        vec![
            code(
                "import time\nfor i in range(500):\n    open(f'f{i}', 'w').close()\ntime.sleep(5)",
            ),
            code(RECOVER),
        ],
        task("Many files.", json!("")),
    )
    .await;

    assert_eq!(run["answer"], "recovered", "{run}");
    let error = block(&trajectory, 0)["error"].as_str().unwrap_or_default();
    assert!(error.contains("RLM_REPL_MAX_FILES"), "{error}");
}

#[tokio::test]
async fn a_frame_announced_larger_than_the_limit_is_refused_before_it_is_read() {
    // fd 5 is the REPL's end of the pipe to the server (3 is its descriptor channel).
    let (app, run, trajectory) = run_blocks(
        &[],
        vec![
            code("import os, time\nos.write(5, (0xFFFFFFFF).to_bytes(4, 'big'))\ntime.sleep(5)"),
            code(RECOVER),
        ],
        task("Forge.", json!("")),
    )
    .await;

    assert_eq!(run["answer"], "recovered", "{run}");
    let error = block(&trajectory, 0)["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("a message of 4294967295 bytes, over the limit of 16777216"),
        "{error}"
    );
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn output_forged_on_the_pipe_is_still_cut_to_the_runs_limit() {
    let forge = r#"import json, os
payload = json.dumps({"type": "exec_done", "stdout": "A" * 1000000, "stderr": "E" * 1000000,
                      "error": "X" * 1000000, "answer": None, "draft": None}).encode()
os.write(5, len(payload).to_bytes(4, 'big') + payload)"#;
    let (_app, run, trajectory) = run_blocks(
        &[],
        vec![code(forge), text("FINAL(done)")],
        json!({"prompt": "Flood.", "limits": {"output_chars": 1000}}),
    )
    .await;

    assert_eq!(run["answer"], "done", "{run}");
    let stored = block(&trajectory, 0);
    let marker = "\n... [output truncated: 999000 more characters not shown]";
    assert_eq!(stored["stdout"], format!("{}{marker}", "A".repeat(1000)));
    assert_eq!(stored["stderr"], format!("{}{marker}", "E".repeat(1000)));
    assert_eq!(stored["error"], format!("{}{marker}", "X".repeat(1000)));
}

#[tokio::test]
async fn an_oversized_prompt_is_never_sent_and_an_oversized_answer_never_submitted() {
    let model = FakeModel::start(
        vec![
            code(
                "try:\n    llm_query('x' * 5000)\nexcept RuntimeError as e:\n    print(e)\nanswer['content'] = 'y' * 500\nanswer['ready'] = True",
            ),
            code("answer['content'] = 'short'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app_with(
        &model,
        &[
            ("RLM_MAX_PROMPT_CHARS", "1000"),
            ("RLM_MAX_ANSWER_CHARS", "100"),
        ],
    )
    .await;

    let id = app.submit_ok(&task("Oversize.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["answer"], "short", "{run}");
    assert!(model.sub_requests().is_empty());
    let trajectory = app.trajectory(&id).await;
    let first = block(&trajectory, 0);
    assert_eq!(
        first["stdout"],
        "prompt 0 has 5000 characters; the limit is 1000 (RLM_MAX_PROMPT_CHARS). Hand the model a smaller slice.\n"
    );
    assert_eq!(
        first["error"],
        "ValueError: the answer has 500 characters; the limit is 100 (RLM_MAX_ANSWER_CHARS). Nothing was submitted."
    );
}

#[tokio::test]
async fn the_sandbox_still_confines_with_hundreds_of_connections_open() {
    let model = FakeModel::with_script(std::time::Duration::ZERO, |request, _| {
        if request.messages()[1].to_string().contains("Wait.") {
            code("import time\ntime.sleep(4)\nanswer['content'] = 'waited'\nanswer['ready'] = True")
        } else {
            code("try:\n    open(context, 'rb').read(10)\n    answer['content'] = 'read'\nexcept OSError as e:\n    answer['content'] = type(e).__name__\nanswer['ready'] = True")
        }
    })
    .await;
    let app = spawn_app_on_sqlite(&model, &[]).await;
    let waiting = app.submit_ok(&task("Wait.", json!(""))).await;
    app.wait_for_status(&waiting, "running").await;

    // 300 idle event streams: the server holds well over 256 open files.
    let mut streams = Vec::new();
    for _ in 0..300 {
        let response = app
            .client
            .get(app.url(&format!("/v1/runs/{waiting}/events")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    let open_files = std::fs::read_dir("/proc/self/fd").unwrap().count();
    assert!(open_files > 600, "{open_files}");
    let db = app.db_path.display().to_string();
    let reader = app.submit_ok(&task("Read.", json!(db))).await;
    let run = app.wait_for_end(&reader).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "PermissionError");
    drop(streams);
    assert_eq!(app.wait_for_end(&waiting).await["answer"], "waited");
}
