//! Hostile code against the processes around it: the server, other runs' REPLs, the
//! kernel's namespaces, the process table. Each block tries what model-written code could,
//! and the test checks what contained it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Runs one block that sets `answer` and returns the run once it ended.
async fn answer_of(vars: &[(&str, &str)], block: &str) -> (TestApp, serde_json::Value) {
    let model = FakeModel::start(vec![code(block)], |_| text("unused")).await;
    let app = spawn_app_with(&model, vars).await;
    let id = app.submit_ok(&task("Try it.", json!(""))).await;
    let run = app.wait_for_end(&id).await;
    (app, run)
}

#[tokio::test]
async fn model_code_can_neither_signal_nor_relimit_the_server() {
    let (app, run) = answer_of(
        &[],
        r#"import os, signal, resource
results = []
for label, action in [
    ('kill', lambda: os.kill(os.getppid(), signal.SIGKILL)),
    ('stop', lambda: os.kill(os.getppid(), signal.SIGSTOP)),
    ('prlimit', lambda: resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (1, 1))),
    ('init', lambda: os.kill(1, signal.SIGTERM)),
]:
    try:
        action()
        results.append(label + ' ok')
    except OSError as e:
        results.append(label + ' ' + type(e).__name__)
answer['content'] = ', '.join(results)
answer['ready'] = True"#,
    )
    .await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["answer"],
        "kill PermissionError, stop PermissionError, prlimit PermissionError, init PermissionError"
    );
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn model_code_cannot_touch_another_runs_repl() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        if request.messages()[1].to_string().contains("Wait.") {
            code("import time\ntime.sleep(3)\nanswer['content'] = 'intact'\nanswer['ready'] = True")
        } else if request.turn() == 1 {
            // Every process it can see but its own belongs to someone else.
            code(
                r#"import os, signal
me = os.getpid()
outcomes = set()
for entry in os.listdir('/proc'):
    if entry.isdigit() and int(entry) != me:
        try:
            os.kill(int(entry), signal.SIGKILL)
            outcomes.add('killed')
        except PermissionError:
            outcomes.add('refused')
        except ProcessLookupError:
            pass
print(sorted(outcomes))"#,
            )
        } else if request.turn() == 2 {
            code("import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('alive')")
        } else {
            text("FINAL(done)")
        }
    })
    .await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "2")]).await;

    let patient = app.submit_ok(&task("Wait.", json!(""))).await;
    app.wait_for_status(&patient, "running").await;
    let attacker = app
        .submit_ok(&json!({"prompt": "Attack.", "max_iterations": 3}))
        .await;
    let attacked = app.wait_for_end(&attacker).await;
    let run = app.wait_for_end(&patient).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "intact");
    assert_eq!(attacked["status"], "succeeded", "{attacked}");
    let trajectory = app.trajectory(&attacker).await;
    assert_eq!(
        trajectory["iterations"][0]["code_blocks"][0]["stdout"],
        "['refused']\n"
    );
    // kill(-1) reaches every process the caller may signal but itself: here, none.
    let second = &trajectory["iterations"][1]["code_blocks"][0];
    assert_eq!(
        (&second["stdout"], &second["error"]),
        (&json!("alive\n"), &json!(null))
    );
}

#[tokio::test]
async fn model_code_opens_no_socket_and_no_namespace() {
    let (_app, run) = answer_of(
        &[],
        r#"import ctypes, errno, socket
results = []
for family in (socket.AF_UNIX, socket.AF_NETLINK, 40):  # 40: AF_VSOCK
    try:
        socket.socket(family, socket.SOCK_DGRAM)
        results.append('open')
    except OSError as e:
        results.append(type(e).__name__)
libc = ctypes.CDLL(None, use_errno=True)
for flag in (0x10000000, 0x40000000, 0x20000000):  # CLONE_NEWUSER, NEWNET, NEWPID
    ok = libc.unshare(flag) == 0
    results.append('unshare ' + ('ok' if ok else errno.errorcode[ctypes.get_errno()]))
a, b = socket.socketpair()
a.send(b'x')
results.append('pair ' + b.recv(1).decode())
answer['content'] = ' '.join(results)
answer['ready'] = True"#,
    )
    .await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["answer"],
        "PermissionError PermissionError PermissionError unshare EPERM unshare EPERM unshare EPERM pair x"
    );
}

#[tokio::test]
async fn a_daemon_started_by_model_code_does_not_outlive_its_run() {
    let (_app, run) = answer_of(
        &[],
        r#"import os, time
child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
os.waitpid(child, 0)
time.sleep(0.3)
uid, me = os.getuid(), os.getpid()
daemons = []
for entry in os.listdir('/proc'):
    if entry.isdigit() and int(entry) != me:
        try:
            status = open(f'/proc/{entry}/status').read()
        except OSError:
            continue
        if f'\nUid:\t{uid}\t' in status:
            daemons.append(entry)
answer['content'] = ','.join(daemons)
answer['ready'] = True"#,
    )
    .await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let daemons: Vec<String> = run["answer"]
        .as_str()
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    assert_eq!(daemons.len(), 1, "one daemon left its session: {run}");
    // Gone, or a zombie waiting for init to reap it (it can do nothing any more).
    let alive = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|status| !status.contains("State:\tZ"))
    };
    let gone_by = Instant::now() + Duration::from_secs(5);
    while alive(&daemons[0]) {
        assert!(Instant::now() < gone_by, "the daemon outlived its run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_process_cap() {
    let (_app, run) = answer_of(
        &[("RLM_REPL_MAX_PROCESSES", "20")],
        r#"import os, time
forked, error = 0, None
try:
    for _ in range(500):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        forked += 1
except OSError as e:
    error = type(e).__name__
answer['content'] = f'{forked} {error}'
answer['ready'] = True"#,
    )
    .await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let answer = run["answer"].as_str().unwrap();
    let (forked, error) = answer.split_once(' ').unwrap();
    let forked: u32 = forked.parse().unwrap();
    assert!((10..20).contains(&forked), "{answer}");
    assert_eq!(error, "BlockingIOError");
}

#[tokio::test]
async fn the_memory_cap_holds_for_all_of_a_repls_processes_together() {
    let model = FakeModel::start(
        vec![
            code(
                r#"import os, time
for _ in range(4):
    if os.fork() == 0:
        hoard = b'x' * (100 * 1024 * 1024)
        time.sleep(30)
        os._exit(0)
time.sleep(30)"#,
            ),
            code("answer['content'] = 'recovered'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app_with(&model, &[("RLM_REPL_MEMORY_MB", "256")]).await;

    let started = Instant::now();
    let id = app.submit_ok(&task("Hoard.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "recovered");
    assert!(started.elapsed() < Duration::from_secs(20));
    let trajectory = app.trajectory(&id).await;
    let error = trajectory["iterations"][0]["code_blocks"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("its processes used more than 256 MiB of memory together"),
        "{error}"
    );
}

#[tokio::test]
async fn a_recursion_bomb_is_held_to_the_trees_repl_cap() {
    let bomb = "answer['content'] = '|'.join(rlm_query_batched(['a', 'b', 'c', 'd']))\nanswer['ready'] = True";
    // Every RLM of the tree (root or child) answers with the bomb; at the depth cap
    // rlm_query is a plain sub-call, which gets a leaf.
    let model = FakeModel::with_script(Duration::ZERO, move |request, _| {
        if request.is_root() {
            code(bomb)
        } else {
            text("leaf")
        }
    })
    .await;
    let app = spawn_app_with(&model, &[("RLM_MAX_REPLS_PER_TREE", "3")]).await;

    let id = app
        .submit_ok(&json!({"prompt": "Explode.", "max_depth": 3, "max_iterations": 2}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run["answer"]
            .as_str()
            .unwrap()
            .contains("live REPLs (RLM_MAX_REPLS_PER_TREE)"),
        "{run}"
    );
    // A child refused a REPL failed before it asked any model anything.
    let trajectory = app.trajectory(&id).await;
    let mut refused = 0;
    let mut pending = vec![trajectory];
    while let Some(node) = pending.pop() {
        for child in node["children"].as_array().cloned().unwrap_or_default() {
            if child["run"]["error"]["code"] == "repl_error" {
                refused += 1;
                assert_eq!(child["iterations"], json!([]), "{child}");
            }
            pending.push(child);
        }
    }
    assert!(refused >= 2, "{refused} children refused");
}
