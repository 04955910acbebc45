//! The REPL is a separate, confined process: runaway code is stopped, crashes stay in the
//! child, and secrets never reach it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test]
async fn an_endless_loop_is_stopped_by_the_block_timeout_and_the_server_keeps_serving() {
    let model = FakeModel::start(
        vec![
            code("x = 41\nwhile True:\n    pass"),
            code("print('x' in globals())\nprint(len(context))"),
            code("answer['content'] = 'recovered'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let started = Instant::now();
    let id = app
        .submit_ok(&json!({"prompt": "Loop.", "context": "abc", "limits": {"block_timeout_s": 1}}))
        .await;
    // While the loop spins, the API still answers.
    let (status, health) = app.get("/healthz").await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "recovered");
    assert!(started.elapsed() < Duration::from_secs(20));
    let trajectory = app.trajectory(&id).await;
    let block = &trajectory["iterations"][0]["code_blocks"][0];
    assert_eq!(block["timed_out"], true);
    assert_eq!(
        block["error"],
        "TimeoutError: the block was stopped after 1.0 s (the per-block limit)."
    );
    // The REPL was reset: the variable is gone, the context is back.
    assert_eq!(
        trajectory["iterations"][1]["code_blocks"][0]["stdout"],
        "False\n3\n"
    );
    assert!(model.root_requests()[1]
        .last_user_text()
        .contains("The REPL was restarted"));
}

#[tokio::test]
async fn a_crashing_child_fails_the_block_not_the_server() {
    let model = FakeModel::start(
        vec![
            code("import ctypes\nctypes.string_at(0)"),
            code("answer['content'] = 'still here'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Crash.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "still here");
    let trajectory = app.trajectory(&id).await;
    let error = trajectory["iterations"][0]["code_blocks"][0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{trajectory}"));
    assert!(
        error.starts_with("ReplError: the REPL process died (killed by signal 11"),
        "{error}"
    );
}

#[tokio::test]
async fn model_code_cannot_read_the_api_key() {
    let model = FakeModel::start(
        vec![code(
            "import os\n\
             print(sorted(os.environ))\n\
             print('OPENAI_API_KEY' in os.environ)\n\
             try:\n    open(f'/proc/{os.getppid()}/environ').read()\n    print('parent environ readable')\n\
             except OSError as e:\n    print(type(e).__name__)\n\
             answer['content'] = 'done'\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Find the key.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let trajectory = app.trajectory(&id).await;
    let stdout = trajectory["iterations"][0]["code_blocks"][0]["stdout"]
        .as_str()
        .unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    // Exactly what the sandbox passes, nothing inherited from the server.
    let allowed = [
        "HOME",
        "LANG",
        "OMP_NUM_THREADS",
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
        "OPENBLAS_NUM_THREADS",
        "PATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "PYTHONNOUSERSITE",
        "TMPDIR",
        "TZ",
    ];
    let names: Vec<String> = lines[0]
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|n| n.trim_matches('\'').to_string())
        .collect();
    assert!(
        names.iter().all(|n| allowed.contains(&n.as_str())),
        "environment: {names:?}"
    );
    assert!(names.contains(&"HOME".to_string()));
    assert_eq!(lines[1], "False");
    assert_eq!(lines[2], "PermissionError");
    assert!(!trajectory.to_string().contains(TEST_API_KEY));
}

#[tokio::test]
async fn each_run_works_in_its_own_scratch_directory_which_is_removed_afterwards() {
    let model = FakeModel::start(
        vec![code(
            "import os\nopen('notes.txt', 'w').write('hi')\nanswer['content'] = os.getcwd()\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Where am I?", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let workdir = app.scratch.join(&id).join("work");
    assert_eq!(run["answer"], workdir.display().to_string());
    assert!(
        !app.scratch.join(&id).exists(),
        "scratch directory left behind"
    );
    assert_eq!(processes_in(&app.scratch), 0, "REPL process left behind");
}

#[tokio::test]
async fn cancelling_a_running_block_kills_its_repl_at_once() {
    let model = FakeModel::start(
        vec![code("import time\nprint('sleeping')\ntime.sleep(60)")],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Sleep.", json!(""))).await;
    app.wait_for_status(&id, "running").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_in(&app.scratch) == 0 {
        assert!(Instant::now() < deadline, "the REPL never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let (status, run) = app
        .post_raw(&format!("/v1/runs/{id}/cancel"), "", "application/json")
        .await;

    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["error"]["code"], "cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(
        processes_in(&app.scratch),
        0,
        "the REPL survived the cancel"
    );
    let events = app.events(&id, None).await;
    assert_eq!(events.last().unwrap().event, "run.cancelled");
}

#[tokio::test]
async fn numpy_and_pandas_are_available_to_model_code() {
    let model = FakeModel::start(
        vec![code(
            "import numpy as np\nimport pandas as pd\n\
             df = pd.DataFrame({'server': ['a', 'b', 'a'], 'cpu': [10, 30, 50]})\n\
             means = df.groupby('server')['cpu'].mean()\n\
             answer['content'] = f\"{np.arange(5).sum()} {means['a']:.1f} {means['b']:.1f}\"\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Use the libraries.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "10 30.0 30.0");
}

#[tokio::test]
async fn model_code_has_no_network() {
    let model = FakeModel::start(
        vec![code(
            "import socket\nresults = []\n\
             for family in (socket.AF_INET, socket.AF_INET6):\n\
             \x20   try:\n\
             \x20       socket.socket(family, socket.SOCK_STREAM)\n\
             \x20       results.append('open')\n\
             \x20   except OSError as e:\n\
             \x20       results.append(type(e).__name__)\n\
             a, b = socket.socketpair()\n\
             results.append('unix ok')\n\
             answer['content'] = ' '.join(results)\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Call home.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "PermissionError PermissionError unix ok");
}

#[tokio::test]
async fn readyz_reports_what_the_sandbox_enforces() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(
        &model,
        &[("RLM_WORKERS", "0"), ("RLM_REPL_MEMORY_MB", "2048")],
    )
    .await;

    let (status, body) = app.get("/readyz").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    let report = &body["sandbox"];
    assert_eq!(report["mode"], "strict");
    assert_eq!(report["seccomp"], true);
    assert_eq!(report["separate_users"], true);
    assert!(report["landlock_abi"].as_i64().unwrap() >= 1, "{report}");
    assert_eq!(report["missing"], json!([]));
    assert_eq!(report["limits"]["memory_mb"], 2048);
    // What a REPL child itself found.
    let sandbox = &report["observed"];
    assert_eq!(sandbox["no_new_privs"], true);
    assert_eq!(sandbox["seccomp"], true);
    assert_eq!(sandbox["network"], "blocked");
    assert_eq!(sandbox["unix_sockets"], "blocked");
    assert_eq!(sandbox["filesystem"], "restricted");
    assert_eq!(sandbox["capabilities_dropped"], true);
    assert_eq!(sandbox["memory_limit_bytes"], 2048u64 * 1024 * 1024);
    assert_eq!(sandbox["open_files_limit"], 256);
    assert_eq!(sandbox["process_limit"], 64);
    assert!(sandbox["uid"].as_u64().unwrap() >= 61_000, "{sandbox}");
    let environment: Vec<&str> = sandbox["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        environment.iter().all(|name| !name.contains("KEY")),
        "{environment:?}"
    );
    assert!(sandbox["python"].as_str().unwrap().starts_with("3.11"));
}

#[tokio::test]
async fn model_code_sees_only_system_files_and_its_own_scratch_directory() {
    let model = FakeModel::start(
        vec![code(
            "import os\nresults = []\n\
             def attempt(label, action):\n\
             \x20   try:\n\
             \x20       action()\n\
             \x20       results.append(label + ' ok')\n\
             \x20   except OSError as e:\n\
             \x20       results.append(label + ' ' + type(e).__name__)\n\
             attempt('database', lambda: open(context['db'], 'rb').read(10))\n\
             attempt('root listing', lambda: os.listdir('/'))\n\
             attempt('tmp write', lambda: open('/tmp/rlmd-escape-test', 'w').write('x'))\n\
             attempt('scratch write', lambda: open('notes.txt', 'w').write('x'))\n\
             attempt('system read', lambda: open('/etc/hostname').read())\n\
             answer['content'] = ', '.join(results)\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app_on_sqlite(&model, &[]).await;

    let db = app.db_path.display().to_string();
    let id = app
        .submit_ok(&task("Look around.", json!({"db": db})))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["answer"],
        "database PermissionError, root listing PermissionError, tmp write PermissionError, scratch write ok, system read ok"
    );
    assert!(!std::path::Path::new("/tmp/rlmd-escape-test").exists());
}

#[tokio::test]
async fn ordinary_python_still_works_inside_the_sandbox() {
    let model = FakeModel::start(
        vec![code(
            r#"import asyncio, os, sqlite3, subprocess, tempfile, threading
from concurrent.futures import ThreadPoolExecutor
results = []
with ThreadPoolExecutor(2) as pool:
    results.append(sum(pool.map(abs, [-1, -2, -3])))
read, write = os.pipe()
if os.fork() == 0:
    os.write(write, b'forked')
    os._exit(0)
os.wait()
results.append(os.read(read, 6).decode())
results.append(subprocess.run(['echo', 'hi'], capture_output=True, text=True).stdout.strip())
with tempfile.NamedTemporaryFile('w+') as f:
    f.write('temp')
    f.flush()
    f.seek(0)
    results.append(f.read())
db = sqlite3.connect('scratch.db')
db.execute('create table t (x)')
db.execute('insert into t values (42)')
results.append(db.execute('select x from t').fetchone()[0])
box = []
worker = threading.Thread(target=lambda: box.append('thread'))
worker.start()
worker.join()
results.extend(box)
async def main():
    await asyncio.sleep(0)
    return 'async'
results.append(asyncio.run(main()))
answer['content'] = ' '.join(map(str, results))
answer['ready'] = True"#,
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Work normally.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(
        run["status"],
        "succeeded",
        "{}",
        app.trajectory(&id).await["iterations"][0]
    );
    let first = &app.trajectory(&id).await["iterations"][0]["code_blocks"][0];
    assert_eq!(run["answer"], "6 forked hi temp 42 thread async", "{first}");
}
