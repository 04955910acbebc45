//! rlmd's throughput benchmark: the real server (in this process, REPL children included)
//! against a scripted fake model with a fixed latency, timed through HTTP from submit to the
//! terminal event. Prints figures; asserts nothing about time.
//!
//!     cargo bench --bench throughput

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::fake_model::SeenRequest;
use common::{code, spawn_app_with, text, FakeModel, Reply, TestApp};
use serde_json::json;

const THIRTY: usize = 30;
const BATCH: usize = 64;

/// The fake model's script for all scenarios; the prompt names the scenario and the turn
/// is read from the conversation, so runs never share state.
fn script(request: &SeenRequest, _: usize) -> Reply {
    if !request.is_root() {
        return text("sub answer");
    }
    let question = request.messages()[1]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let turn = request.turn();
    let done = || code("answer['content'] = 'done'\nanswer['ready'] = True");
    if request.body["model"] == "kid" {
        // One block with one sub-call, then the answer: two turns and a sub-call deep.
        return if turn == 1 {
            code("r = llm_query(context)\nprint(r)")
        } else {
            done()
        };
    }
    if question.contains("bench:tree") {
        return if turn == 1 {
            code("r = rlm_query_batched(['a', 'b', 'c'], model='kid')\nprint(r)")
        } else {
            done()
        };
    }
    if question.contains("bench:two") {
        if turn == 1 {
            code("x = 1 + 1\nprint(x)")
        } else {
            done()
        }
    } else if question.contains("bench:thirty") {
        if turn < THIRTY {
            code(&format!("x = {turn}\nprint(x)"))
        } else {
            done()
        }
    } else {
        code(&format!(
            "r = llm_query_batched([f'q{{i}}' for i in range({BATCH})])\nassert len(r) == {BATCH}\n\
             answer['content'] = 'done'\nanswer['ready'] = True"
        ))
    }
}

struct Sample {
    wall: Duration,
    first_request: Duration,
    requests: Vec<SeenRequest>,
}

/// Submits a run, follows its event stream to the end, and returns what the model saw.
async fn timed_run(app: &TestApp, model: &FakeModel, prompt: &str) -> Sample {
    let before = model.requests().len();
    let started = Instant::now();
    let id = app
        .submit_ok(
            &json!({"prompt": prompt, "context": "bench", "max_iterations": THIRTY + 5,
                           "max_depth": 2, "limits": {"max_concurrent_subcalls": BATCH}}),
        )
        .await;
    let events = app.events(&id, None).await;
    let wall = started.elapsed();
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("run.succeeded"),
        "{prompt}"
    );
    let requests: Vec<SeenRequest> = model.requests().into_iter().skip(before).collect();
    let first_request = requests[0].received_at.duration_since(started);
    Sample {
        wall,
        first_request,
        requests,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn scenario_set(latency_ms: u64, reps: usize) {
    let latency = Duration::from_millis(latency_ms);
    let model = FakeModel::with_script(latency, script).await;
    let app = spawn_app_with(
        &model,
        &[("RLM_WORKERS", "2"), ("RLM_MAX_CONCURRENT_SUBCALLS", "64")],
    )
    .await;
    // Warm up: page cache, connection pool, first Python start.
    timed_run(&app, &model, "bench:two").await;

    let mut walls = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..reps {
        let sample = timed_run(&app, &model, "bench:two").await;
        walls.push(ms(sample.wall));
        firsts.push(ms(sample.first_request));
    }
    println!(
        "latency {latency_ms:>3} ms | 2-call run            | wall median {:>8.1} ms  p90 {:>8.1} ms | submit -> first model request median {:.2} ms, p90 {:.2} ms",
        median(walls.clone()), percentile(walls, 0.9), median(firsts.clone()), percentile(firsts, 0.9)
    );

    let mut walls = Vec::new();
    let mut overheads = Vec::new();
    for _ in 0..reps.div_ceil(4).max(2) {
        let sample = timed_run(&app, &model, "bench:thirty").await;
        walls.push(ms(sample.wall));
        // From the model's answer leaving the fake to the next root request arriving:
        // everything rlmd does in a turn, and nothing of the model's latency.
        let roots: Vec<&SeenRequest> = sample.requests.iter().filter(|r| r.is_root()).collect();
        for pair in roots.windows(2) {
            let answered = pair[0].responded_at.expect("answered");
            overheads.push(ms(pair[1].received_at.duration_since(answered)));
        }
    }
    println!(
        "latency {latency_ms:>3} ms | {THIRTY} iterations         | wall median {:>8.1} ms | per-iteration overhead (besides model latency) median {:.2} ms, p90 {:.2} ms",
        median(walls), median(overheads.clone()), percentile(overheads, 0.9)
    );

    let mut walls = Vec::new();
    let mut inside = Vec::new();
    for _ in 0..reps.div_ceil(4).max(2) {
        let sample = timed_run(&app, &model, "bench:batch").await;
        walls.push(ms(sample.wall));
        let subs: Vec<Instant> = sample
            .requests
            .iter()
            .filter(|r| !r.is_root())
            .map(|r| r.received_at)
            .collect();
        assert_eq!(subs.len(), BATCH);
        // From the first sub-call's arrival to the last one's answer.
        let first = *subs.iter().min().unwrap();
        let answered = sample
            .requests
            .iter()
            .filter_map(|r| if r.is_root() { None } else { r.responded_at })
            .max()
            .unwrap();
        inside.push(ms(answered.duration_since(first)));
    }
    println!(
        "latency {latency_ms:>3} ms | llm_query_batched x{BATCH} | wall median {:>8.1} ms | batch inside the block (first sub-call sent to last answered) median {:.1} ms",
        median(walls), median(inside)
    );

    let mut walls = Vec::new();
    let mut child_starts = Vec::new();
    for _ in 0..reps.div_ceil(4).max(2) {
        let sample = timed_run(&app, &model, "bench:tree").await;
        walls.push(ms(sample.wall));
        // From the root's first reply leaving the model to each child's first request:
        // the root's block starting, rlm_query, the child stored and its first call made.
        let root_answered = sample.requests[0].responded_at.expect("answered");
        let kids = sample
            .requests
            .iter()
            .filter(|r| r.is_root() && r.body["model"] == "kid" && r.turn() == 1);
        child_starts.extend(kids.map(|r| ms(r.received_at.duration_since(root_answered))));
    }
    let critical_path = 5.0 * latency_ms as f64;
    println!(
        "latency {latency_ms:>3} ms | depth-2 tree, 3 children | wall median {:>8.1} ms (model critical path {critical_path:.0} ms) | rlm_query to the child's first model request median {:.2} ms, p90 {:.2} ms",
        median(walls), median(child_starts.clone()), percentile(child_starts, 0.9)
    );
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        println!(
            "rlmd throughput benchmark ({} cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        scenario_set(0, 40).await;
        scenario_set(200, 8).await;
    });
    println!(
        "peak RSS of the benchmark process (server, fake model and client): {:.1} MiB",
        peak_rss_mib()
    );
}
