//! The REPL protocol as rlms has it: the names rlmd provides come back after every block,
//! `context_0` is always there, a session's turn starts with a fresh `answer`, what a block
//! prints reaches followers while it runs, and no printed text can break the pipe.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The stdout of block `block` (from 1) of iteration `iteration` (from 1).
fn stdout_of(trajectory: &Value, iteration: usize, block: usize) -> String {
    trajectory["iterations"][iteration - 1]["code_blocks"][block - 1]["stdout"]
        .as_str()
        .unwrap_or_else(|| panic!("no block {iteration}.{block}: {trajectory}"))
        .to_string()
}

#[tokio::test]
async fn rebinding_a_provided_name_lasts_only_until_the_block_ends() {
    let model = FakeModel::start(
        vec![
            code("context = 'changed'\nllm_query = None\nprint(context)"),
            code("print(context)\nprint(llm_query('Say hi.'))"),
            code("answer['content'] = 'done'\nanswer['ready'] = True"),
        ],
        |_| text("hi from the sub-model"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Rebind.", json!("the original"))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let trajectory = app.trajectory(&id).await;
    // Inside the block the rebinding holds; the next turn has the provided values back.
    assert_eq!(stdout_of(&trajectory, 1, 1), "changed\n");
    assert_eq!(
        stdout_of(&trajectory, 2, 1),
        "the original\nhi from the sub-model\n"
    );
    assert_eq!(model.sub_requests().len(), 1);
}

#[tokio::test]
async fn context_0_is_the_context_in_every_run() {
    let model = FakeModel::start(
        vec![code(
            "answer['content'] = f'{context_0 == context} {context_0 is context} {context_0}'\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Compare.", json!("abc"))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "True True abc");
}

async fn open_session(app: &TestApp) -> String {
    let (status, session) = app.submit_to("/v1/sessions", &json!({})).await;
    assert_eq!(status, 201, "{session}");
    session["id"].as_str().unwrap().to_string()
}

async fn session_turn(app: &TestApp, session: &str, prompt: &str, context: &str) -> Value {
    let (status, run) = app
        .submit_to(
            &format!("/v1/sessions/{session}/runs"),
            &json!({"prompt": prompt, "context": context}),
        )
        .await;
    assert_eq!(status, 202, "{run}");
    app.wait_for_end(run["id"].as_str().unwrap()).await
}

#[tokio::test]
async fn a_session_turn_starts_with_a_fresh_answer_and_its_contexts_restored() {
    let model = FakeModel::start(
        vec![
            // Turn 0 answers at once.
            code("answer['content'] = 'first'\nanswer['ready'] = True"),
            // Turn 1 looks around first (and rebinds its contexts), then answers.
            code("print('looking')\ncontext_0 = 'x'\ncontext_1 = 'y'\ncontext = 'z'"),
            code(
                "answer['content'] = f'second {context_0} {context_1} {context}'\nanswer['ready'] = True",
            ),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let session = open_session(&app).await;

    let first = session_turn(&app, &session, "Answer.", "a").await;
    assert_eq!(first["answer"], "first", "{first}");
    let second = session_turn(&app, &session, "Look, then answer.", "b").await;

    // Turn 0's answer, still `ready` in the namespace, did not end turn 1 after its first block.
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["answer"], "second a b b");
    assert_eq!(second["iterations"], 2);
    let trajectory = app.trajectory(second["id"].as_str().unwrap()).await;
    assert_eq!(stdout_of(&trajectory, 1, 1), "looking\n");
    assert_eq!(model.root_requests().len(), 3);
}

/// An SSE client following a run: each event with when it arrived.
async fn follow(app: &TestApp, id: &str) -> Vec<(Instant, SseEvent)> {
    let mut response = app
        .client
        .get(app.url(&format!("/v1/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (mut buffer, mut received) = (String::new(), Vec::new());
    let deadline = Duration::from_secs(60);
    while let Some(chunk) = tokio::time::timeout(deadline, response.chunk())
        .await
        .expect("the stream stalled")
        .unwrap()
    {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            received.extend(parse_sse(&frame).into_iter().map(|e| (Instant::now(), e)));
        }
    }
    received
}

#[tokio::test]
async fn what_a_block_prints_reaches_followers_while_it_runs() {
    let model = FakeModel::start(
        vec![
            code("import time\nprint('tick')\ntime.sleep(1.5)\nprint('tock')"),
            code("answer['content'] = 'done'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Tick.", json!(""))).await;
    let live = follow(&app, &id).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let position = |kind: &str| live.iter().position(|(_, e)| e.event == kind);
    let output = position("code.output").expect("no code.output reached the follower");
    let executed = position("code.executed").unwrap();
    assert!(output < executed);
    let (heard, tick) = &live[output];
    let (done, _) = &live[executed];
    let data = &tick.data["data"];
    assert_eq!(
        (&data["iteration"], &data["block"], &data["stream"]),
        (&json!(1), &json!(1), &json!("stdout"))
    );
    assert!(data["text"].as_str().unwrap().starts_with("tick"), "{data}");
    // It came while the block slept, not with its end.
    assert!(
        done.duration_since(*heard) > Duration::from_millis(1000),
        "code.output came {:?} before code.executed",
        done.duration_since(*heard)
    );
    // And it is stored in that order.
    let stored = app.events(&id, None).await;
    let kinds: Vec<&str> = stored
        .iter()
        .map(|e| e.event.as_str())
        .filter(|k| k.starts_with("code."))
        .collect();
    assert_eq!(kinds.first(), Some(&"code.output"));
    let stored_output = stored.iter().find(|e| e.event == "code.output").unwrap();
    let stored_executed = stored.iter().find(|e| e.event == "code.executed").unwrap();
    assert!(stored_output.id < stored_executed.id);
    assert_eq!(stored_output.data, tick.data);
}

#[tokio::test]
async fn a_short_block_starts_no_sender_thread_and_a_long_one_gets_one() {
    // Starting a thread costs every REPL CPU; only a block that outlasts an interval (or
    // calls the server) needs one to send its output while it runs.
    let model = FakeModel::start(
        vec![
            code("import os\nshort = len(os.listdir('/proc/self/task'))"),
            code("import time\ntime.sleep(0.5)\nlong = len(os.listdir('/proc/self/task'))"),
            code("answer['content'] = f'{short} {long}'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Count threads.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    // The threads of the REPL process, as the kernel counts them.
    assert_eq!(run["answer"], "1 2", "{}", app.trajectory(&id).await);
}

#[tokio::test]
async fn what_a_block_prints_before_a_model_call_reaches_followers_during_the_call() {
    // No timer fires while the REPL waits on the server: the call itself hands the output
    // to the sender, and the server reads it while it makes the call.
    let model = FakeModel::start(
        vec![
            code("print('asking')\nreply = llm_query('slow question')\nprint(reply)"),
            code("answer['content'] = reply\nanswer['ready'] = True"),
        ],
        |_| Reply::Slow(Duration::from_millis(1500), "slow answer".into()),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Ask.", json!(""))).await;
    let live = follow(&app, &id).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(
        (&run["status"], &run["answer"]),
        (&json!("succeeded"), &json!("slow answer")),
        "{run}"
    );
    let when = |kind: &str| live.iter().find(|(_, e)| e.event == kind).unwrap();
    let (heard, output) = when("code.output");
    let (done, _) = when("code.executed");
    assert!(output.data["data"]["text"]
        .as_str()
        .unwrap()
        .starts_with("asking"));
    assert!(
        done.duration_since(*heard) > Duration::from_millis(1000),
        "code.output came {:?} before code.executed",
        done.duration_since(*heard)
    );
}

#[tokio::test]
async fn live_output_is_bounded_by_the_output_limit() {
    let model = FakeModel::start(
        vec![
            code("import time\nfor _ in range(1000):\n    print('x' * 1000)\ntime.sleep(0.8)"),
            code("answer['content'] = 'done'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&json!({"prompt": "Flood.", "context": "", "limits": {"output_chars": 1000}}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let streamed: String = app
        .events(&id, None)
        .await
        .iter()
        .filter(|e| e.event == "code.output")
        .map(|e| e.data["data"]["text"].as_str().unwrap().to_string())
        .collect();
    // The first 1,000 characters of a million, and nothing more.
    assert_eq!(streamed, "x".repeat(1000));
}

#[tokio::test]
async fn a_lone_surrogate_in_printed_text_is_replaced_and_the_repl_lives_on() {
    let model = FakeModel::start(
        vec![
            code("kept = 42\nprint('a\\udc80b')"),
            code("answer['content'] = str(kept)\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Print badly.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "42");
    let trajectory = app.trajectory(&id).await;
    let block = &trajectory["iterations"][0]["code_blocks"][0];
    assert_eq!(block["stdout"], "a\u{FFFD}b\n");
    assert_eq!(block["error"], Value::Null);
    let events = app.events(&id, None).await;
    assert!(events.iter().all(|e| e.event != "repl.reset"));
}
