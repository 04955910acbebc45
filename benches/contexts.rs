//! What a large context costs: the real `rlmd serve` binary, a text context uploaded with
//! `POST /v1/contexts`, then a run on it by `context_id` whose first block searches it.
//! Figures per size: the upload's time and throughput; from the run's submit, the first
//! model call and the moment the REPL holds the context (its first block starts); the
//! search in code; the server's resident memory before, after the upload and after the
//! run (current and peak), and the REPL's peak. Prints figures; asserts nothing about time.
//!
//!     cargo bench --bench contexts [-- MEGABYTES...]     (default: 100 1024)

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::binary::Server;
use common::{code, FakeModel};
use serde_json::{json, Value};

/// The first block: when it started (the REPL holds the context by then), how long the
/// search took, what it found, and the REPL's peak memory.
const SEARCH: &str = "import time, resource
started = time.time()
found = context.count('needle')
searched = time.time() - started
print(f'{started:.6f} {searched:.6f} {found} {len(context)} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}')";

/// (current, peak) resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `megabytes` of text lines, one in a thousand with a needle in it.
fn document(megabytes: usize) -> (Vec<u8>, usize) {
    let target = megabytes << 20;
    let mut text = Vec::with_capacity(target + 100);
    let mut needles = 0;
    let mut line = 0usize;
    while text.len() < target {
        let needle = if line % 1000 == 0 {
            needles += 1;
            " needle"
        } else {
            ""
        };
        text.extend_from_slice(
            format!("{line:>9} the quick brown fox jumps over the lazy dog{needle}\n").as_bytes(),
        );
        line += 1;
    }
    (text, needles)
}

async fn measure(megabytes: usize) {
    let first_call: Arc<Mutex<Option<Instant>>> = Arc::default();
    let seen = first_call.clone();
    let model = FakeModel::with_script(Duration::ZERO, move |request, _| {
        if request.turn() == 1 {
            seen.lock().unwrap().get_or_insert_with(Instant::now);
            code(SEARCH)
        } else {
            code("answer['content'] = 'done'\nanswer['ready'] = True")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &model,
        &[
            ("RLM_WORKERS", "2"),
            ("RUST_LOG", "warn,rlmd::startup=info"),
        ],
    );
    let pid = server.pid();
    let (text, needles) = document(megabytes);
    let bytes = text.len();
    let client = reqwest::Client::new();
    let (rss_start, _) = rss_mib(pid);

    let started = Instant::now();
    let response = client
        .post(format!("{}/v1/contexts", server.base))
        .body(text)
        .send()
        .await
        .unwrap();
    let upload = started.elapsed();
    assert_eq!(response.status(), 201);
    let uploaded: Value = response.json().await.unwrap();
    let (rss_uploaded, hwm_uploaded) = rss_mib(pid);

    let submitted_at = unix_now();
    let submitted = Instant::now();
    let response = client
        .post(format!("{}/v1/runs", server.base))
        .json(&json!({"prompt": "Count the needles.", "context_id": uploaded["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted = submitted.elapsed();
    let run: Value = response.json().await.unwrap();
    let id = run["id"].as_str().unwrap();
    let run = loop {
        let run = server.get(&format!("/v1/runs/{id}")).await;
        if run["finished_at"].is_string() {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    let (rss_end, hwm_end) = rss_mib(pid);
    let trajectory = server.get(&format!("/v1/runs/{id}/trajectory")).await;
    let printed = trajectory["iterations"][0]["code_blocks"][0]["stdout"]
        .as_str()
        .unwrap()
        .to_string();
    let fields: Vec<&str> = printed.split_whitespace().collect();
    let block_started: f64 = fields[0].parse().unwrap();
    let searched: f64 = fields[1].parse().unwrap();
    assert_eq!(fields[2].parse::<usize>().unwrap(), needles, "{printed}");
    assert_eq!(fields[3].parse::<usize>().unwrap(), bytes, "{printed}");
    let repl_peak_mib = fields[4].parse::<f64>().unwrap() / 1024.0;
    let first_call = first_call.lock().unwrap().unwrap() - submitted;

    println!(
        "{megabytes:>5} MiB text | upload {:>6.2} s ({:>5.0} MB/s) | run: 202 after {:>4.0} ms, \
         first model call {:>4.0} ms, REPL holds it {:>5.0} ms, search in code {:>4.0} ms | \
         server RSS {:.0} MiB at start, {:.0} after upload (peak {:.0}), {:.0} after run (peak {:.0}) | REPL peak {:.0} MiB",
        upload.as_secs_f64(),
        bytes as f64 / 1e6 / upload.as_secs_f64(),
        accepted.as_secs_f64() * 1000.0,
        first_call.as_secs_f64() * 1000.0,
        (block_started - submitted_at) * 1000.0,
        searched * 1000.0,
        rss_start,
        rss_uploaded,
        hwm_uploaded,
        rss_end,
        hwm_end,
        repl_peak_mib,
    );
    server.terminate();
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1024]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "rlmd contexts benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    runtime.block_on(async {
        for megabytes in sizes {
            measure(megabytes).await;
        }
    });
}
