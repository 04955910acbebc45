//! Several nodes and resume by replay: the figures of issue 8. The real server (nodes in
//! this process, REPL children included) against a scripted fake model. Prints figures;
//! asserts nothing about time. Needs the PostgreSQL server the tests use.
//!
//!     cargo bench --bench nodes

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_model::SeenRequest;
use common::{code, database, spawn_node, FakeModel, Reply, TestApp};
use serde_json::json;

const DRAIN_RUNS: usize = 1000;
const WORKERS_PER_NODE: &str = "8";

/// Two turns: a block, then the answer.
fn two_turns(request: &SeenRequest, _: usize) -> Reply {
    if request.turn() == 1 {
        code("x = 1 + 1\nprint(x)")
    } else {
        code("answer['content'] = 'done'\nanswer['ready'] = True")
    }
}

/// Runs not ended yet, read from the database.
async fn unfinished(app: &TestApp) -> i64 {
    let pool = app.db().await;
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    count
}

/// Submits `DRAIN_RUNS` two-turn runs across `nodes` nodes on `url` and times until the
/// last one ends.
async fn drain(label: &str, url: &str, nodes: usize) {
    let model = FakeModel::with_script(Duration::from_millis(50), two_turns).await;
    let mut apps = Vec::new();
    for _ in 0..nodes {
        let vars = [("RLM_WORKERS", WORKERS_PER_NODE)];
        apps.push(spawn_node(&model, &vars, url).await);
    }
    let started = Instant::now();
    let body = json!({"prompt": "Drain.", "context": ""});
    for n in 0..DRAIN_RUNS {
        apps[n % nodes].submit_ok(&body).await;
    }
    let submitted = started.elapsed();
    while unfinished(&apps[0]).await > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    println!(
        "drain {DRAIN_RUNS} two-turn runs, 50 ms model | {label:<22} | {:>6.1} s ({:>5.1} runs/s; all submitted after {:.1} s)",
        took.as_secs_f64(),
        DRAIN_RUNS as f64 / took.as_secs_f64(),
        submitted.as_secs_f64()
    );
    for mut app in apps {
        app.stop().await;
    }
}

/// Submit to the first model request, on one PostgreSQL node with an idle worker.
async fn first_request_on_postgres() {
    let model = FakeModel::with_script(Duration::ZERO, two_turns).await;
    let app = spawn_node(&model, &[("RLM_WORKERS", "2")], &database::fresh_postgres()).await;
    let mut firsts = Vec::new();
    for round in 0..41 {
        let before = model.requests().len();
        let started = Instant::now();
        let id = app
            .submit_ok(&json!({"prompt": "First.", "context": ""}))
            .await;
        app.wait_for_end(&id).await;
        let first = model.requests()[before].received_at.duration_since(started);
        if round > 0 {
            firsts.push(first.as_secs_f64() * 1000.0);
        }
    }
    firsts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "submit -> first model request, PostgreSQL | median {:.2} ms, p90 {:.2} ms",
        firsts[firsts.len() / 2],
        firsts[firsts.len() * 9 / 10]
    );
}

/// A run of `turns` turns (each a block with a sub-call) is handed back on shutdown at its
/// last turn and resumed by a new server: how long the replay took.
async fn resume_cost(turns: u32) {
    let hold = Arc::new(AtomicU32::new(1));
    let held = hold.clone();
    let model = FakeModel::with_script(Duration::ZERO, move |request, _| {
        if !request.is_root() {
            return common::text("sub answer");
        }
        let turn = request.turn() as u32;
        let reply = if turn <= turns {
            format!("```repl\nr{turn} = llm_query('q{turn}')\nprint(r{turn}, {turn})\n```")
        } else {
            "```repl\nanswer['content'] = 'done'\nanswer['ready'] = True\n```".into()
        };
        if turn > turns && held.load(Ordering::SeqCst) == 1 {
            Reply::Slow(Duration::from_secs(60), reply)
        } else {
            Reply::Text(reply)
        }
    })
    .await;
    let url = database::fresh_postgres();
    let vars = [("RLM_SHUTDOWN_GRACE_S", "0.2")];
    let mut app = spawn_node(&model, &vars, &url).await;
    let body = json!({"prompt": "Resume.", "context": "", "max_iterations": turns + 5});
    let id = app.submit_ok(&body).await;
    while !model
        .requests()
        .iter()
        .any(|r| r.is_root() && r.turn() as u32 > turns)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.stop().await;
    hold.store(0, Ordering::SeqCst);
    let app = spawn_node(&model, &vars, &url).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let events = app.events(&id, None).await;
    let resumed = events.iter().find(|e| e.event == "run.resumed").unwrap();
    let replay_ms = resumed.data["data"]["replay_ms"].as_f64().unwrap();
    println!(
        "resume by replay, {turns:>2} recorded turns (a block and a sub-call each) | {replay_ms:>6.0} ms, {:.1} ms per turn",
        replay_ms / turns as f64
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        println!(
            "rlmd nodes benchmark ({} cores, {WORKERS_PER_NODE} workers per node)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        first_request_on_postgres().await;
        for turns in [10, 30] {
            resume_cost(turns).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}", dir.path().join("drain.db").display());
        drain("SQLite, 1 node", &sqlite, 1).await;
        for nodes in 1..=3 {
            let label = format!("PostgreSQL, {nodes} node(s)");
            drain(&label, &database::fresh_postgres(), nodes).await;
        }
    });
}
