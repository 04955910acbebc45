//! Resume by replay: a run taken over after its server died (SIGKILL) or handed it back
//! (SIGTERM) goes on from where it was. Its REPL is rebuilt by running its recorded code
//! again, with model calls and child runs answered from the record: the fake model sees
//! each call once, except the calls in flight when the server stopped.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::binary::Server;
use common::fake_model::SeenRequest;
use common::*;
use serde_json::json;

const RUNS: usize = 4;

/// Which run of the tree a root-model request belongs to: `Some(n)` for the root of
/// "Run n.", `None` for a child (its first message holds no question).
fn root_of(request: &SeenRequest) -> Option<usize> {
    let messages = request.messages();
    let first = messages.get(1)?["content"].as_str().unwrap_or_default();
    let at = first.find("Run ")?;
    first[at + 4..].split('.').next()?.parse().ok()
}

/// Roots whose answer needs the REPL's state from every turn, with a sub-call and two
/// children: a quick one that answers in its first turn, and one whose second turn blocks
/// while `gate` is set (that is where the server is stopped).
async fn model_with_gate(gate: Arc<AtomicBool>) -> FakeModel {
    FakeModel::with_script(Duration::from_millis(20), move |request, _| {
        if !request.is_root() {
            // "double n"
            let n: i64 = request.last_user_text()[7..].parse().unwrap();
            return text((n * 2).to_string());
        }
        match (root_of(request), request.turn()) {
            (Some(n), 1) => code(&format!(
                "import random\nx = {n}\ny = llm_query('double ' + str(x))\n\
                 noise = random.random()\nprint(x, y, noise)"
            )),
            (Some(_), 2) => code(
                "quick = rlm_query('quick ' + str(x))\nkid = rlm_query('child of ' + str(x))\n\
                 print(quick, kid)",
            ),
            (Some(_), _) => {
                code("answer['content'] = f'{x}:{y}:{kid}:{quick}'\nanswer['ready'] = True")
            }
            (None, 1) => code(
                "c = len(context)\nprint(c)\nif context.startswith('quick'):\n    \
                 answer['content'] = 'q'\n    answer['ready'] = True",
            ),
            (None, _) => {
                let reply = "```repl\nanswer['content'] = str(c * 2)\nanswer['ready'] = True\n```";
                if gate.load(Ordering::SeqCst) {
                    Reply::Slow(Duration::from_secs(60), reply.into())
                } else {
                    text(reply)
                }
            }
        }
    })
    .await
}

/// Runs `RUNS` trees, stops the server with `stop` while every child waits on its second
/// model call, starts it again on the same database, and checks that every run ends right
/// with no model call made twice but those in flight.
async fn resumes_after(stop: impl FnOnce(Server)) {
    let gate = Arc::new(AtomicBool::new(true));
    let model = model_with_gate(gate.clone()).await;
    let dir = tempdir_for_repls();
    let vars = [("RLM_LEASE_TTL_S", "2"), ("RLM_SHUTDOWN_GRACE_S", "1")];
    let server = Server::start(dir.path(), &model, &vars);
    let mut ids = Vec::new();
    for n in 1..=RUNS {
        let body = json!({"prompt": format!("Run {n}."), "context": "", "max_depth": 2});
        ids.push(server.submit(&body).await);
    }
    let children_waiting = || {
        model
            .requests()
            .iter()
            .filter(|r| r.is_root() && root_of(r).is_none() && r.turn() == 2)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while children_waiting() < RUNS {
        assert!(Instant::now() < deadline, "the runs never got mid-way");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the records of what came before reach the database.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(server);
    let before = model.requests().len();
    gate.store(false, Ordering::SeqCst);

    let server = Server::start(dir.path(), &model, &vars);
    for (index, id) in ids.iter().enumerate() {
        let n = index + 1;
        let run = server.wait_for_end(id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        // x, the sub-call's double, the child's answer (twice the length of its context),
        // the quick child's.
        assert_eq!(run["answer"], format!("{n}:{}:20:q", n * 2), "{run}");
        let trajectory = server.get(&format!("/v1/runs/{id}/trajectory")).await;
        let turns = trajectory["iterations"].as_array().unwrap();
        assert_eq!(turns.len(), 3, "each turn recorded once: {trajectory}");
        let events = parse_sse(&server.text(&format!("/v1/runs/{id}/events")).await);
        assert_gap_free(&events, "run.succeeded");
        let resumed: Vec<_> = events.iter().filter(|e| e.event == "run.resumed").collect();
        assert_eq!(
            resumed.len(),
            2,
            "the root and its running child resumed: {events:?}"
        );
    }

    // Every call once, but the children's second turn, in flight at the stop.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for request in model.requests() {
        let key = match (request.is_root(), root_of(&request)) {
            (false, _) => format!("sub {}", request.last_user_text()),
            (true, Some(n)) => format!("run {n} turn {}", request.turn()),
            (true, None) => format!("child turn {}", request.turn()),
        };
        *seen.entry(key).or_default() += 1;
    }
    for n in 1..=RUNS {
        for turn in 1..=3 {
            assert_eq!(seen[&format!("run {n} turn {turn}")], 1, "{seen:?}");
        }
        assert_eq!(seen[&format!("sub double {n}")], 1, "{seen:?}");
    }
    // The quick child had ended: it is not run again.
    assert_eq!(seen["child turn 1"], 2 * RUNS, "{seen:?}");
    assert_eq!(
        seen["child turn 2"],
        2 * RUNS,
        "only the calls in flight again: {seen:?}"
    );
    assert_eq!(model.requests().len(), before + 2 * RUNS);

    // The roots' code read random numbers: their replay printed something else, and the
    // model was told so in one line. The children's replay printed what it did before.
    for request in model.requests() {
        let told = request
            .last_user_text()
            .contains("the REPL was restored after a restart");
        match (root_of(&request), request.turn()) {
            (Some(_), 3) => assert!(told, "the root is told"),
            _ => assert!(!told || !request.is_root(), "only then"),
        }
    }
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_killed_mid_way_resume_without_paying_twice() {
    resumes_after(drop).await; // SIGKILL
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_handed_back_on_sigterm_resume_without_paying_twice() {
    resumes_after(|server| {
        let log = server.terminate();
        assert!(log.contains("handing running jobs back"), "{log}");
    })
    .await;
}
