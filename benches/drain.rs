//! How fast rlmd drains a queue of cheap runs, and what each costs in CPU: the real
//! `rlmd serve` binary (a child process, with its sandboxed REPLs) against a scripted fake
//! model answering at once. 1,000 two-turn runs (one code block, then the answer) are
//! submitted together; the figures are runs per second from the first submit to the last
//! end, and the CPU time of the server's whole process tree (server, REPLs, anything they
//! started) per run. Prints figures; asserts nothing about time.
//!
//!     cargo bench --bench drain [-- RUNS [WORKERS...]]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::binary::Server;
use common::{code, text, FakeModel, Reply};
use futures_util::stream::{self, StreamExt};
use serde_json::json;

fn two_turns(request: &common::fake_model::SeenRequest, _: usize) -> Reply {
    match (request.is_root(), request.turn()) {
        (false, _) => text("sub"),
        (true, 1) => code("x = 1 + 1\nprint(x)"),
        (true, _) => code("answer['content'] = 'done'\nanswer['ready'] = True"),
    }
}

/// Clock ticks of CPU (user + system) used by `pid`, by its children it reaped, and by
/// every live descendant (a zygote and its REPLs), so no process of the tree is missed.
fn tree_cpu_ticks(pid: u32) -> u64 {
    let mut stats: Vec<(u32, u32, u64)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the command (which may hold spaces) in parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid: u32 = fields[1].parse().unwrap_or(0);
        let ticks: u64 = fields[11..15]
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        stats.push((child, ppid, ticks));
    }
    let mut tree = vec![pid];
    let mut total = 0;
    while let Some(parent) = tree.pop() {
        for (child, ppid, ticks) in &stats {
            if *child == parent {
                total += ticks;
            }
            if *ppid == parent {
                tree.push(*child);
            }
        }
    }
    total
}

/// Clock ticks of CPU used by `pid` itself (all its threads), without its children.
fn own_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11..13]
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum()
}

/// CPU (user + system) this benchmark's own process has used: the fake model and the
/// client, which share the machine's cores with the server.
fn own_process_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf with a constant argument.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

async fn count(server: &Server, status: &str) -> usize {
    let page = server
        .get(&format!("/v1/runs?status={status}&limit=100"))
        .await;
    page["runs"].as_array().map_or(0, Vec::len)
}

/// Whether any run is queued or running. Asked every 10 ms while the queue drains, so it
/// asks for one run of each: the server's CPU for the question must not count as the runs'.
async fn any_left(server: &Server) -> bool {
    for status in ["queued", "running"] {
        let page = server
            .get(&format!("/v1/runs?status={status}&limit=1"))
            .await;
        if page["runs"].as_array().is_some_and(|runs| !runs.is_empty()) {
            return true;
        }
    }
    false
}

async fn drain(model: &FakeModel, runs: usize, workers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let workers_var = workers.to_string();
    let server = Server::start(
        dir.path(),
        model,
        &[
            ("RLM_WORKERS", &workers_var),
            ("RUST_LOG", "warn,rlmd::startup=info"),
        ],
    );
    let client = reqwest::Client::new();
    let submit = |n: usize| {
        let client = client.clone();
        let url = format!("{}/v1/runs", server.base);
        async move {
            let response = client
                .post(url)
                .json(&json!({"prompt": format!("two turns {n}"), "context": "bench"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
        }
    };
    // Warm up: the page cache, the pool, the first REPLs.
    for n in 0..8 {
        submit(n).await;
    }
    while any_left(&server).await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let pid = server.pid();
    let cpu_before = tree_cpu_ticks(pid);
    let server_before = own_cpu_ticks(pid);
    let bench_before = own_process_cpu();
    let started = Instant::now();
    stream::iter(0..runs)
        .map(submit)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let submitted = started.elapsed();
    loop {
        if !any_left(&server).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = started.elapsed();
    let cpu = (tree_cpu_ticks(pid) - cpu_before) as f64 / ticks_per_second();
    let server_cpu = (own_cpu_ticks(pid) - server_before) as f64 / ticks_per_second();
    let bench_cpu = (own_process_cpu() - bench_before).as_secs_f64();
    let failed = count(&server, "failed").await;
    let last = server.get("/v1/runs?limit=1").await;
    let last = &last["runs"][0];
    assert_eq!(
        (last["status"].as_str(), last["iterations"].as_i64()),
        (Some("succeeded"), Some(2)),
        "{last}"
    );
    println!(
        "{runs} two-turn runs, {workers:>2} workers | {:>6.1} runs/s (submitted in {:.2} s, drained in {:.2} s) | CPU per run {:>5.2} ms (server tree; the server itself {:.2}, zygote and REPLs {:.2}; fake model and client {:.2}) | failed {failed}",
        runs as f64 / wall.as_secs_f64(),
        submitted.as_secs_f64(),
        wall.as_secs_f64(),
        cpu * 1000.0 / runs as f64,
        server_cpu * 1000.0 / runs as f64,
        (cpu - server_cpu) * 1000.0 / runs as f64,
        bench_cpu * 1000.0 / runs as f64,
    );
    server.terminate();
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs = args.first().copied().unwrap_or(1000);
    let workers = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![4, 16]
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let model = FakeModel::with_script(Duration::ZERO, two_turns).await;
        println!(
            "rlmd drain benchmark ({} cores, model latency 0 ms)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        for workers in workers {
            drain(&model, runs, workers).await;
        }
    });
}
