//! Several rlmd nodes on one PostgreSQL database (whatever the suite's backend: only
//! PostgreSQL serves several nodes): they share the queue, a stream on one node follows a
//! run on another live, a cancel crosses nodes, and a node killed mid-way costs no run.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::binary::Server;
use common::*;
use serde_json::{json, Value};

/// A model whose one reply doubles the number in the context: any node gets it right.
async fn doubling_model(latency: Duration) -> FakeModel {
    FakeModel::with_script(latency, |_, _| {
        code("answer['content'] = str(int(context) * 2)\nanswer['ready'] = True")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_sixty_runs() {
    let database = database::fresh_postgres();
    let mut models = Vec::new();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let model = doubling_model(Duration::from_millis(30)).await;
        nodes.push(spawn_node(&model, &[], &database).await);
        models.push(model);
    }

    let mut runs = Vec::new();
    for n in 0..60 {
        let node = &nodes[n % 3];
        runs.push((
            n,
            node.submit_ok(&task("Double it.", json!(n.to_string())))
                .await,
        ));
    }
    for (n, id) in &runs {
        // Any node answers for any run.
        let run = nodes[(n + 1) % 3].wait_for_end(id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["answer"], (n * 2).to_string());
    }

    let served: Vec<usize> = models.iter().map(|m| m.root_requests().len()).collect();
    assert_eq!(
        served.iter().sum::<usize>(),
        60,
        "one model call per run: {served:?}"
    );
    assert!(
        served.iter().all(|&calls| calls > 0),
        "every node took some of the runs: {served:?}"
    );
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn created_ms(event: &Value) -> i64 {
    let at = humantime::parse_rfc3339(event["created_at"].as_str().unwrap()).unwrap();
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_on_one_node_follows_a_run_on_another_live() {
    let database = database::fresh_postgres();
    let model = FakeModel::with_script(Duration::from_millis(150), |_, turn| match turn {
        0 => code("total = 1\nprint('one')"),
        1 => code("total += 1\nprint('two')"),
        2 => code("total += 1\nprint('three')"),
        _ => code("answer['content'] = str(total)\nanswer['ready'] = True"),
    })
    .await;
    let worker = spawn_node(&model, &[], &database).await;
    let watcher = spawn_node(&model, &[("RLM_WORKERS", "0")], &database).await;

    let id = watcher.submit_ok(&task("Count.", json!(""))).await;
    let response = watcher
        .client
        .get(watcher.url(&format!("/v1/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    let mut response = response;
    let mut body = String::new();
    let mut latencies = Vec::new();
    let mut seen = 0;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), response.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        let arrived = now_ms();
        body.push_str(std::str::from_utf8(&chunk).unwrap());
        let events = parse_sse(&body);
        for event in &events[seen..] {
            // The first event was stored by the watcher itself, on submit.
            if event.id > 1 {
                latencies.push(arrived - created_ms(&event.data));
            }
        }
        seen = events.len();
    }

    let events = parse_sse(&body);
    assert_gap_free(&events, "run.succeeded");
    assert_eq!(worker.run(&id).await["answer"], "3");
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    println!(
        "events from another node: {} ms median, {:?} ms all",
        median, latencies
    );
    // Polling alone would show them about half a second late on average.
    assert!(
        median < 250,
        "events arrive as they are stored: {latencies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_on_one_node_stops_the_run_on_another() {
    let database = database::fresh_postgres();
    let model = FakeModel::start(vec![code("import time\ntime.sleep(60)")], |_| text("")).await;
    // A long lease: its heartbeat (which also notices cancels) comes once a second.
    let vars = [("RLM_LEASE_TTL_S", "60")];
    let worker = spawn_node(&model, &vars, &database).await;
    let other = spawn_node(&model, &[("RLM_WORKERS", "0")], &database).await;

    let id = other.submit_ok(&task("Sleep.", json!(""))).await;
    worker.wait_for_status(&id, "running").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let (status, run) = other
        .submit_to(&format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    let took = asked.elapsed();

    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("cancelled")),
        "{run}"
    );
    println!("cancel across nodes took {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(
        processes_in(&worker.scratch) == 0,
        "the REPL on the other node is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_way_costs_no_run() {
    let database = database::fresh_postgres();
    let model = FakeModel::with_script(Duration::from_millis(100), |request, _| {
        match request.turn() {
            1 => code("steps = [int(context)]\nprint(steps)"),
            2 => code("steps.append(steps[-1] * 2)\nprint(steps)"),
            _ => code("answer['content'] = str(sum(steps))\nanswer['ready'] = True"),
        }
    })
    .await;
    let vars = [
        ("DATABASE_URL", database.as_str()),
        ("RLM_LEASE_TTL_S", "2"),
        ("RLM_WORKERS", "4"),
    ];
    let dirs: Vec<_> = (0..3).map(|_| tempdir_for_repls()).collect();
    let mut servers: Vec<Server> = dirs
        .iter()
        .map(|dir| Server::start(dir.path(), &model, &vars))
        .collect();

    let mut runs = Vec::new();
    for n in 0..24 {
        let id = servers[n % 3]
            .submit(&task("Sum.", json!(n.to_string())))
            .await;
        runs.push((n, id));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(servers.remove(0)); // SIGKILL, with runs in flight

    let survivor = &servers[0];
    for (n, id) in &runs {
        let run = survivor.wait_for_end(id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        // n, then 2n: their sum.
        assert_eq!(run["answer"], (n * 3).to_string(), "{run}");
        let events = parse_sse(&survivor.text(&format!("/v1/runs/{id}/events")).await);
        assert_gap_free(&events, "run.succeeded");
    }
}

#[tokio::test]
async fn migrate_prepares_either_database_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("fresh.db").display());
    for url in [sqlite, database::fresh_postgres()] {
        for _ in 0..2 {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rlmd"))
                .arg("migrate")
                .env("DATABASE_URL", &url)
                .output()
                .await
                .unwrap();
            let log = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{url}: {log}");
        }
        let pool = database::pool(&url).await;
        let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(runs, 0, "{url}: the schema is there");
    }
}
